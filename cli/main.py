"""timebank: serve, migrate, seed, show the key, verify the database offline."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from accounts.protection import DataKeyError
from cli.base import host, open_log, port, processes, require_migrated, settings_from_env
from ledger.entry import encodes_as_utf8
from ledger.errors import LedgerError
from ledger.keys import load_signing_key
from ledger.note import Verifier
from ledger.verify import format_report

if TYPE_CHECKING:
    from ledger import LedgerStore


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app
    from api.http_protocol import ProblemHttpToolsProtocol

    settings = settings_from_env()
    # Each process delivers webhooks too, unless the operator runs `timebank webhooks run`
    # apart (TIMEBANK_WEBHOOK_WORKER=0); workers claim each attempt, so none is sent twice.
    os.environ.setdefault("TIMEBANK_WEBHOOK_WORKER", "1")
    # ...and finishes the transfers to peer banks still held (docs/federation.md); 0: none.
    os.environ.setdefault("TIMEBANK_TRANSFER_RETRY_SECONDS", "30")
    if not settings.is_sqlite:
        require_migrated(settings.database_url)
    elif args.workers > 1:  # migrate once, before the workers start (each would otherwise)
        from migrations.runner import upgrade

        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        upgrade(settings.database_url)
    print(f"Timebank serving http://{args.host}:{args.port}  (log {settings.log_origin})")
    print(f"  checkpoint: http://{args.host}:{args.port}/v1/log/checkpoint")
    print(f"  API schema: http://{args.host}:{args.port}/schema")
    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "log_level": "info",
        "access_log": args.access_log,  # off by default: it records client addresses
        "http": ProblemHttpToolsProtocol,  # a request line it cannot parse gets a problem too
    }
    if args.workers > 1:
        # Each worker process opens the app from the same environment; they share the
        # database, and each batch of the log's sequencer re-reads the head under the
        # database's lock (docs/performance.md, "Several worker processes").
        uvicorn.run("api.app:create_app", factory=True, workers=args.workers, **options)
    else:
        uvicorn.run(create_app(settings), **options)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from migrations.privileges import APP_PRIVILEGES, GrantError
    from migrations.runner import current_revision, upgrade

    settings = settings_from_env()
    if settings.is_sqlite:
        if args.grant_to is not None:
            print(
                "timebank migrate: --grant-to is for PostgreSQL (SQLite has no roles)",
                file=sys.stderr,
            )
            return 2
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        upgrade(settings.database_url, grant_to=args.grant_to)
    except GrantError as exc:
        print(f"timebank migrate: {exc}; nothing was changed", file=sys.stderr)
        return 1
    print(f"database at revision {current_revision(settings.database_url)}")
    if args.grant_to is not None:
        print(f"granted {args.grant_to} the app's privileges on {len(APP_PRIVILEGES)} tables")
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    from api.services import Services
    from cli.admin import record_operator
    from demo.bank import DemoExists, login_help, seed_demo_bank
    from demo.history import DemoClock

    if not args.demo:
        print("timebank seed: only --demo is supported", file=sys.stderr)
        return 2
    if args.entries < 1 or args.entries > 10_000_000:
        print("timebank seed: --entries must be between 1 and 10000000", file=sys.stderr)
        return 2
    settings = settings_from_env()
    # The demo's history is written on its own clock, months in the past (demo/bank.py).
    services = Services.open(settings, open_log(settings, clock=DemoClock()))
    try:
        if args.if_empty and services.log.size() > 0:
            print(f"database already holds {services.log.size()} entries; not seeding")
            print(login_help())
            return 0
        count = seed_demo_bank(
            services.accounts,
            services.care,
            services.log,
            args.entries,
            partners=services.partners,
            reports=services.reports,
        )
        record_operator(services, args, "seed --demo", 0, "demo")
    except DemoExists as exc:
        print(f"timebank seed: {exc}", file=sys.stderr)
        record_operator(services, args, "seed --demo", 1, None)
        return 1
    finally:
        services.close()
    print(f"seeded the demo bank and {count} ledger entries")
    print(login_help())
    return 0


def cmd_demo_totp(_: argparse.Namespace) -> int:
    from demo.bank import current_demo_code

    print(current_demo_code())
    return 0


def cmd_key_show(_: argparse.Namespace) -> int:
    settings = settings_from_env()
    if not settings.signing_key_file.exists():
        print(f"timebank: no signing key at {settings.signing_key_file} yet", file=sys.stderr)
        return 1
    try:
        signer = load_signing_key(settings.signing_key_file, settings.log_origin)
    except LedgerError as exc:
        print(f"timebank: {exc}", file=sys.stderr)
        return 1
    print(signer.verifier.to_text())
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Read-only: creates no key, no directory and no database."""
    from ledger import LedgerStore, verify_store

    settings = settings_from_env()
    if settings.is_sqlite and not Path(settings.database_url.removeprefix("sqlite:///")).exists():
        print(f"timebank verify: no database at {settings.database_url}", file=sys.stderr)
        return 2
    if args.key is not None:  # given empty (a failed ``$(curl …)``) is refused, not ours
        verifier = Verifier.from_text(args.key)
    elif settings.signing_key_file.exists():
        verifier = load_signing_key(settings.signing_key_file, settings.log_origin).verifier
    else:
        print(
            f"timebank verify: no signing key at {settings.signing_key_file}; "
            "pass the log's verifier key with --key",
            file=sys.stderr,
        )
        return 2
    require_migrated(settings.database_url)
    from federation.witnessing import with_peer_witnesses

    # The witnesses the server submits to, whose cosignatures alone the log keeps: those of
    # TIMEBANK_WITNESSES and the peers'.
    witnesses = [w.verifier for w in with_peer_witnesses(settings).witnesses]
    former = _former_witnesses(settings.database_url)
    store = LedgerStore(settings.database_url)
    try:
        report = verify_store(
            store,
            verifier,
            settings.log_origin,
            settings.member_overdraft_minutes,
            workers=args.workers,
            may_fork=args.whole_process,  # nothing above left a connection open
            witnesses=witnesses,
            former_witnesses=former,
        )
        holds = _hold_problems(settings.database_url, store)
    finally:
        store.dispose()
    for line in format_report(report):
        print(line)
    for line in holds:
        print(f"FAIL holds: {line}")
    return 0 if report.ok and not holds else 1


def _former_witnesses(url: str) -> Callable[[str], str | None]:
    """When a witness key not configured now was removed, as the audit trail's record of the
    server's witnesses says (``audit.witness_history``); None for a key it never listed."""
    from audit.trail import AuditTrail
    from audit.witness_history import fingerprint, witness_history

    trail = AuditTrail(url)
    try:
        history = witness_history(trail)
    finally:
        trail.dispose()

    def former(key: str) -> str | None:
        known = history.get(fingerprint(key))
        if known is None:
            return None
        if known.removed is not None:
            return f"removed at {known.removed}"
        return (  # the server has not started since, or verify was given other settings
            f"configured since {known.since} as the audit trail last recorded, but not in "
            "the settings verify was given"
        )

    return former


def _hold_problems(url: str, ledger: LedgerStore) -> list[str]:
    """Held minutes against the requests holding them (``care.holds``)."""
    from accounts.storage import AccountsStore
    from care.holds import hold_discrepancies

    store = AccountsStore(url)
    try:

        def balances(accounts: Sequence[str]) -> dict[str, int]:
            with ledger.read() as db:
                return db.balances(accounts)

        return hold_discrepancies(store, balances)
    finally:
        store.dispose()


def register_ledger_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser("serve", help="serve the HTTP API")
    serve.add_argument("--host", type=host, default="127.0.0.1")
    serve.add_argument("--port", type=port, default=8000)
    serve.add_argument(
        "--access-log", action="store_true", help="log each request (records client addresses)"
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        choices=range(1, 65),
        metavar="N",
        help="worker processes (default 1); one per core is the usual choice",
    )
    serve.set_defaults(func=cmd_serve)

    migrate = sub.add_parser("migrate", help="create or upgrade the database schema")
    migrate.add_argument(
        "--grant-to",
        metavar="ROLE",
        help="PostgreSQL: then give ROLE, the server's own role, exactly the privileges it "
        "needs on every table (run as the owner; repeat after each upgrade)",
    )
    migrate.set_defaults(func=cmd_migrate)

    seed = sub.add_parser("seed", help="fill an empty database with demo data")
    seed.add_argument("--demo", action="store_true", help="the realistic demo data set")
    seed.add_argument("--entries", type=int, default=2000, help="ledger entries (default 2000)")
    seed.add_argument("--if-empty", action="store_true", help="do nothing if data exists")
    seed.set_defaults(func=cmd_seed)

    sub.add_parser(
        "demo-totp", help="the current TOTP code of the demo bank's centre-staff (demo only)"
    ).set_defaults(func=cmd_demo_totp)

    key = sub.add_parser("key", help="the log's signing key")
    key_sub = key.add_subparsers(dest="key_command", required=True)
    key_sub.add_parser("show", help="print the verifier key line").set_defaults(func=cmd_key_show)

    verify = sub.add_parser("verify", help="check the whole database offline")
    verify.add_argument("--key", help="verifier key to check checkpoints against (default: ours)")
    verify.add_argument(
        "--workers",
        type=processes,
        default=None,
        help="processes that check the log in chunks (default: one per CPU above 200,000 "
        "entries; 1: one process)",
    )
    verify.set_defaults(func=cmd_verify)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Every command's parser; only the ledger's when ``command`` is one of the ledger's (the
    other commands' modules import the web app: about a second of start-up that ``timebank
    verify`` would otherwise pay before it starts its work)."""
    parser = argparse.ArgumentParser(prog="timebank", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    register_ledger_commands(sub)
    if command in sub.choices:
        return parser

    from cli.admin import register_admin_commands
    from cli.audit import register_audit_commands
    from cli.peers import register_peer_commands
    from cli.reports import register_report_commands
    from cli.webhooks import register_webhook_commands

    register_admin_commands(sub)
    register_audit_commands(sub)
    register_webhook_commands(sub)
    register_report_commands(sub)
    register_peer_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None, *, whole_process: bool = False) -> int:
    """``whole_process``: the command is all this process runs (the console script), so
    nothing else in it holds a database connection or a thread (``timebank verify`` may then
    fork its workers)."""
    os.umask(0o077)  # everything timebank creates (keys, databases) is private to its user
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv[0] if argv else None)
    for value in argv:
        # Bytes that are not UTF-8 arrive as lone surrogates, which no database, file or
        # signature takes: refused here, once for every command, before anything is written.
        if not encodes_as_utf8(value):
            shown = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            parser.error(f"argument {shown!r} is not valid UTF-8 text")
    args = parser.parse_args(argv)
    args.whole_process = whole_process
    try:
        code: int = args.func(args)
    except (LedgerError, DataKeyError) as exc:
        # Key and configuration problems: a message for the operator, not a traceback.
        print(f"timebank {args.command}: {exc}", file=sys.stderr)
        return 2
    return code


def run() -> None:
    sys.exit(main(whole_process=True))


if __name__ == "__main__":
    run()
