"""The log as one object: append through the sequencer, read checkpoints, leaves and proofs."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ledger.batch_writer import AppendResult, BatchWriter, Clock, utc_now
from ledger.config import Settings
from ledger.entry import Entry, EntryRequest
from ledger.errors import ProofRequestError
from ledger.keys import load_or_create_signing_key
from ledger.merkle import (
    EMPTY_ROOT,
    NodeId,
    consistency_spans,
    fold_span,
    inclusion_spans,
    nodes_needed,
)
from ledger.note import Checkpoint, Note, Signer, TlogProof, sign_checkpoint
from ledger.sequencer import Sequencer
from ledger.storage import LedgerStore
from ledger.storage_totals import BankTotals, bank_totals, facts_count, fill_facts, first_seq
from ledger.verify import Report, verify_store
from ledger.witnessing import WitnessEndpoint, Witnessing, served_checkpoint

MAX_LEAVES_PER_PAGE = 1000
# Tree nodes of 2^6 leaves and more are kept in memory once read: about 2/64 of the leaves'
# count (31,000 for 10^6 entries, ~3 MB), each shared by many inclusion and consistency proofs.
KEPT_NODE_LEVEL = 6
KEPT_NODES = 100_000
BALANCE_CACHE_ENTRIES = 10_000


@dataclass(frozen=True)
class _ReadBalances:
    """Balances as one read found them, with what had been committed when it began."""

    minutes: dict[str, int]
    batches: int  # this process's committed batches before the read
    at: float  # monotonic time before the read


@dataclass(frozen=True)
class Leaf:
    index: int
    data: bytes


class Log:
    def __init__(
        self,
        store: LedgerStore,
        signer: Signer,
        origin: str,
        member_overdraft: int = 0,
        witnesses: Sequence[WitnessEndpoint] = (),
        witness_quorum: int = 0,
        witness_timeout: float = 5.0,
        clock: Clock = utc_now,
    ):
        self.store = store
        self.signer = signer
        self.origin = origin
        self.member_overdraft = member_overdraft
        self.clock = clock  # the append time of new entries (ledger.batch_writer.Clock)
        self.sequencer = Sequencer(BatchWriter(store, signer, origin, member_overdraft, clock))
        # Witnesses (ledger.witnessing): background threads, never on the append path.
        self.witness_keys = tuple(w.verifier for w in witnesses)
        # Only the witnesses configured now count towards the quorum and are served: one
        # removed (its key may have leaked) is no longer vouched for.
        self._witness_texts = frozenset(w.to_text() for w in self.witness_keys)
        self.witness_quorum = witness_quorum
        self.witnessing = (
            Witnessing(store, witnesses, self.consistency_proof, timeout=witness_timeout)
            if witnesses
            else None
        )
        if self.witnessing is not None:
            self.witnessing.start()
        self._served: tuple[tuple[int, int], float, str] | None = None
        self._served_lock = threading.Lock()
        self._read_balances: dict[tuple[str, ...], _ReadBalances] = {}
        self._upper_nodes: dict[NodeId, bytes] = {}
        self._signed_size = 0  # the largest tree size seen signed: the log never shrinks
        self._nodes_lock = threading.Lock()
        self._read_balances_lock = threading.Lock()

    @classmethod
    def open(cls, settings: Settings, clock: Clock = utc_now) -> Log:
        signer = load_or_create_signing_key(settings.signing_key_file, settings.log_origin)
        return cls(
            LedgerStore(settings.database_url),
            signer,
            settings.log_origin,
            settings.member_overdraft_minutes,
            settings.witnesses,
            settings.witness_quorum,
            clock=clock,
        )

    def close(self) -> None:
        if self.witnessing is not None:
            self.witnessing.stop()
        self.sequencer.close()
        self.store.dispose()

    # ------------------------------------------------------------ writes

    def append(self, request: EntryRequest) -> AppendResult:
        result = self.sequencer.append(request)
        self._wake_witnesses()
        return result

    async def append_async(self, request: EntryRequest) -> AppendResult:
        result = await self.sequencer.append_async(request)
        self._wake_witnesses()
        return result

    def _wake_witnesses(self) -> None:
        if self.witnessing is not None:
            self.witnessing.wake()

    # ------------------------------------------------------------ reads

    @property
    def verifier_key(self) -> str:
        return self.signer.verifier.to_text()

    def checkpoint(self, max_age: float = 0.0) -> str:
        """The latest signed checkpoint with its configured witnesses' cosignatures (with a
        quorum, the newest that has one by witnesses configured now; see
        ``ledger.witnessing``); for an empty log, a fresh size-0 one.

        ``max_age`` > 0 lets a busy reader (the public HTTP route) take the one read at most
        that many seconds ago, unless this process appended or stored a cosignature since:
        only another process's appends can be up to ``max_age`` late.
        """
        if max_age > 0 and (cached := self.cached_checkpoint(max_age)) is not None:
            return cached
        changes = self._changes()
        with self.store.read() as db:
            served = served_checkpoint(db, self.witness_quorum, self._witness_texts)
        if served is None:
            served = sign_checkpoint(Checkpoint(self.origin, 0, EMPTY_ROOT), self.signer)
        with self._served_lock:
            self._served = (changes, time.monotonic(), served)
        return served

    def cached_checkpoint(self, max_age: float) -> str | None:
        """The checkpoint read at most ``max_age`` seconds ago with nothing appended or
        cosigned by this process since, or None: no I/O, safe on an event loop."""
        served = self._served
        if served is None:
            return None
        changes, read_at, text = served
        if changes != self._changes() or time.monotonic() - read_at > max_age:
            return None
        return text

    def _changes(self) -> tuple[int, int]:
        cosigned = self.witnessing.cosignatures_stored if self.witnessing is not None else 0
        return self.sequencer.writer.batches_committed, cosigned

    def size(self) -> int:
        with self.store.read() as db:
            latest = db.latest_checkpoint()
        return latest[0] if latest else 0

    def checkpoint_at(self, size: int) -> str | None:
        """The signed checkpoint of ``size`` as the log stored it (its own signature only), or
        None when the log signed none of that size."""
        with self.store.read() as db:
            return db.checkpoint_note(size)

    def bank_totals(
        self,
        bank: str,
        size: int,
        start: str,
        end: str,
        edges: Sequence[str],
        bare_kinds: Sequence[str],
        own_moves: Sequence[str],
    ) -> BankTotals:
        """Sums of ``bank``'s postings in entries [0, size) (``ledger.storage_totals``): moves
        timed in [start, end) and the leaves of its entries of ``bare_kinds``, holdings and
        pool up to ``end``, holdings by age band (a band
        per ``edges``, ascending times: a posting timed at or before ``edges[i]`` and after
        ``edges[i - 1]`` is in band i)."""
        with self.store.read() as db:
            complete = facts_count(db.conn, size) == size
        if not complete:  # entries appended by a version without log_facts (after 0023)
            with self.store.write() as db:
                fill_facts(db.conn, size)
        with self.store.read() as db:
            lo = first_seq(db.conn, start, size, after=False)
            hi = first_seq(db.conn, end, size, after=False)
            bands = [first_seq(db.conn, edge, size, after=True) for edge in edges]
            return bank_totals(db.conn, db.is_sqlite, bank, lo, hi, bands, bare_kinds, own_moves)

    def leaves(self, start: int, end: int) -> list[Leaf]:
        """Leaves [start, end) of the signed tree; a page may be shorter than asked."""
        with self.store.read() as db:
            size = (db.latest_checkpoint() or (0, ""))[0]
            if start < 0:
                raise ProofRequestError("start must not be negative", field="start")
            if end <= start:
                raise ProofRequestError("end must be greater than start", field="end")
            if start >= size:
                raise ProofRequestError(
                    "start %(start)s is beyond the tree (size %(size)s)",
                    field="start",
                    start=start,
                    size=size,
                )
            end = min(end, size, start + MAX_LEAVES_PER_PAGE)
            return [Leaf(i, bytes(d)) for i, d in db.leaves(start, end)]

    def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        self._require_signed(tree_size, "tree_size")
        if not 0 <= index < tree_size:
            raise ProofRequestError(
                "index %(index)s is not inside a tree of size %(size)s",
                field="index",
                index=index,
                size=tree_size,
            )
        spans = inclusion_spans(index, tree_size)
        nodes = self._nodes(nodes_needed(spans))
        return [fold_span(s, nodes) for s in spans]

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        self._require_signed(second, "second")
        spans = consistency_spans(first, second)
        nodes = self._nodes(nodes_needed(spans))
        return [fold_span(s, nodes) for s in spans]

    def _require_signed(self, size: int, field: str) -> None:
        """``size`` is at least 1 and within the signed tree. The log only grows, so a size
        within one it signed before needs no read."""
        if size < 1:
            raise ProofRequestError("%(name)s must be at least 1", field=field, name=field)
        if size <= self._signed_size:
            return
        with self.store.read() as db:
            latest = (db.latest_checkpoint() or (0, ""))[0]
        with self._nodes_lock:
            self._signed_size = max(self._signed_size, latest)
        if size > latest:
            raise ProofRequestError(
                "%(name)s %(value)s is beyond the signed tree (size %(size)s)",
                field=field,
                name=field,
                value=size,
                size=latest,
            )

    def _nodes(self, needed: set[NodeId]) -> dict[NodeId, bytes]:
        """The hashes of these complete subtrees. A stored node never changes (the tables are
        append-only), so the upper ones, shared by most proofs, are kept once read."""
        kept = self._upper_nodes
        # One lookup per node: another thread may clear the dict between two (a full cache).
        found = {node: h for node in needed if (h := kept.get(node)) is not None}
        missing = sorted(needed - found.keys())
        if missing:
            with self.store.read() as db:
                read = db.nodes(missing)
            found.update(read)
            upper = {node: h for node, h in read.items() if node[0] >= KEPT_NODE_LEVEL}
            if upper:
                with self._nodes_lock:
                    if len(kept) + len(upper) > KEPT_NODES:
                        kept.clear()
                    kept.update(upper)
        return found

    def receipt(self, index: int) -> str:
        """A C2SP tlog-proof for entry ``index`` against the checkpoint served now; the
        ``extra`` line carries the leaf so the receipt can be checked on its own."""
        note = self.checkpoint()
        size = Checkpoint.parse_body(Note.parse(note).text).size
        if not 0 <= index < size:
            raise ProofRequestError(
                "index %(index)s is not inside the signed tree (size %(size)s)",
                field="index",
                index=index,
                size=size,
            )
        leaf = self.leaves(index, index + 1)[0].data
        return TlogProof(index, tuple(self.inclusion_proof(index, size)), note, leaf).render()

    def receipts(self, indexes: Sequence[int]) -> list[str]:
        """Receipts for ``indexes``, all against one checkpoint (the one served now), so a
        document carrying many of them needs that checkpoint once. Indexes the checkpoint does
        not cover yet (appended since, or awaiting the witnesses' quorum) get none."""
        note = self.checkpoint()
        size = Checkpoint.parse_body(Note.parse(note).text).size
        found = []
        for index in indexes:
            if not 0 <= index < size:
                continue
            leaf = self.leaves(index, index + 1)[0].data
            proof = TlogProof(index, tuple(self.inclusion_proof(index, size)), note, leaf)
            found.append(proof.render())
        return found

    def balances(self, accounts: list[str], max_age: float = 0.0) -> dict[str, int]:
        """The balances of ``accounts`` (0 for an account never posted to).

        ``max_age`` > 0 lets a busy reader (a phone polling its balance) take the ones read at
        most that many seconds ago, unless this process committed a batch since: like the
        checkpoint, only another process's appends can be up to ``max_age`` late."""
        if max_age > 0 and (cached := self.cached_balances(accounts, max_age)) is not None:
            return cached
        batches, at = self.sequencer.writer.batches_committed, time.monotonic()
        with self.store.read() as db:
            found = db.balances(accounts)
        minutes = {a: found.get(a, 0) for a in accounts}
        with self._read_balances_lock:
            if len(self._read_balances) >= BALANCE_CACHE_ENTRIES:
                self._read_balances.clear()
            self._read_balances[tuple(accounts)] = _ReadBalances(minutes, batches, at)
        return dict(minutes)

    def cached_balances(self, accounts: list[str], max_age: float) -> dict[str, int] | None:
        """The balances of exactly these ``accounts`` as read together at most ``max_age``
        seconds ago with no batch committed by this process since, or None: no I/O, safe on an
        event loop. The counter is read before the read it stamps, so a batch committed during
        that read makes it stale at once rather than late."""
        known = self._read_balances.get(tuple(accounts))
        if (
            known is None
            or known.batches != self.sequencer.writer.batches_committed
            or time.monotonic() - known.at > max_age
        ):
            return None
        return dict(known.minutes)

    def balances_after(self, points: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """Each (account, seq)'s balance just after entry ``seq`` (statistics: how close a
        deposit took its account to the stored-time cap)."""
        with self.store.read() as db:
            return db.balances_after(points)

    def history(
        self, accounts: list[str], limit: int = 50, before_seq: int | None = None
    ) -> list[Entry]:
        """Entries that moved minutes on ``accounts``, newest first."""
        with self.store.read() as db:
            rows = db.account_entries(accounts, limit, before_seq)
        return [Entry.from_leaf(leaf) for _, leaf in rows]

    def entries_by_id(self, ids: list[str]) -> dict[str, Entry]:
        """The entries with these ids (those that exist)."""
        with self.store.read() as db:
            stored = db.entries_by_id(ids)
        return {i: Entry.from_leaf(e.leaf) for i, e in stored.items()}

    def entry(self, seq: int) -> Entry | None:
        with self.store.read() as db:
            stored = db.entries_by_seq([seq]).get(seq)
        return Entry.from_leaf(stored.leaf) if stored else None

    def balance(self, account: str) -> int:
        with self.store.read() as db:
            return db.balances([account]).get(account, 0)

    def verify(self) -> Report:
        return verify_store(
            self.store,
            self.signer.verifier,
            self.origin,
            self.member_overdraft,
            witnesses=self.witness_keys,
        )
