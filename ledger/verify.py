"""Offline verification of a whole database: every problem is collected, none stops the run.

The per-leaf checks are ``ledger.replay``'s (shared with the auditor); this module adds what
only a database has: stored hashes, columns, tree nodes, checkpoints and caches.

Checks, each reported with where it failed (``seq N``, ``checkpoint N``, ``node L/I``,
``account A``):

* every leaf decodes, is canonical, and its ``seq`` is its row; no gaps
* the hash chain: each ``prev`` is the leaf hash of the entry before it
* stored leaf hashes and interior tree nodes equal the ones recomputed from the leaves
* every checkpoint is signed by the log's key for this origin and its root equals the root
  recomputed at its size (so all checkpoints are consistent with one another); the latest
  covers every entry
* every batch of entries has its checkpoint: a batch's entries share its time and it signs one
  at its end, so where the time changes between two entries a checkpoint of that size is
  stored (a deleted one is named). The writer stamps each batch later than the one before,
  so every batch's is checked; only in a log written before it did, one between two batches
  stamped with the same time is not seen
* every witness cosignature (``log_cosignatures``) is by a configured witness
  (``TIMEBANK_WITNESSES``, or a peer's) and verifies with its key on a stored checkpoint; one
  by a witness removed since (``former_witnesses``: the audit trail's record) must verify too,
  and is noted, not a problem (the log neither serves it nor counts it towards its quorum)
* postings of every entry sum to zero and follow the kind's rules; reversals exactly negate
  an entry that exists; no member account is ever below its floor
* the postings index, ``log_facts`` (what the half-yearly report sums), ``log_reversals``
  (which entries were reversed, by which) and the balance cache equal what the leaves say;
  the cache holds no account without entries
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field

from ledger import verify_chunks
from ledger.entry import Posting
from ledger.errors import LedgerError
from ledger.facts import FACT_COLUMNS, fact_row
from ledger.merkle import EMPTY_ROOT, node_hash
from ledger.note import COSIGNATURE_V1, Checkpoint, Note, Verifier, check_cosignature
from ledger.replay import Findings, Problem, Replay
from ledger.storage import LedgerStore, Snapshot

__all__ = ["FormerWitnesses", "Problem", "Report", "format_report", "verify_store"]

# A witness key (as text) not configured now → when it was removed ("removed at <time>"), or
# None when nothing says it ever was a witness.
FormerWitnesses = Callable[[str], str | None]


def no_former_witnesses(_: str) -> str | None:
    return None


@dataclass
class Report(Findings):
    """The operator's check of its own store (``timebank verify``)."""

    entries: int = 0
    checkpoints: int = 0
    accounts: int = 0
    root: bytes = EMPTY_ROOT
    notes: list[str] = field(default_factory=list)  # what is not wrong but worth knowing

    def summary(self) -> str:
        if self.ok:
            return (
                f"OK: {self.entries} entries, {self.checkpoints} checkpoints, "
                f"{self.accounts} accounts; root {self.root.hex()}"
            )
        return f"FAILED: {len(self.problems)} problems in {self.entries} entries"

    def bad_seqs(self) -> set[int]:
        return {int(p.where[4:]) for p in self.problems if p.where.startswith("seq ")}


class _TreeCheck:
    """Recomputes interior nodes level by level to compare them with the stored ones."""

    def __init__(self, leaf_hashes: list[bytes]) -> None:
        self.levels: list[list[bytes]] = [leaf_hashes]

    def expected(self, level: int) -> list[bytes]:
        while len(self.levels) <= level:
            below = self.levels[-1]
            self.levels.append(
                [node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)]
            )
        return self.levels[level]


def verify_store(
    store: LedgerStore,
    verifier: Verifier,
    origin: str,
    member_overdraft: int = 0,
    *,
    workers: int | None = None,
    chunk_bits: int | None = None,
    may_fork: bool = False,
    witnesses: Collection[Verifier] = (),
    former_witnesses: FormerWitnesses = no_former_witnesses,
) -> Report:
    """Check the whole store. A log of more than ``PARALLEL_ENTRIES`` entries in a database
    that other processes can open is checked in ``workers`` processes (default: one per CPU;
    ``ledger.verify_chunks``), chunks of ``2**chunk_bits`` entries each; if that finds
    anything wrong, the one-process replay runs again to name every problem.

    ``may_fork``: this process has no database connection open (``timebank verify``), so
    the workers may be forked from it before it opens one (``verify_chunks.forked_workers``;
    if the log turns out to be small they just exit). ``witnesses``: the configured witnesses'
    keys, the only ones whose cosignatures the log serves and counts; ``former_witnesses``
    says when a key not among them was removed (``audit.witness_history``)."""
    shareable = not (store.is_sqlite and (":memory:" in store.url or store.url == "sqlite://"))
    parallel = shareable and (workers is None or workers > 1)
    with ExitStack() as stack:
        pool = None
        if may_fork and parallel:
            pool = verify_chunks.forked_workers(workers or verify_chunks.default_workers())
            if pool is not None:
                stack.enter_context(pool)
        snapshot = stack.enter_context(store.read())
        check = _Verification(
            snapshot, verifier, origin, member_overdraft, witnesses, former_witnesses
        )
        if workers is None:
            many = snapshot.next_seq() > verify_chunks.PARALLEL_ENTRIES
            workers = verify_chunks.default_workers() if many else 1
        if workers > 1 and shareable:
            bits = verify_chunks.CHUNK_BITS if chunk_bits is None else chunk_bits
            report = check.run_in_chunks(store.url, workers, bits, pool)
            if report is not None:
                return report
            check = _Verification(
                snapshot, verifier, origin, member_overdraft, witnesses, former_witnesses
            )
        return check.run()


class _Verification:
    def __init__(
        self,
        db: Snapshot,
        verifier: Verifier,
        origin: str,
        member_overdraft: int,
        witnesses: Collection[Verifier],
        former_witnesses: FormerWitnesses = no_former_witnesses,
    ) -> None:
        self.db = db
        self.former_witnesses = former_witnesses
        self.verifier = verifier
        self.origin = origin
        self.member_overdraft = member_overdraft
        self.witnesses = {w.to_text() for w in witnesses}
        self.report = Report()
        self.leaf_hashes: list[bytes] = []
        self.roots: dict[int, bytes] = {}
        self.balances: dict[str, int] = {}
        self.reversed: dict[int, int] = {}  # original seq → reversing seq, as the leaves say
        self.batch_starts: list[int] = []  # seqs whose time differs from the entry before
        self.notes: dict[int, str] = {}  # the checkpoints that verify, by size
        self.fallback = ""  # why the check in worker processes did not accept the log

    def run(self) -> Report:
        self._check_entries()
        self._check_nodes()
        self._finish()
        return self.report

    def run_in_chunks(
        self, url: str, workers: int, bits: int, pool: ProcessPoolExecutor | None
    ) -> Report | None:
        """The report if the log checks clean in worker processes, else None."""
        sizes = self.db.checkpoint_sizes()
        joined = verify_chunks.verify_in_chunks(
            self.db, url, self.member_overdraft, sizes, workers, bits, pool
        )
        if isinstance(joined, str):
            self.fallback = joined
            return None
        self.roots, self.balances, self.reversed = joined.roots, joined.balances, joined.reversed
        self.report.entries, self.report.root = joined.entries, joined.root
        self.report.accounts = len(joined.balances)
        self._finish()
        return self.report

    def _finish(self) -> None:
        """The checks of what is not per entry, after the entries' (either way)."""
        self._check_checkpoints()
        self._check_cosignatures()
        self._check_reversals()
        self._check_balances()

    def _check_entries(self) -> None:
        """The shared per-leaf checks (``ledger.replay``), plus the columns and indexes that
        only a database has: stored leaf hashes, id/kind/time columns, the postings index."""
        report = self.report
        replay = Replay(
            self.member_overdraft,
            root_sizes=self.db.checkpoint_sizes(),
            problems=report.problems,
        )
        postings = _PostingsIndex(self.db.stream_postings())
        facts = _FactRows(self.db.stream_facts())
        time = ""
        for row in self.db.stream_entries():
            seq = int(row.seq)
            where = f"seq {seq}"
            leaf = stored_bytes(row.leaf)
            if leaf is None:  # its bytes as text (or a number): read as what they say
                report.add(where, "leaf is not stored as bytes (its column was changed)")
                leaf = str(row.leaf).encode()
            step = replay.add(seq, leaf)
            if step.leaf_hash != stored_bytes(row.leaf_hash):
                report.add(where, "stored leaf hash does not match the leaf bytes (entry altered)")
            entry = step.entry
            if entry is not None and (entry.request.id, entry.request.kind, entry.time) != (
                row.id,
                row.kind,
                row.time,
            ):
                report.add(where, "id, kind or time columns differ from the leaf")
            if entry is not None and entry.prev != stored_bytes(row.prev):
                # The writer finds the log's head by it, and it is unique: a changed one
                # would stop every later append.
                report.add(where, "prev column differs from the leaf's prev")
            if not postings.matches(seq, entry.request.postings if entry else ()):
                report.add(where, "postings index differs from the entry's postings")
            stored_facts = facts.take(seq)
            if entry is not None:
                if stored_facts is None:
                    report.add(where, "log_facts has no row for this entry")
                elif differences := _differences(stored_facts, fact_row(seq, entry.request)):
                    report.add(where, f"log_facts row differs from the entry: {differences}")
                if time and entry.time != time:
                    self.batch_starts.append(seq)
                time = entry.time
            self.leaf_hashes.append(step.leaf_hash)
        for seq in postings.leftover():
            report.add(f"seq {seq}", "postings index has rows for an entry that does not exist")
        for seq in facts.leftover():
            report.add(f"seq {seq}", "log_facts has a row for an entry that does not exist")
        replay.finish(
            lambda seqs: {s: e.leaf for s, e in self.db.entries_by_seq(list(seqs)).items()}
        )
        self.roots = replay.roots
        self.balances = replay.balances
        self.reversed = replay.reversed
        report.entries = len(self.leaf_hashes)
        report.root = replay.root()
        report.accounts = len(replay.balances)

    def _check_nodes(self) -> None:
        tree = _TreeCheck(self.leaf_hashes)
        seen: set[tuple[int, int]] = set()
        for row in self.db.stream_nodes():
            level, idx = int(row.level), int(row.idx)
            seen.add((level, idx))
            expected = tree.expected(level) if level >= 1 else []
            where = f"node {level}/{idx}"
            if idx >= len(expected):
                self.report.add(where, "stored tree node covers entries that do not exist")
            elif bytes(row.hash) != expected[idx]:
                first, last = idx << level, ((idx + 1) << level) - 1
                self.report.add(where, f"stored tree node does not match entries {first}–{last}")
        level = 1
        while tree.expected(level):
            missing = [i for i in range(len(tree.levels[level])) if (level, i) not in seen]
            for idx in missing[:10]:
                self.report.add(f"node {level}/{idx}", "tree node is missing")
            level += 1

    def _check_checkpoints(self) -> None:
        report = self.report
        latest = 0
        sizes: set[int] = set()
        mismatched: list[int] = []
        for row in self.db.stream_checkpoints():
            size = int(row.size)
            sizes.add(size)
            where = f"checkpoint {size}"
            report.checkpoints += 1
            latest = max(latest, size)
            try:
                note = Note.parse(row.note)
                note.verify(self.verifier)
                checkpoint = Checkpoint.parse_body(note.text)
            except LedgerError as exc:
                report.add(where, f"signed note does not verify: {exc}")
                continue
            if checkpoint.origin != self.origin:
                report.add(where, f"origin {checkpoint.origin!r} is not {self.origin!r}")
            if checkpoint.size != size or checkpoint.root != bytes(row.root):
                report.add(where, "size or root columns differ from the signed note")
            self.notes[size] = row.note
            computed = self.roots.get(size)
            if computed is None:
                report.add(where, f"covers {size} entries but only {report.entries} exist")
            elif computed != checkpoint.root:
                mismatched.append(size)
        if mismatched:
            first, later = mismatched[0], len(mismatched) - 1
            report.add(
                f"checkpoint {first}",
                "signed root does not match the entries: an entry at or before seq "
                f"{first - 1} was changed, removed or inserted"
                + (f" ({later} later checkpoints disagree too)" if later else ""),
            )
        if report.entries and latest != report.entries:
            report.add(
                f"checkpoint {latest}",
                f"latest signed checkpoint covers {latest} of {report.entries} entries",
            )
        unsigned = [seq for seq in self.batch_starts if seq not in sizes]
        for seq in unsigned[:10]:
            report.add(
                f"checkpoint {seq}",
                f"is missing: seq {seq} was appended at a later time than seq {seq - 1}, in a "
                "later batch, and every batch signs a checkpoint (a deleted checkpoint row)",
            )
        if len(unsigned) > 10:
            report.add(f"checkpoint {unsigned[10]}", f"{len(unsigned) - 10} more are missing")

    def _check_cosignatures(self) -> None:
        """Each stored cosignature is a configured witness's, and verifies on its checkpoint:
        the log serves them with the checkpoint and counts them towards its quorum. One by a
        witness removed since must verify too; it is noted (the log neither serves nor counts
        it), once per witness. A key that nothing says was ever a witness is a problem."""
        formers: dict[str, str | None] = {}  # key not configured → when it was removed
        removed: dict[str, tuple[str, list[int]]] = {}  # key → (when removed, sizes)
        for row in self.db.stream_cosignatures():
            size, witness = int(row.size), str(row.witness)
            where = f"checkpoint {size}"
            note = self.notes.get(size)
            if note is None:
                self.report.add(
                    where,
                    f"log_cosignatures has a cosignature by {witness} of no stored checkpoint",
                )
                continue
            former = None
            if witness not in self.witnesses:
                if witness not in formers:
                    formers[witness] = self.former_witnesses(witness)
                former = formers[witness]
                if former is None:
                    self.report.add(
                        where,
                        f"log_cosignatures has a cosignature by {witness}, which is not a "
                        "configured witness (TIMEBANK_WITNESSES) nor a peer's, and no witness "
                        "configuration in the audit trail ever listed it",
                    )
                    continue
            try:
                key = Verifier.from_text(witness)
                valid = key.key_type == COSIGNATURE_V1 and (
                    check_cosignature(Note.parse(note + row.line), key) is not None
                )
            except LedgerError:
                valid = False
            if not valid:
                self.report.add(
                    where,
                    f"log_cosignatures has a cosignature by {witness}"
                    + (f" (a witness {former})" if former else "")
                    + " that does not verify with that witness's key",
                )
            elif former is not None:
                removed.setdefault(witness, (former, []))[1].append(size)
        for witness, (when, sizes) in removed.items():
            self.report.notes.append(
                f"{len(sizes)} cosignatures (checkpoints {min(sizes)}–{max(sizes)}) by "
                f"{witness}, a witness {when}: they verify, and count towards no quorum"
            )

    def _check_reversals(self) -> None:
        """``log_reversals`` (which the writer reads to refuse a second reversal) against the
        reversals the leaves make."""
        stored = {int(r.original_seq): int(r.reversal_seq) for r in self.db.stream_reversals()}
        for original in sorted(set(self.reversed) | set(stored)):
            want, got = self.reversed.get(original), stored.get(original)
            if got == want:
                continue
            if got is None:
                self.report.add(
                    f"seq {want}",
                    f"log_reversals has no row for this reversal of entry {original}",
                )
            elif want is None:
                self.report.add(
                    f"seq {original}",
                    f"log_reversals says seq {got} reversed this entry; no entry reverses it",
                )
            else:
                self.report.add(
                    f"seq {original}",
                    f"log_reversals says seq {got} reversed this entry; seq {want} did",
                )

    def _check_balances(self) -> None:
        stored = {r.account: int(r.minutes) for r in self.db.stream_balances()}
        for account in sorted(set(self.balances) | set(stored)):
            want, got = self.balances.get(account, 0), stored.get(account, 0)
            if want != got:
                self.report.add(
                    f"account {account}", f"stored balance {got} minutes, postings give {want}"
                )
            elif account not in self.balances:
                self.report.add(
                    f"account {account}", "balance cache has a row for an account with no entries"
                )


class _PostingsIndex:
    """Walks the postings index (ordered by seq, account) alongside the entries."""

    def __init__(self, rows: Iterator[object]) -> None:
        self.rows = rows
        self.pending: object | None = next(rows, None)
        self.extra: list[int] = []

    def _take(self, seq: int) -> dict[str, int]:
        got: dict[str, int] = {}
        while self.pending is not None and int(self.pending.seq) <= seq:  # type: ignore[attr-defined]
            row = self.pending
            if int(row.seq) < seq:  # type: ignore[attr-defined]
                self.extra.append(int(row.seq))  # type: ignore[attr-defined]
            else:
                got[row.account] = int(row.minutes)  # type: ignore[attr-defined]
            self.pending = next(self.rows, None)
        return got

    def matches(self, seq: int, postings: Iterable[Posting]) -> bool:
        return self._take(seq) == {p.account: p.minutes for p in postings}

    def leftover(self) -> list[int]:
        while self.pending is not None:
            self.extra.append(int(self.pending.seq))  # type: ignore[attr-defined]
            self.pending = next(self.rows, None)
        return sorted(set(self.extra))


class _FactRows:
    """Walks ``log_facts`` (ordered by seq, one row an entry) alongside the entries."""

    def __init__(self, rows: Iterator[object]) -> None:
        self.rows = rows
        self.pending: object | None = next(rows, None)
        self.extra: list[int] = []

    def take(self, seq: int) -> tuple[object, ...] | None:
        """The row of entry ``seq``, if there is one; rows before it have no entry."""
        while self.pending is not None and int(self.pending.seq) < seq:  # type: ignore[attr-defined]
            self.extra.append(int(self.pending.seq))  # type: ignore[attr-defined]
            self.pending = next(self.rows, None)
        row = self.pending
        if row is None or int(row.seq) != seq:  # type: ignore[attr-defined]
            return None
        self.pending = next(self.rows, None)
        return tuple(row)  # type: ignore[arg-type]

    def leftover(self) -> list[int]:
        while self.pending is not None:
            self.extra.append(int(self.pending.seq))  # type: ignore[attr-defined]
            self.pending = next(self.rows, None)
        return self.extra


def _differences(stored: Sequence[object], expected: Sequence[object]) -> str:
    """The columns of a ``log_facts`` row that differ from what its entry gives."""
    return ", ".join(
        f"{name} {got!r}, the entry gives {want!r}"
        for name, got, want in zip(FACT_COLUMNS, stored, expected, strict=True)
        if got != want
    )


def format_report(report: Report) -> Iterable[str]:
    yield report.summary()
    for problem in report.problems:
        yield f"  {problem}"
    for note in report.notes:
        yield f"  note: {note}"


def stored_bytes(value: object) -> bytes | None:
    """A binary column's value as bytes; None when it holds something else (an edit stored
    text there): named as a problem, never a crash of the check."""
    return bytes(value) if isinstance(value, bytes | bytearray | memoryview) else None
