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
import binascii
import hashlib
import json
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any, NamedTuple

from ledger.entry import (
    ACCOUNT,
    ENTRY_ID,
    FORMAT_VERSION,
    KIND,
    MAX_LEAF_BYTES,
    MAX_SAFE_INTEGER,
    TIME,
    ZERO_HASH,
    Entry,
    EntryRequest,
    Posting,
)
from ledger.errors import EntryError, LedgerError
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


# ---------------------------------------------------------------- decoding leaves fast

_FIELDS = frozenset({"v", "seq", "prev", "time", "kind", "id", "postings", "body", "signatures"})
_POSTING_FIELDS = frozenset({"account", "minutes"})
_MAX_KEY = 64  # ``entry.ASCII_KEY``: object keys are 1–64 printable ASCII characters


def _refuse(_: str) -> Any:
    raise ValueError("not on the fast path")


# Integers are parsed by the C scanner itself (a Python ``parse_int`` costs a call per number);
# their range is checked on the decoded values (:func:`_plain_value`).
_DECODER = json.JSONDecoder(parse_float=_refuse, parse_constant=_refuse)
# The decoder's C scanner: one JSON value from an index, no whitespace skipped around it.
_SCAN: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]
_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)
# What ``_ENCODER.encode`` runs for a dict, called directly: the same output without the
# per-call setup (decoded JSON cannot hold a cycle, so no markers).
_C_ENCODE = (
    None
    if c_make_encoder is None
    else c_make_encoder(None, _refuse, encode_basestring, None, ":", ",", True, False, False)
)
# Accounts and kinds already matched against ``entry.ACCOUNT`` / ``entry.KIND`` (a set look-up
# instead of a regular expression per posting), per pattern; cleared past a bound.
_MATCHED: dict[re.Pattern[str], set[str]] = {ACCOUNT: set(), KIND: set()}
_MATCHED_BOUND = 1 << 16


def _canonical_text(raw: dict[str, Any]) -> str:
    if _C_ENCODE is None:
        return _ENCODER.encode(raw)
    return "".join(_C_ENCODE(raw, 0))


def _matches(name: Any, pattern: re.Pattern[str]) -> bool:
    """``pattern.match(name)`` for a string ``name``, remembered."""
    if type(name) is not str:
        return False
    matched = _MATCHED[pattern]
    if name in matched:
        return True
    if not pattern.match(name):
        return False
    if len(matched) >= _MATCHED_BOUND:
        matched.clear()
    matched.add(name)
    return True


def _plain_value(value: Any) -> bool:
    """Integers within ±(2^53-1) and object keys of 1–64 characters, all the way down (in a
    decoded plain leaf; there are no floats, and every character is printable ASCII)."""
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            if not 0 < len(key) <= _MAX_KEY:
                return False
            kind = type(item)
            if kind in _SCALARS:
                continue
            if kind is int:
                if not -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                    return False
            elif not _plain_value(item):
                return False
        return True
    if kind is int:
        return bool(-MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER)
    if kind is list:
        return all(_plain_value(v) for v in value)
    return True


_SCALARS = frozenset({str, bool, type(None)})  # values with nothing inside to check


def prev_bytes(text: Any) -> bytes | None:
    """The 32 bytes a leaf's ``prev`` names, if it is their one base64 spelling."""
    if type(text) is not str:
        return None
    try:
        prev = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(prev) != 32 or base64.b64encode(prev).decode() != text:
        return None
    return prev


class PlainLeaf(NamedTuple):
    """A leaf's fields as :func:`plain_leaf` read them (``prev`` still in base64)."""

    seq: int
    prev: str
    time: str
    kind: str
    id: str
    body: dict[str, Any]
    postings: list[tuple[str, int]]
    signatures: list[dict[str, str]]


# The canonical leaf with no signatures, field by field (keys in their sorted order): every
# string in a charset that needs no escape, integers of at most 15 digits (so within
# ±(2^53-1)) in their one spelling; only ``body`` is left to the JSON decoder.
_ENVELOPE = re.compile(
    r'\{"body":(\{.*?\}),"id":"([A-Za-z0-9._:@/-]{1,128})","kind":"([a-z][a-z0-9_-]{0,31})",'
    r'"postings":\[((?:\{"account":"[A-Za-z0-9:_-]+","minutes":-?[1-9][0-9]{0,14}\})'
    r'(?:,\{"account":"[A-Za-z0-9:_-]+","minutes":-?[1-9][0-9]{0,14}\})*)?\],'
    r'"prev":"([A-Za-z0-9+/]{43}=)","seq":(0|[1-9][0-9]{0,14}),"signatures":\[\],'
    r'"time":"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z)","v":1\}'
)
_POSTING = re.compile(r'\{"account":"([^"]+)","minutes":(-?[0-9]+)\}')


def plain_leaf(leaf: bytes) -> PlainLeaf | None:
    """The leaf's fields if it is plainly canonical and well formed, except ``prev``, which is
    only known to be a string (check it with :func:`prev_bytes`, or against the hash it must
    equal); None when only ``Entry.from_leaf`` can tell.

    ``Entry.from_leaf`` walks every value three times; for the common leaf (ASCII, no escapes,
    no floats) this decides the same thing at a fraction of the cost, which is what lets an
    auditor replay 10^6 entries in seconds. It only ever *accepts*, under conditions that imply
    ``Entry.from_leaf`` accepts too and returns an equal entry; anything unusual, and every
    error, goes to ``Entry.from_leaf``, the one authority on what a valid leaf is (a
    differential test holds the two to the same answers).

    Why these checks suffice: without a backslash there are no escapes, so every string's
    characters are the text's, all printable ASCII (no 0x7f; a strict decoder refuses control
    characters), and keys must then only be 1–64 long. A leaf without signatures is matched
    field by field against its canonical layout (``_ENVELOPE``) and only its body is decoded;
    any other is decoded whole. Either way the text equals the canonical encoding of what it
    decodes to, so ``Entry.leaf()`` of the entry built from it gives these bytes back.
    """
    if len(leaf) > MAX_LEAF_BYTES or not leaf.isascii() or b"\\" in leaf or b"\x7f" in leaf:
        return None
    text = leaf.decode("ascii")
    envelope = _ENVELOPE.fullmatch(text)
    if envelope is None:
        return _plain_decoded(text)
    body_text, entry_id, kind, postings_text, prev, seq, time = envelope.groups()
    body = _plain_object(body_text)
    if body is None or not _matches(kind, KIND):
        return None
    moves = [(a, int(m)) for a, m in _POSTING.findall(postings_text or "")]
    accounts = _MATCHED[ACCOUNT]
    for account, _ in moves:
        if account not in accounts and not _matches(account, ACCOUNT):
            return None
    if len(moves) > 1 and len({a for a, _ in moves}) != len(moves):
        return None
    return PlainLeaf(int(seq), prev, time, kind, entry_id, body, moves, [])


def _plain_object(text: str) -> dict[str, Any] | None:
    """The object ``text`` holds if it is one plain JSON object in canonical form, else None."""
    try:  # floats, NaN and Infinity leave the fast path here
        value, end = _SCAN(text, 0)
    except (StopIteration, ValueError):
        return None
    if end != len(text) or type(value) is not dict or not _plain_value(value):
        return None
    return value if _canonical_text(value) == text else None


def _plain_decoded(text: str) -> PlainLeaf | None:
    """:func:`plain_leaf` for a leaf that does not fit ``_ENVELOPE``: decoded whole."""
    raw = _plain_object(text)
    if raw is None or raw.keys() != _FIELDS:
        return None
    seq, time, body, sigs, postings = (
        raw["seq"],
        raw["time"],
        raw["body"],
        raw["signatures"],
        raw["postings"],
    )
    if type(raw["v"]) is not int or raw["v"] != FORMAT_VERSION:
        return None
    if type(seq) is not int or seq < 0:
        return None
    if type(time) is not str or not TIME.match(time):
        return None
    if not _matches(raw["kind"], KIND):
        return None
    entry_id = raw["id"]
    if type(entry_id) is not str or not ENTRY_ID.match(entry_id):
        return None
    if type(raw["prev"]) is not str or type(body) is not dict:
        return None
    if type(sigs) is not list or not all(
        type(s) is dict and all(type(v) is str for v in s.values()) for s in sigs
    ):
        return None
    if type(postings) is not list:
        return None
    moves = []
    for p in postings:
        if type(p) is not dict or p.keys() != _POSTING_FIELDS:
            return None
        account, minutes = p["account"], p["minutes"]
        if not _matches(account, ACCOUNT):
            return None
        if type(minutes) is not int or minutes == 0:  # range: _plain_value
            return None
        moves.append((account, minutes))
    if len(moves) > 1 and len({a for a, _ in moves}) != len(moves):
        return None
    return PlainLeaf(seq, raw["prev"], time, raw["kind"], entry_id, body, moves, sigs)


def _fast_entry(leaf: bytes) -> Entry | None:
    """The entry, if ``leaf`` is plainly canonical (:func:`plain_leaf`); else None."""
    plain = plain_leaf(leaf)
    if plain is None:
        return None
    prev = prev_bytes(plain.prev)
    if prev is None:
        return None
    moves = tuple(Posting(a, m) for a, m in plain.postings)
    request = EntryRequest(plain.kind, plain.id, moves, plain.body, tuple(plain.signatures))
    return Entry(plain.seq, prev, plain.time, request)


def decode_leaf(leaf: bytes) -> Entry:
    """Decode and check a leaf exactly as ``Entry.from_leaf`` does, faster for common leaves."""
    entry = _fast_entry(leaf)
    return entry if entry is not None else Entry.from_leaf(leaf)


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
