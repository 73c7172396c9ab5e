"""``timebank peers …``: the district banks this deployment knows (docs/federation.md).

``add`` and ``remove`` go into the audit trail like the other operator commands, also when
they are refused; ``list`` and ``key`` only read.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from accounts.protection import DataKeyError, Protector, data_key_path, load_or_create_data_key
from accounts.service import AccountsService
from accounts.storage import AccountsStore
from audit.trail import AuditTrail
from care.errors import CareError
from cli.admin import operator_name
from cli.base import operator, require_migrated, settings_from_env
from database import Database
from federation.peers import PeerError, Peers
from federation.removal import OpenBusiness, open_business
from federation.settlement import Settling
from federation.storage import PeerStore
from federation.transfer_http import signed_poster
from federation.transfer_storage import TransferStore
from federation.transfers import Delivering, utc_clock
from federation.witness_storage import WitnessedStore
from federation.witnessing import load_or_create_witness_key, with_peer_witnesses
from ledger.config import Settings
from ledger.keys import load_or_create_signing_key
from ledger.log import Log


def _database(settings: Settings) -> Database:
    if settings.is_sqlite:
        from migrations.runner import upgrade

        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        upgrade(settings.database_url)
    require_migrated(settings.database_url)
    return Database(settings.database_url)


def _accounts(settings: Settings, database: Database, log: Log) -> AccountsService:
    """The accounts, to say who sends a transfer (identity commitments): the data key must be
    there if personal data is (as ``timebank serve`` requires)."""
    store = AccountsStore(database)
    key_path = data_key_path(settings.data_dir)
    if not key_path.exists() and store.holds_personal_data():
        raise DataKeyError(f"data key {key_path} is missing; restore it from backup")
    return AccountsService(store, Protector(load_or_create_data_key(key_path)), log)


def _open_business(settings: Settings, database: Database, name: str) -> OpenBusiness:
    log = Log.open(dataclasses.replace(settings, witnesses=()))  # a read: no witnessing
    try:
        return open_business(log, PeerStore(database), TransferStore(database), name)
    finally:
        log.close()


def _change(args: argparse.Namespace, action: str) -> int:
    settings = settings_from_env()
    database = _database(settings)
    peers = Peers(PeerStore(database), settings.log_origin)
    who = operator_name(args)
    status = 1
    objects = [str(args.name)[:32]]
    forced = action == "remove" and args.force
    try:
        if action == "add":
            peer = peers.add(
                args.name,
                args.url,
                args.origin,
                args.log_key,
                args.request_key,
                who,
                witness_key=args.witness_key,
            )
            print(f"peer {peer.name} added: {peer.url} (log {peer.log_origin})")
        else:
            if not any(p.name == args.name for p in peers.list()):
                raise PeerError(f"no peer named {args.name}", "name")
            business = _open_business(settings, database, args.name)
            if business.open:
                objects += business.objects()
                if not forced:
                    raise PeerError(
                        f"peer {args.name} has open business: {business.describe(args.name)}; "
                        f"{business.advice()}",
                        "force",
                    )
            peers.remove(args.name)
            print(f"peer {args.name} removed")
            if business.open:
                print(f"removed with --force: {business.describe(args.name)}")
        status = 0
    except PeerError as exc:
        print(f"timebank peers {action}: {exc} (--{exc.field.replace('_', '-')})", file=sys.stderr)
    finally:
        AuditTrail(database).record(
            actor=f"operator:{who}",
            role="operator",
            action=f"CLI timebank peers {action}" + (" --force" if forced else ""),
            objects=objects,
            client="cli",
            status=status,
        )
        database.dispose()
    return status


def cmd_list(_: argparse.Namespace) -> int:
    settings = settings_from_env()
    database = _database(settings)
    try:
        known = Peers(PeerStore(database), settings.log_origin).list()
        witnessed = WitnessedStore(database)
        sizes, split = witnessed.sizes(), witnessed.split_views()
    finally:
        database.dispose()
    if not known:
        print("no peers")
    for peer in known:
        print(f"{peer.name}  {peer.url}  log {peer.log_origin}")
        print(f"  log key:     {peer.log_key.to_text()}")
        print(f"  request key: {peer.request_key.to_text()}")
        print(f"  added {peer.added_at.strftime('%Y-%m-%dT%H:%M:%SZ')} by {peer.added_by}")
        if peer.witness_key is not None:
            print(f"  witness key: {peer.witness_key.to_text()} (witnesses our log)")
        size = sizes.get(peer.log_origin)
        print(f"  we cosigned: {'nothing yet' if size is None else f'its tree of size {size}'}")
        views = split.get(peer.log_origin)
        if views is not None:
            print(
                f"  SPLIT VIEW: {views.count} checkpoint(s) refused, last "
                f"{views.last_seen.strftime('%Y-%m-%dT%H:%M:%SZ')}: {views.last_reason}"
            )
    return 0


def cmd_key(_: argparse.Namespace) -> int:
    """This bank's request key, to hand to its peers (created on first use, like the server
    does; also served at ``GET /v1/federation/key``)."""
    settings = settings_from_env()
    signer = load_or_create_signing_key(settings.peer_key_file, settings.peer_key_name)
    print(signer.verifier.to_text())
    return 0


def cmd_witness_key(_: argparse.Namespace) -> int:
    """This bank's witness key, for its peers' ``--witness-key`` (also served at
    ``GET /v1/federation/witness/key``)."""
    settings = settings_from_env()
    signer = load_or_create_witness_key(settings.witness_key_file, settings.witness_key_name)
    print(signer.verifier.to_text())
    return 0


def cmd_transfers_retry(args: argparse.Namespace) -> int:
    """Deliver again every transfer still held (docs/federation.md#transfers): settled, voided
    or still pending, one line each; exit status 1 while any is still pending."""
    settings = settings_from_env()
    database = _database(settings)
    database.dispose()
    log = Log.open(with_peer_witnesses(settings))
    who = operator_name(args)
    outcomes = []
    try:
        signer = load_or_create_signing_key(settings.peer_key_file, settings.peer_key_name)
        store_db = log.store.database
        delivering = Delivering(
            log,
            Peers(PeerStore(store_db), settings.log_origin),
            signed_poster(signer),
            TransferStore(store_db),
            _accounts(settings, store_db, log),
        )
        outcomes = delivering.retry()
        for o in outcomes:
            why = f" ({o.reason})" if o.reason else ""
            print(f"{o.transfer}  {o.peer}  {o.minutes} min  {o.status}{why}")
        if not outcomes:
            print("no transfer is held")
        status = 1 if any(o.status == "pending" for o in outcomes) else 0
        AuditTrail(store_db).record(
            actor=f"operator:{who}",
            role="operator",
            action="CLI timebank peers transfers retry",
            objects=[o.transfer for o in outcomes][:20],
            client="cli",
            status=status,
        )
    finally:
        log.close()
    return status


def cmd_settle(args: argparse.Namespace) -> int:
    """Settle a month with a peer (docs/federation.md#settlement): our figures, signed, to the
    peer, which checks them against its own log and cosigns; both logs then hold the entry."""
    settings = settings_from_env()
    _database(settings).dispose()
    log = Log.open(with_peer_witnesses(settings))
    status = 1
    try:
        signer = load_or_create_signing_key(settings.peer_key_file, settings.peer_key_name)
        peers = Peers(PeerStore(log.store.database), settings.log_origin)
        # the peer reads our whole log before it answers: a longer wait than a transfer's
        settling = Settling(
            log,
            peers,
            signer,
            signed_poster(signer, 300.0),
            utc_clock,
            witnessed=WitnessedStore(log.store.database).note,
        )
        try:
            done = settling.propose(args.peer, args.month)
        except CareError as exc:
            field = exc.field or "peer"
            where = f"--{field}" if field in ("peer", "month") else f"the peer's {field}"
            print(f"timebank peers settle: {exc} ({where})", file=sys.stderr)
        else:
            first, second = done.document.banks
            net = done.document.net_minutes
            debtor, creditor = (first, second) if net >= 0 else (second, first)
            for bank in done.document.banks:
                print(
                    f"{bank.origin}: cut-off size {bank.size} root {bank.root[:16]}…, "
                    f"its members sent {bank.sent} min"
                )
            print(f"net: {debtor.origin} owes {creditor.origin} {abs(net)} min")
            there = "" if done.peer_index is None else f", {args.peer}'s entry {done.peer_index}"
            again = " (already settled)" if done.peer_index is None else ""
            print(f"settled {args.month} with {args.peer}: our entry {done.seq}{there}{again}")
            status = 0
        AuditTrail(log.store.database).record(
            actor=f"operator:{operator_name(args)}",
            role="operator",
            action="CLI timebank peers settle",
            objects=[str(args.peer)[:32], str(args.month)[:7]],
            client="cli",
            status=status,
        )
    finally:
        log.close()
    return status


def register_peer_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    peers = sub.add_parser("peers", help="the district banks this deployment knows as peers")
    peers.add_argument(
        "--as",
        dest="as_",
        type=operator,
        metavar="NAME",
        help="who runs the command, for the audit trail (default: the OS user)",
    )
    peers_sub = peers.add_subparsers(dest="peers_command", required=True)

    add = peers_sub.add_parser("add", help="add a peer bank")
    add.add_argument("--name", required=True, help="short name, e.g. qinhuai")
    add.add_argument("--url", required=True, help="its base URL, https://…")
    add.add_argument("--origin", required=True, help="its log's origin (its checkpoints' 1st line)")
    add.add_argument("--log-key", required=True, help="its log's verifier key (GET /v1/log/key)")
    add.add_argument(
        "--request-key", required=True, help="its request key (GET /v1/federation/key)"
    )
    add.add_argument(
        "--witness-key",
        help="its witness key (GET /v1/federation/witness/key): it then cosigns our checkpoints",
    )
    add.set_defaults(func=lambda a: _change(a, "add"))

    remove = peers_sub.add_parser("remove", help="forget a peer bank")
    remove.add_argument("--name", required=True)
    remove.add_argument(
        "--force",
        action="store_true",
        help="remove even with transfers held or balances not zero (audit-trailed)",
    )
    remove.set_defaults(func=lambda a: _change(a, "remove"))

    peers_sub.add_parser("list", help="the peers, with their keys").set_defaults(func=cmd_list)
    peers_sub.add_parser("key", help="this bank's request key, to give to its peers").set_defaults(
        func=cmd_key
    )
    peers_sub.add_parser(
        "witness-key", help="this bank's witness key, to give to its peers"
    ).set_defaults(func=cmd_witness_key)
    settle = peers_sub.add_parser(
        "settle", help="agree a month's net position with a peer, cosigned by both banks"
    )
    settle.add_argument("--peer", required=True, help="the peer's name, e.g. qinhuai")
    settle.add_argument("--month", required=True, help="a month that is over, YYYY-MM")
    settle.set_defaults(func=cmd_settle)
    transfers = peers_sub.add_parser("transfers", help="transfers to peer banks")
    transfers_sub = transfers.add_subparsers(dest="transfers_command", required=True)
    transfers_sub.add_parser(
        "retry", help="deliver again the transfers still held (their peer was down)"
    ).set_defaults(func=cmd_transfers_retry)
