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
* postings of every entry sum to zero and follow the kind's rules; reversals exactly negate
  an entry that exists; no member account is ever below its floor
* the postings index and the balance cache equal what the leaves say
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass

from ledger import verify_chunks
from ledger.entry import Posting
from ledger.errors import LedgerError
from ledger.merkle import EMPTY_ROOT, node_hash
from ledger.note import Checkpoint, Note, Verifier
from ledger.replay import Findings, Problem, Replay
from ledger.storage import LedgerStore, Snapshot

__all__ = ["Problem", "Report", "format_report", "verify_store"]


@dataclass
class Report(Findings):
    """The operator's check of its own store (``timebank verify``)."""

    entries: int = 0
    checkpoints: int = 0
    accounts: int = 0
    root: bytes = EMPTY_ROOT

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
) -> Report:
    """Check the whole store. A log of more than ``PARALLEL_ENTRIES`` entries in a database
    that other processes can open is checked in ``workers`` processes (default: one per CPU;
    ``ledger.verify_chunks``), chunks of ``2**chunk_bits`` entries each; if that finds
    anything wrong, the one-process replay runs again to name every problem.

    ``may_fork``: this process has no database connection open (``timebank verify``), so
    the workers may be forked from it before it opens one (``verify_chunks.forked_workers``;
    if the log turns out to be small they just exit)."""
    shareable = not (store.is_sqlite and (":memory:" in store.url or store.url == "sqlite://"))
    parallel = shareable and (workers is None or workers > 1)
    with ExitStack() as stack:
        pool = None
        if may_fork and parallel:
            pool = verify_chunks.forked_workers(workers or verify_chunks.default_workers())
            if pool is not None:
                stack.enter_context(pool)
        snapshot = stack.enter_context(store.read())
        check = _Verification(snapshot, verifier, origin, member_overdraft)
        if workers is None:
            many = snapshot.next_seq() > verify_chunks.PARALLEL_ENTRIES
            workers = verify_chunks.default_workers() if many else 1
        if workers > 1 and shareable:
            bits = verify_chunks.CHUNK_BITS if chunk_bits is None else chunk_bits
            report = check.run_in_chunks(store.url, workers, bits, pool)
            if report is not None:
                return report
            check = _Verification(snapshot, verifier, origin, member_overdraft)
        return check.run()


class _Verification:
    def __init__(
        self,
        db: Snapshot,
        verifier: Verifier,
        origin: str,
        member_overdraft: int,
    ) -> None:
        self.db = db
        self.verifier = verifier
        self.origin = origin
        self.member_overdraft = member_overdraft
        self.report = Report()
        self.leaf_hashes: list[bytes] = []
        self.roots: dict[int, bytes] = {}
        self.balances: dict[str, int] = {}
        self.fallback = ""  # why the check in worker processes did not accept the log

    def run(self) -> Report:
        self._check_entries()
        self._check_nodes()
        self._check_checkpoints()
        self._check_balances()
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
        self.roots, self.balances = joined.roots, joined.balances
        self.report.entries, self.report.root = joined.entries, joined.root
        self.report.accounts = len(joined.balances)
        self._check_checkpoints()
        self._check_balances()
        return self.report

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
            self.leaf_hashes.append(step.leaf_hash)
        for seq in postings.leftover():
            report.add(f"seq {seq}", "postings index has rows for an entry that does not exist")
        replay.finish(
            lambda seqs: {s: e.leaf for s, e in self.db.entries_by_seq(list(seqs)).items()}
        )
        self.roots = replay.roots
        self.balances = replay.balances
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
        mismatched: list[int] = []
        for row in self.db.stream_checkpoints():
            size = int(row.size)
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

    def _check_balances(self) -> None:
        stored = {r.account: int(r.minutes) for r in self.db.stream_balances()}
        for account in sorted(set(self.balances) | set(stored)):
            want, got = self.balances.get(account, 0), stored.get(account, 0)
            if want != got:
                self.report.add(
                    f"account {account}", f"stored balance {got} minutes, postings give {want}"
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


def format_report(report: Report) -> Iterable[str]:
    yield report.summary()
    for problem in report.problems:
        yield f"  {problem}"


def stored_bytes(value: object) -> bytes | None:
    """A binary column's value as bytes; None when it holds something else (an edit stored
    text there): named as a problem, never a crash of the check."""
    return bytes(value) if isinstance(value, bytes | bytearray | memoryview) else None
