"""The batch writer: one batch of entry requests appended in one write transaction.

Everything a batch does to the log — the rules checked against the balances of the moment,
the entries, postings, tree nodes, balances and facts written, the one checkpoint signed — is
here, and nothing about who waits for it (``ledger.sequencer`` queues the callers and runs the
batches on its single writer thread).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ledger.entry import ZERO_HASH, Entry, EntryRequest, canonical_json
from ledger.errors import (
    CheckpointConflict,
    EntryError,
    IdConflict,
    LedgerError,
    PostingRuleViolation,
)
from ledger.facts import fact_row
from ledger.merkle import (
    Frontier,
    NodeId,
    consistency_spans,
    fold_span,
    leaf_hash,
    nodes_needed,
    verify_consistency,
)
from ledger.note import Checkpoint, Signer, open_checkpoint, sign_checkpoint
from ledger.postings import apply_postings, check_postings, check_reversal
from ledger.storage import LedgerStore, Row, Snapshot
from ledger.storage_sql import StoredEntry


@dataclass(frozen=True)
class AppendResult:
    seq: int
    id: str
    leaf_hash: bytes
    time: str
    tree_size: int  # the checkpoint that first covers this entry
    replayed: bool = False  # True when the id was appended before with the same content


# An entry of this batch (seq, id, leaf hash, repeated): its checkpoint is the batch's.
_Covered = tuple[int, str, bytes, bool]


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def one_microsecond_after(time: str) -> str:
    """``time`` (as ``utc_now`` writes it) one microsecond later."""
    moment = datetime.strptime(time, "%Y-%m-%dT%H:%M:%S.%fZ") + timedelta(microseconds=1)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# The time the log stamps on the entries it appends, as ``utc_now`` writes it. Production uses
# the real clock; the demo seed passes one set in the past to write a history (demo/bank.py).
Clock = Callable[[], str]


class BatchWriter:
    """Appends one batch inside one write transaction. Pure logic over ``LedgerStore`` reads."""

    def __init__(
        self,
        store: LedgerStore,
        signer: Signer,
        origin: str,
        member_overdraft: int = 0,
        clock: Clock = utc_now,
    ) -> None:
        if signer.name != origin:
            raise CheckpointConflict(f"signing key {signer.name!r} is not for origin {origin!r}")
        self.store = store
        self.signer = signer
        self.origin = origin
        self.member_overdraft = member_overdraft
        self.clock = clock
        self._trusted_checkpoint: str | None = None  # last stored checkpoint known to be ours
        self._frontier: Frontier | None = None  # after our last committed batch
        self._pending_frontier: Frontier | None = None
        self.batches_committed = 0  # readers caching the checkpoint compare this

    def append(self, requests: Sequence[EntryRequest]) -> list[AppendResult | EntryError]:
        with self.store.write(lock_at_batch_start=True) as db:
            results = self._append(db, requests)
        # Only a committed batch may teach us the next frontier.
        self._frontier, self._pending_frontier = self._pending_frontier, None
        self.batches_committed += 1
        return results

    def _load_frontier(
        self, db: Snapshot, size: int, root: bytes | None, read: dict[NodeId, bytes] | None
    ) -> Frontier:
        """The frontier of the stored tree: ours from the last batch if the log is still
        where we left it (no other writer in between), else from the tree nodes (``read``
        with the batch's first reads, or read now)."""
        cached = self._frontier
        if cached is not None and cached.size == size and cached.root() == root:
            return _copy(cached)
        return Frontier.from_nodes(
            size, read if read is not None else db.nodes(Frontier.plan(size))
        )

    def _append(
        self, db: Snapshot, requests: Sequence[EntryRequest]
    ) -> list[AppendResult | EntryError]:
        accounts = sorted(
            {p.account for r in requests for p in r.postings}
            | {a for r in requests if r.ceiling for a in (*r.ceiling.counted, r.ceiling.overflow)}
        )
        start = db.batch_start(sorted({r.id for r in requests}), accounts)
        head, existing, balances = start.head, start.existing, start.balances
        if head.size != head.checkpoint_size:
            raise CheckpointConflict(
                f"log has {head.size} entries but its last checkpoint covers {head.checkpoint_size}"
            )
        self._check_our_checkpoint(head.checkpoint_note)
        frontier = self._load_frontier(db, head.size, head.checkpoint_root, start.frontier)
        signed = _copy(frontier)  # the tree the last checkpoint signed, checked just below
        self._pending_frontier = _copy(frontier)
        if head.checkpoint_root is not None and frontier.root() != head.checkpoint_root:
            raise CheckpointConflict("stored tree does not match the last signed checkpoint")

        reversal_targets = sorted({t for r in requests if (t := _reverses(r)) is not None})
        originals = db.entries_by_seq(reversal_targets)
        already_reversed = db.reversed_seqs(reversal_targets)

        outcomes: list[_Covered | AppendResult | EntryError] = []
        new_entries: list[Row] = []
        new_postings: list[Row] = []
        new_facts: list[Row] = []
        new_nodes: list[Row] = []
        new_reversals: list[Row] = []
        by_id: dict[str, tuple[EntryRequest, _Covered]] = {}
        touched: dict[str, int] = {}
        prev = head.last_leaf_hash or ZERO_HASH
        # Time never goes backwards in the log, whatever the clock says, and each batch is
        # stamped later than the one before it (by a microsecond when the clock has not
        # moved on): where the time changes, a batch (and its checkpoint) begins, so that
        # verify finds every deleted checkpoint.
        now = self.clock()
        if head.last_time and now <= head.last_time:
            now = one_microsecond_after(head.last_time)
        next_seq = head.size

        for request in requests:
            try:
                replay = self._replay(db, request, existing, by_id)
                if replay is not None:
                    outcomes.append(replay)
                    continue
                if request.ceiling is not None:
                    request = request.ceiling.apply(request, balances)
                request.validate()
                check_postings(request)
                target = _reverses(request)
                if request.kind == "reversal":
                    if target is None:
                        raise PostingRuleViolation(
                            "a reversal needs body.reverses (a seq)", field="body.reverses"
                        )
                    if target in already_reversed:
                        raise PostingRuleViolation(
                            "entry %(seq)s has already been reversed",
                            field="body.reverses",
                            seq=target,
                        )
                    original = originals.get(target)
                    check_reversal(
                        request,
                        Entry.from_leaf(original.leaf).request if original else None,
                        target,
                    )
                leaf = Entry(next_seq, prev, now, request).validated_leaf()
                apply_postings(balances, request.postings, self.member_overdraft)
            except EntryError as exc:
                outcomes.append(exc)
                continue
            lh = leaf_hash(leaf)
            new_entries.append((next_seq, request.id, prev, lh, request.kind, now, leaf))
            new_facts.append(fact_row(next_seq, request))
            for p in request.postings:
                new_postings.append((p.account, next_seq, p.minutes))
                touched[p.account] = balances[p.account]
            if target is not None and request.kind == "reversal":
                new_reversals.append((target, next_seq))
                already_reversed.add(target)
            new_nodes.extend(frontier.append(lh))
            covered = (next_seq, request.id, lh, False)
            by_id[request.id] = (request, covered)
            outcomes.append(covered)
            prev = lh
            next_seq += 1

        if not new_entries:  # then no entry of this batch was appended, nor repeated
            return [o for o in outcomes if not isinstance(o, tuple)]
        root, size = frontier.root(), frontier.size
        self._pending_frontier = _copy(frontier)
        self._check_consistent(db, signed, head.checkpoint_root, new_nodes, new_entries, size, root)
        note = sign_checkpoint(Checkpoint(self.origin, size, root), self.signer)
        self._trusted_checkpoint = note
        db.insert_batch(
            new_entries,
            new_postings,
            new_nodes,
            new_reversals,
            (size, root, note),
            new_facts,
            touched,
        )
        return [
            AppendResult(o[0], o[1], o[2], now, size, o[3])
            if isinstance(o, tuple)
            else dataclasses.replace(o, tree_size=size)
            if isinstance(o, AppendResult) and o.tree_size == 0
            else o
            for o in outcomes
        ]

    def _check_our_checkpoint(self, note: str | None) -> None:
        """Refuse to extend a log whose last checkpoint this key did not sign (a replaced or
        lost key would otherwise silently fork the log's identity)."""
        if note is None or note == self._trusted_checkpoint:
            return
        try:
            open_checkpoint(note, self.signer.verifier, self.origin)
        except LedgerError as exc:
            raise CheckpointConflict(
                f"the last checkpoint was not signed by this log's key ({exc}); "
                "restore the original signing key instead of appending"
            ) from exc
        self._trusted_checkpoint = note

    @staticmethod
    def _replay(
        db: Snapshot,
        request: EntryRequest,
        existing: dict[str, StoredEntry],
        by_id: dict[str, tuple[EntryRequest, _Covered]],
    ) -> AppendResult | _Covered | None:
        """The first result for an id appended before with the same content; else None. A
        repeat of an id appended earlier in this batch is covered by this batch's checkpoint."""
        if request.id in by_id:
            first_request, first = by_id[request.id]
            if not _same_content(first_request, request):
                raise IdConflict(request.id, first[0])
            return (first[0], first[1], first[2], True)
        stored = existing.get(request.id)
        if stored is None:
            return None
        entry = Entry.from_leaf(stored.leaf)
        if not _same_content(entry.request, request):
            raise IdConflict(request.id, stored.seq)
        covering = db.covering_checkpoint(stored.seq)
        return AppendResult(stored.seq, stored.id, stored.leaf_hash, entry.time, covering, True)

    def _check_consistent(
        self,
        db: Snapshot,
        signed: Frontier,
        old_root: bytes | None,
        new_nodes: list[Row],
        new_entries: list[Row],
        new_size: int,
        new_root: bytes,
    ) -> None:
        """Refuse to sign a tree that does not extend the last signed checkpoint. ``signed`` is
        the right edge of that tree (its root was checked against the checkpoint): the proof's
        old subtrees come from it and the batch's new nodes, the database only for any other."""
        old_size = signed.size
        if old_size == 0 or old_root is None:
            return
        spans = consistency_spans(old_size, new_size)
        needed = nodes_needed(spans)
        fresh = dict(zip(Frontier.plan(old_size), signed.hashes, strict=True))
        fresh.update({(level, idx): h for level, idx, h in new_nodes})
        fresh.update({(0, e[0]): e[3] for e in new_entries})
        known = {nid: fresh[nid] for nid in needed if nid in fresh}
        known.update(db.nodes([nid for nid in needed if nid not in fresh]))
        try:
            proof = [fold_span(s, known) for s in spans]
            verify_consistency(old_size, new_size, old_root, new_root, proof)
        except (KeyError, LedgerError) as exc:
            raise CheckpointConflict(
                f"refusing to sign size {new_size}: not consistent with checkpoint {old_size}"
            ) from exc


def _copy(frontier: Frontier) -> Frontier:
    return Frontier(frontier.size, list(frontier.levels), list(frontier.hashes))


def _same_content(a: EntryRequest, b: EntryRequest) -> bool:
    """Byte equality of the canonical forms (Python's ``True == 1`` must not make a match).
    With a ceiling, the postings and its note depend on the balances of the moment: the
    rest must match."""
    ceiling = a.ceiling or b.ceiling
    if ceiling is None:
        return canonical_json(a.content()) == canonical_json(b.content())
    return canonical_json(_uncapped(a, ceiling.note)) == canonical_json(_uncapped(b, ceiling.note))


def _uncapped(request: EntryRequest, note: str) -> dict[str, object]:
    content = request.content()
    del content["postings"]
    content["body"] = {k: v for k, v in request.body.items() if k != note}
    return content


def _reverses(request: EntryRequest) -> int | None:
    target = request.body.get("reverses") if isinstance(request.body, dict) else None
    if isinstance(target, int) and not isinstance(target, bool) and target >= 0:
        return target
    return None
