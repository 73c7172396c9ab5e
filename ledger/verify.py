"""Offline verification of a whole database: every problem is collected, none stops the run.

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

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from ledger.entry import ZERO_HASH, Entry, EntryRequest, Posting
from ledger.errors import EntryError, LedgerError
from ledger.merkle import EMPTY_ROOT, Frontier, node_hash
from ledger.note import Checkpoint, Note, Verifier
from ledger.postings import check_postings, check_reversal, floor_of
from ledger.storage import LedgerStore, Snapshot


@dataclass(frozen=True)
class Problem:
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class Report:
    entries: int = 0
    checkpoints: int = 0
    accounts: int = 0
    root: bytes = EMPTY_ROOT
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, where: str, message: str) -> None:
        self.problems.append(Problem(where, message))

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
    store: LedgerStore, verifier: Verifier, origin: str, member_overdraft: int = 0
) -> Report:
    with store.read() as snapshot:
        return _Verification(snapshot, verifier, origin, member_overdraft).run()


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
        self.balances: dict[str, int] = defaultdict(int)
        self.reversals: list[tuple[int, int, EntryRequest]] = []

    def run(self) -> Report:
        self._check_entries()
        self._check_reversals()
        self._check_nodes()
        self._check_checkpoints()
        self._check_balances()
        return self.report

    def _check_entries(self) -> None:
        report = self.report
        checkpoint_sizes = self.db.checkpoint_sizes()
        postings = _PostingsIndex(self.db.stream_postings())
        frontier = Frontier()
        below_floor: set[str] = set()
        prev_hash = ZERO_HASH
        prev_time = ""
        expected_seq = 0
        for row in self.db.stream_entries():
            seq = int(row.seq)
            where = f"seq {seq}"
            if seq != expected_seq:
                missing = (
                    str(expected_seq) if seq == expected_seq + 1 else f"{expected_seq}–{seq - 1}"
                )
                report.add(where, f"entries {missing} are missing before it")
            leaf = bytes(row.leaf)
            computed = hashlib.sha256(b"\x00" + leaf).digest()
            if computed != bytes(row.leaf_hash):
                report.add(where, "stored leaf hash does not match the leaf bytes (entry altered)")
            entry = self._decode(where, leaf)
            if entry is not None:
                if entry.seq != seq:
                    report.add(where, f"leaf says seq {entry.seq} (entries moved or swapped)")
                if entry.prev != prev_hash:
                    if seq == 0:
                        report.add(where, "prev of the first entry is not 32 zero bytes")
                    elif seq == expected_seq:
                        report.add(
                            f"seq {seq - 1}",
                            f"leaf hash does not match the prev recorded by seq {seq} "
                            "(this entry, or that prev, was altered)",
                        )
                if (entry.request.id, entry.request.kind, entry.time) != (
                    row.id,
                    row.kind,
                    row.time,
                ):
                    report.add(where, "id, kind or time columns differ from the leaf")
                if entry.time < prev_time:
                    report.add(where, f"time {entry.time} is before the previous {prev_time}")
                prev_time = max(prev_time, entry.time)
                self._check_entry_postings(where, seq, entry.request, below_floor)
            if not postings.matches(seq, entry.request.postings if entry else ()):
                report.add(where, "postings index differs from the entry's postings")
            prev_hash = computed
            self.leaf_hashes.append(computed)
            frontier.append(computed)
            if frontier.size in checkpoint_sizes:
                self.roots[frontier.size] = frontier.root()
            expected_seq = seq + 1
        for seq in postings.leftover():
            report.add(f"seq {seq}", "postings index has rows for an entry that does not exist")
        report.entries = len(self.leaf_hashes)
        report.root = frontier.root()
        report.accounts = len(self.balances)

    def _decode(self, where: str, leaf: bytes) -> Entry | None:
        try:
            return Entry.from_leaf(leaf)
        except LedgerError as exc:
            self.report.add(where, f"leaf is malformed: {exc}")
            return None

    def _check_entry_postings(
        self, where: str, seq: int, request: EntryRequest, below_floor: set[str]
    ) -> None:
        try:
            check_postings(request)
        except EntryError as exc:
            self.report.add(where, str(exc))
        if request.kind == "reversal":
            target = request.body.get("reverses")
            if isinstance(target, int) and not isinstance(target, bool):
                self.reversals.append((seq, target, request))
            else:
                self.report.add(where, "reversal does not name the entry it reverses")
        for p in request.postings:
            self.balances[p.account] += p.minutes
            floor = floor_of(p.account, self.member_overdraft)
            if floor is None:
                continue
            if self.balances[p.account] < floor:
                if p.account not in below_floor:
                    self.report.add(
                        where,
                        f"account {p.account} falls to {self.balances[p.account]} minutes, "
                        f"below its floor {floor}",
                    )
                below_floor.add(p.account)
            else:
                below_floor.discard(p.account)

    def _check_reversals(self) -> None:
        originals = self.db.entries_by_seq(sorted({t for _, t, _ in self.reversals}))
        first_reversal: dict[int, int] = {}
        for seq, target, request in self.reversals:
            where = f"seq {seq}"
            if target >= seq:
                self.report.add(where, f"reverses entry {target}, which comes after it")
                continue
            if target in first_reversal:
                self.report.add(
                    where,
                    f"reverses entry {target} again (already by seq {first_reversal[target]})",
                )
            first_reversal[target] = seq
            stored = originals.get(target)
            try:
                original = Entry.from_leaf(stored.leaf).request if stored else None
                check_reversal(request, original, target)
            except LedgerError as exc:
                self.report.add(where, str(exc))

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
