"""Mutual witnessing: this bank witnesses its peers' logs, and its peers witness its log.

Both halves reuse the tlog-witness code that exists: ``audit.witness.Witness`` cosigns the
checkpoints peers submit (the logs it watches are the registered peers' origins and log keys,
read afresh on each request; what it cosigned is kept in the database, ``WitnessedTable``),
and ``ledger.witnessing`` submits this log's checkpoints to every peer that has a witness key,
at ``<peer URL>/v1/federation/witness`` (``peer_witnesses``). A checkpoint a peer signed that
contradicts one we cosigned for it (same size, other root; or no valid consistency proof) is a
split view: refused, kept as evidence and written to the audit trail.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from audit.trail import AuditTrail
from audit.witness import (
    Cosigned,
    Logs,
    SizeConflict,
    Witness,
    WitnessStateError,
    generate_witness_key,
    load_witness_key,
)
from database import Database
from federation.peers import Peer, Peers
from federation.storage import PeerStore
from federation.witness_storage import Raced, WitnessedStore
from ledger.config import Settings
from ledger.errors import KeyFormatError, LedgerError
from ledger.note import Checkpoint, Note, Signer
from ledger.witnessing import WitnessEndpoint

SAME_SIZE = "same size, different root"


class WitnessedTable:
    """``audit.witness.WitnessStore`` over the database: a compare-and-set per origin, so two
    server processes can never both move a peer's state on from the same checkpoint."""

    def __init__(self, store: WitnessedStore, on_split_view: Callable[[str, str], None]) -> None:
        self.store = store
        self.on_split_view = on_split_view

    def load(self, origin: str) -> Cosigned | None:
        note = self.store.note(origin)
        if note is None:
            return None
        try:
            return Cosigned(note, Checkpoint.parse_body(Note.parse(note).text))
        except LedgerError as exc:  # never start over: that would allow a rollback
            raise WitnessStateError(f"witnessed checkpoint of {origin!r} is corrupt") from exc

    def save(self, origin: str, note: str, previous: Cosigned | None = None) -> None:
        size = Checkpoint.parse_body(Note.parse(note).text).size
        try:
            self.store.replace(origin, size, note, previous.note if previous else None)
        except Raced as exc:
            now = self.load(origin)
            held = now.checkpoint.size if now else 0
            raise SizeConflict(f"another request moved the witness to size {held}", held) from exc

    def keep_evidence(self, origin: str, reason: str, body: bytes) -> None:
        self.store.add_split_view(origin, reason, body.decode("utf-8", "replace"))
        self.on_split_view(origin, reason)


def peer_logs(peers: Peers) -> Callable[[], Logs]:
    """The logs this bank witnesses: each peer's origin with its log key, as they are now."""
    return lambda: {peer.log_origin: [peer.log_key] for peer in peers.list()}


def record_split_view(trail: AuditTrail, peers: Peers) -> Callable[[str, str], None]:
    """An audit-trail event per refused split view, by the peer whose log it is."""

    def record(origin: str, reason: str) -> None:
        peer = next((p for p in peers.list() if p.log_origin == origin), None)
        trail.record(
            actor=f"peer:{peer.name if peer else origin}"[:64],
            role="peer",
            action=f"federation split view: {reason}"[:200],
            objects=[origin[:200]],
            client="federation",
            status=409 if reason == SAME_SIZE else 422,
        )

    return record


def peer_witness(signer: Signer, database: Database, trail: AuditTrail, own_origin: str) -> Witness:
    """The witness this bank runs for its peers, keeping its state in ``database``."""
    peers = Peers(PeerStore(database), own_origin)
    table = WitnessedTable(WitnessedStore(database), record_split_view(trail, peers))
    return Witness(signer, peer_logs(peers), table)


def load_or_create_witness_key(path: Path, name: str) -> Signer:
    """This bank's cosignature key (type 0x04, named ``<origin>/witness``), created mode 0600
    on first use and never replaced: peers check our cosignatures with its public half."""
    try:
        signer = generate_witness_key(name, path)
    except FileExistsError:
        signer = load_witness_key(path)
    if signer.name != name:
        raise KeyFormatError(f"witness key {path} is named {signer.name!r}, not {name!r}")
    return signer


def peer_witnesses(known: list[Peer]) -> tuple[WitnessEndpoint, ...]:
    """The peers that witness this log: those added with a witness key."""
    return tuple(
        WitnessEndpoint(peer.witness_url, peer.witness_key)
        for peer in known
        if peer.witness_key is not None
    )


def with_peer_witnesses(settings: Settings) -> Settings:
    """``settings`` with the peers' witnesses after those of ``TIMEBANK_WITNESSES`` (a key
    listed there already is not added twice). Read once when the log opens: a peer added or
    removed takes effect at the next start."""
    store = PeerStore(settings.database_url)
    try:
        known = Peers(store, settings.log_origin).list()
    finally:
        store.dispose()
    listed = {w.verifier for w in settings.witnesses}
    extra = tuple(w for w in peer_witnesses(known) if w.verifier not in listed)
    return dataclasses.replace(settings, witnesses=settings.witnesses + extra)
