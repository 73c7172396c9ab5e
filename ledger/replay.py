"""Replaying the log's leaves in order: the per-entry checks every verifier shares.

``ledger.verify`` (a database) and ``audit.auditor`` (an export bundle, or a log over HTTP) feed
leaves to a :class:`Replay` in order. It collects a :class:`Problem` per fault (``seq N`` and a
reason, never stopping at the first) and keeps what a verifier needs afterwards: the Merkle
frontier and the roots at the sizes asked for, and the running balances.

Per leaf it checks:

* the leaf decodes and is canonical (RFC 8785), and its ``seq`` is its position
  (a run of shifted entries — something removed or inserted — is reported once)
* the hash chain: ``prev`` is the leaf hash of the entry before it (32 zero bytes for seq 0)
* ``time`` never decreases
* postings sum to zero and follow the kind's rules (``ledger.postings``): hours are created
  only by the kinds allowed to debit issuance
* no member (or pool/redemption) account goes below its floor at any point
* a reversal names an earlier entry, reverses it only once, and exactly negates it (checked in
  :meth:`Replay.finish`, which asks the caller for the original leaves)

Pure: no I/O. The state after a replay (:class:`ReplayState`) can be saved and resumed, so an
online auditor only replays the leaves it has not seen yet.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ledger.entry import (
    ZERO_HASH,
    Entry,
    EntryRequest,
)
from ledger.errors import EntryError, LedgerError
from ledger.leaf_decoding import decode_leaf
from ledger.merkle import Frontier
from ledger.postings import check_postings, check_reversal, floor_of


@dataclass(frozen=True)
class Problem:
    """One fault: where (``seq N``, ``checkpoint N``, ``node L/I``, ``account A``…) and why."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"

    @property
    def seq(self) -> int | None:
        if self.where.startswith("seq ") and self.where[4:].isdigit():
            return int(self.where[4:])
        return None


@dataclass
class Findings:
    """Every problem a check found, in order. The base of the operator's ``ledger.verify``
    report and the auditor's report, so both say ``ok`` and list problems the same way."""

    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, where: str, message: str) -> None:
        self.problems.append(Problem(where, message))


# ---------------------------------------------------------------- state


@dataclass
class ReplayState:
    """Everything a replay needs to continue after ``size`` leaves."""

    size: int = 0
    prev_hash: bytes = ZERO_HASH
    prev_time: str = ""
    frontier: Frontier = field(default_factory=Frontier)
    balances: dict[str, int] = field(default_factory=dict)
    below_floor: set[str] = field(default_factory=set)
    reversed: dict[int, int] = field(default_factory=dict)  # original seq → reversing seq

    def to_json(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "prev_hash": base64.b64encode(self.prev_hash).decode(),
            "prev_time": self.prev_time,
            "frontier": {
                "size": self.frontier.size,
                "levels": list(self.frontier.levels),
                "hashes": [base64.b64encode(h).decode() for h in self.frontier.hashes],
            },
            "balances": dict(sorted(self.balances.items())),
            "below_floor": sorted(self.below_floor),
            "reversed": {str(k): v for k, v in sorted(self.reversed.items())},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReplayState:
        """Inverse of ``to_json``; raises ValueError (or KeyError/TypeError) on a bad document."""
        f = data["frontier"]
        frontier = Frontier(
            int(f["size"]),
            [int(x) for x in f["levels"]],
            [base64.b64decode(h, validate=True) for h in f["hashes"]],
        )
        if [level for level, _ in Frontier.plan(frontier.size)] != frontier.levels:
            raise ValueError("frontier levels do not fit its size")
        if len(frontier.hashes) != len(frontier.levels) or any(
            len(h) != 32 for h in frontier.hashes
        ):
            raise ValueError("frontier hashes do not fit its levels")
        state = cls(
            size=int(data["size"]),
            prev_hash=base64.b64decode(data["prev_hash"], validate=True),
            prev_time=str(data["prev_time"]),
            frontier=frontier,
            balances={str(k): int(v) for k, v in data["balances"].items()},
            below_floor={str(a) for a in data["below_floor"]},
            reversed={int(k): int(v) for k, v in data["reversed"].items()},
        )
        if state.size != frontier.size or len(state.prev_hash) != 32:
            raise ValueError("replay state is inconsistent")
        return state


@dataclass(frozen=True)
class Step:
    """What one leaf replayed to: its leaf hash, and the entry if it decoded."""

    leaf_hash: bytes
    entry: Entry | None


class Decoded(NamedTuple):
    """What one leaf says on its own (no position, no history): the checks that can run in
    parallel. Plain values, so a worker process can send it as a plain tuple (``Fields``)."""

    leaf_hash: bytes
    seq: int  # -1 when the leaf did not decode
    prev: bytes
    time: str
    postings: tuple[tuple[str, int], ...]
    reversal: EntryRequest | None  # the request, if the entry is a reversal
    reverses: int | None  # the entry a reversal names, if it names one
    malformed: str  # why the leaf does not decode, or ""
    rule: str  # why its postings break the kind's rules, or ""


Fields = tuple[
    bytes, int, bytes, str, tuple[tuple[str, int], ...], EntryRequest | None, int | None, str, str
]
"""A :class:`Decoded` as a plain tuple (what :meth:`Replay.apply` takes)."""


def decode(leaf: bytes) -> Decoded:
    """The per-leaf half of :meth:`Replay.add` (pure; safe to run in worker processes)."""
    return _decode(leaf)[0]


def _decode(leaf: bytes) -> tuple[Decoded, Entry | None]:
    computed = hashlib.sha256(b"\x00" + leaf).digest()
    try:
        entry = decode_leaf(leaf)
    except LedgerError as exc:
        return Decoded(computed, -1, b"", "", (), None, None, f"leaf is malformed: {exc}", ""), None
    request = entry.request
    rule = ""
    try:
        check_postings(request)
    except EntryError as exc:
        rule = str(exc)
    reversal, reverses = None, None
    if request.kind == "reversal":
        reversal = request
        target = request.body.get("reverses")
        if isinstance(target, int) and not isinstance(target, bool):
            reverses = target
    postings = tuple((p.account, p.minutes) for p in request.postings)
    decoded = Decoded(
        computed, entry.seq, entry.prev, entry.time, postings, reversal, reverses, "", rule
    )
    return decoded, entry


@dataclass
class _Shift:
    """A run of consecutive entries whose leaf ``seq`` is off from their position by ``offset``."""

    start: int
    offset: int
    last: int
    index: int  # where its problem sits in the problem list


class Replay:
    """Feed leaves in order with :meth:`add`; call :meth:`finish` once at the end."""

    def __init__(
        self,
        member_overdraft: int = 0,
        *,
        state: ReplayState | None = None,
        root_sizes: Collection[int] = (),
        problems: list[Problem] | None = None,
    ) -> None:
        state = state or ReplayState()
        self.member_overdraft = member_overdraft
        self.problems: list[Problem] = [] if problems is None else problems
        self.root_sizes = root_sizes
        self.roots: dict[int, bytes] = {}
        self.frontier = Frontier(
            state.frontier.size, list(state.frontier.levels), list(state.frontier.hashes)
        )
        self.balances: dict[str, int] = dict(state.balances)
        self.below_floor: set[str] = set(state.below_floor)
        self.reversed: dict[int, int] = dict(state.reversed)
        self.prev_hash = state.prev_hash
        self.prev_time = state.prev_time
        self.next_position = state.size
        self._reversals: list[tuple[int, int, EntryRequest]] = []
        self._shift: _Shift | None = None

    @property
    def size(self) -> int:
        return self.frontier.size

    def root(self) -> bytes:
        return self.frontier.root()

    def state(self) -> ReplayState:
        return ReplayState(
            size=self.frontier.size,
            prev_hash=self.prev_hash,
            prev_time=self.prev_time,
            frontier=Frontier(
                self.frontier.size, list(self.frontier.levels), list(self.frontier.hashes)
            ),
            balances=dict(self.balances),
            below_floor=set(self.below_floor),
            reversed=dict(self.reversed),
        )

    def _add(self, where: str, message: str) -> None:
        self.problems.append(Problem(where, message))

    def add(self, position: int, leaf: bytes) -> Step:
        """Replay the leaf stored at ``position`` (its row's seq, or its index in a file)."""
        decoded, entry = _decode(leaf)
        self.apply(position, decoded)
        return Step(decoded.leaf_hash, entry)

    def apply(self, position: int, leaf: Fields) -> None:
        """The sequential half of :meth:`add`, for a leaf already :func:`decode` d."""
        leaf_hash, seq, prev, time, postings, reversal, reverses, malformed, rule = leaf
        if position != self.next_position:
            expected = self.next_position
            missing = str(expected) if position == expected + 1 else f"{expected}–{position - 1}"
            self._add(f"seq {position}", f"entries {missing} are missing before it")
        if malformed:
            self._add(f"seq {position}", malformed)
            self._shift = None
        else:
            if seq != position or self._shift is not None:
                self._check_position(position, seq)
            if prev != self.prev_hash:
                if position == 0:
                    self._add(f"seq {position}", "prev of the first entry is not 32 zero bytes")
                elif position == self.next_position and seq == position:
                    self._add(
                        f"seq {position - 1}",
                        f"leaf hash does not match the prev recorded by seq {position} "
                        "(this entry, or that prev, was altered)",
                    )
            if time < self.prev_time:
                self._add(f"seq {position}", f"time {time} is before the previous {self.prev_time}")
            else:
                self.prev_time = time
            if rule:
                self._add(f"seq {position}", rule)
            if reversal is not None:
                if reverses is None:
                    self._add(f"seq {position}", "reversal does not name the entry it reverses")
                else:
                    self._reversals.append((position, reverses, reversal))
            self._apply_postings(position, postings)
        self.prev_hash = leaf_hash
        self.frontier.append(leaf_hash)
        if self.frontier.size in self.root_sizes:
            self.roots[self.frontier.size] = self.frontier.root()
        self.next_position = position + 1

    def _check_position(self, position: int, seq: int) -> None:
        shift = self._shift
        if seq == position:
            self._shift = None
            return
        offset = seq - position
        if shift is not None and shift.offset == offset and shift.last == position - 1:
            shift.last = position
            first_seq = shift.start + offset
            self.problems[shift.index] = Problem(
                f"seq {shift.start}",
                f"leaf says seq {first_seq} (entries moved or swapped); so do the "
                f"{position - shift.start} entries after it, up to seq {position} "
                f"(shifted by {offset:+d}: entries were removed or inserted before seq "
                f"{shift.start})",
            )
            return
        self._shift = _Shift(position, offset, position, len(self.problems))
        self._add(f"seq {position}", f"leaf says seq {seq} (entries moved or swapped)")

    def _apply_postings(self, position: int, postings: tuple[tuple[str, int], ...]) -> None:
        balances, below_floor = self.balances, self.below_floor
        for account, minutes in postings:
            balance = balances[account] = balances.get(account, 0) + minutes
            floor = floor_of(account, self.member_overdraft)
            if floor is None:
                continue
            if balance < floor:
                if account not in below_floor:
                    self._add(
                        f"seq {position}",
                        f"account {account} falls to {balance} minutes, below its floor {floor}",
                    )
                below_floor.add(account)
            elif below_floor:
                below_floor.discard(account)

    def expect_reversal(self, position: int, reverses: int, request: EntryRequest) -> None:
        """A reversal decoded elsewhere (``ledger.verify_chunks``), checked in :meth:`finish`."""
        self._reversals.append((position, reverses, request))

    def finish(self, originals: Callable[[Sequence[int]], Mapping[int, bytes]]) -> None:
        """Check the reversals seen so far; ``originals(seqs)`` returns the leaves they name.

        A seq missing from what ``originals`` returns is reported as an entry that does not
        exist (callers return only leaves they could authenticate).
        """
        pending, self._reversals = self._reversals, []
        wanted = sorted({t for seq, t, _ in pending if 0 <= t < seq})
        leaves = originals(wanted) if wanted else {}
        for seq, target, request in pending:
            where = f"seq {seq}"
            if target >= seq:
                self._add(where, f"reverses entry {target}, which comes after it")
                continue
            if target in self.reversed:
                self._add(
                    where, f"reverses entry {target} again (already by seq {self.reversed[target]})"
                )
            else:
                self.reversed[target] = seq
            leaf = leaves.get(target)
            try:
                original = decode_leaf(leaf).request if leaf is not None else None
                check_reversal(request, original, target)
            except LedgerError as exc:
                self._add(where, str(exc))
