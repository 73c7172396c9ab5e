"""Log entries and their canonical encoding (RFC 8785 JCS).

An entry's leaf bytes are the UTF-8 of its RFC 8785 canonical JSON. We produce it with the
standard library's C encoder (sorted keys, no whitespace, no ASCII escaping), which equals
RFC 8785 for the values we allow: integers within ±(2^53-1), strings, booleans, null, lists and
objects whose keys are printable ASCII (so code-point order equals UTF-16 order). Anything else
is refused before encoding; a property test checks the equality against the ``rfc8785`` package.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ledger.errors import MalformedEntry

FORMAT_VERSION = 1
MAX_SAFE_INTEGER = 2**53 - 1
MAX_LEAF_BYTES = 64 * 1024
ZERO_HASH = bytes(32)

ENTRY_ID = re.compile(r"^[A-Za-z0-9._:@/-]{1,128}\Z")
KIND = re.compile(r"^[a-z][a-z0-9_-]{0,31}\Z")
ACCOUNT = re.compile(
    r"^[a-z0-9][a-z0-9-]{0,31}:((member|hold|clearing|due_to|due_from):[A-Za-z0-9_-]{1,64}|issuance|pool|redemption)\Z"
)
ASCII_KEY = re.compile(r"^[\x20-\x7e]{1,64}\Z")
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z\Z")

JSON = Any


def _plain(value: JSON) -> bool:
    """A string, boolean, null or safe integer of the built-in types: nothing to check inside,
    so no path is built for it (the common case, checked without ``isinstance``)."""
    kind = type(value)
    return (
        kind is str
        or kind is bool
        or value is None
        or (kind is int and -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER)
    )


def _check_value(value: JSON, path: str) -> None:
    if _plain(value) or isinstance(value, bool | str):
        return
    if isinstance(value, int):
        if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise MalformedEntry(f"{path}: integer {value} is outside ±(2^53-1)", field=path)
        return
    if isinstance(value, float):
        raise MalformedEntry(f"{path}: floats are not allowed; use integer minutes", field=path)
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            if not _plain(item):
                _check_value(item, f"{path}[{i}]")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str) or not ASCII_KEY.match(key):
                raise MalformedEntry(f"{path}: object keys must be printable ASCII", field=path)
            if not _plain(item):
                _check_value(item, f"{path}.{key}")
        return
    raise MalformedEntry(f"{path}: {type(value).__name__} is not a JSON value", field=path)


RECORD_SIGNING_PREFIX = b"timebank-record/v1\n"


def record_signing_message(record_digest: str) -> bytes:
    """What a volunteer's phone signs for a service record: a fixed prefix, then the record's
    digest (hex SHA-256 of its canonical fields, the deposit's ``body.record``). Signing the
    digest rather than the fields lets an auditor check the signature from the public log alone,
    against the device key the log published, without the record's private fields."""
    return RECORD_SIGNING_PREFIX + record_digest.encode("ascii")


def canonical_json(value: JSON) -> bytes:
    """RFC 8785 canonical JSON of ``value``; MalformedEntry if it holds something we refuse."""
    _check_value(value, "$")
    return _encode(value)


_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def encodes_as_utf8(text: str) -> bool:
    """Whether ``text`` holds no lone surrogate (what a JSON ``"\ud800"`` or bytes that are not
    UTF-8 decode to): no encoder, database or signature takes one."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _encode(value: JSON) -> bytes:
    """``canonical_json`` of a value already checked with ``_check_value``."""
    try:
        return _ENCODER.encode(value).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MalformedEntry("strings must be valid Unicode (no lone surrogates)") from exc


@dataclass(frozen=True)
class Posting:
    account: str
    minutes: int


@dataclass(frozen=True)
class Ceiling:
    """A credit to ``account`` that may take it (with ``counted``, e.g. its hold account) only
    up to ``limit``: the writer sends the excess to ``overflow`` and writes the excess into
    ``body[note]``. It is applied against the balances inside the append, so credits racing
    each other cannot pass the limit together (a check before the append could not see them).
    """

    account: str
    counted: tuple[str, ...]
    limit: int
    overflow: str
    note: str

    def apply(self, request: EntryRequest, balances: Mapping[str, int]) -> EntryRequest:
        credit = sum(p.minutes for p in request.postings if p.account == self.account)
        room = max(0, self.limit - sum(balances.get(a, 0) for a in self.counted))
        kept = min(credit, room)
        excess = (
            credit - kept + sum(p.minutes for p in request.postings if p.account == self.overflow)
        )
        postings = [p for p in request.postings if p.account not in (self.account, self.overflow)]
        postings += [Posting(self.account, kept)] if kept else []
        postings += [Posting(self.overflow, excess)] if excess else []
        body = {**request.body, self.note: excess}
        return dataclasses.replace(request, postings=tuple(postings), body=body, ceiling=None)


@dataclass(frozen=True)
class EntryRequest:
    """What a caller asks the log to append. ``body`` and ``signatures`` are plain JSON;
    ``ceiling`` (not part of the entry) is applied by the writer before the entry is made."""

    kind: str
    id: str
    postings: tuple[Posting, ...] = ()
    body: Mapping[str, JSON] = field(default_factory=dict)
    signatures: tuple[Mapping[str, str], ...] = ()
    ceiling: Ceiling | None = None

    def validate(self) -> None:
        """Shape checks that need no state. Raises MalformedEntry naming the field."""
        if not isinstance(self.kind, str) or not KIND.match(self.kind):
            raise MalformedEntry(
                "kind must be lower-case letters, digits, '-' or '_'", field="kind"
            )
        if not isinstance(self.id, str) or not ENTRY_ID.match(self.id):
            raise MalformedEntry(
                "id must be 1-128 characters of letters, digits and ._:@/-", field="id"
            )
        seen: set[str] = set()
        for i, posting in enumerate(self.postings):
            where = f"postings[{i}]"
            if not isinstance(posting.account, str) or not ACCOUNT.match(posting.account):
                raise MalformedEntry(
                    "%(where)s.account is not a ledger account id", field=where, where=where
                )
            if posting.account in seen:
                raise MalformedEntry(
                    "%(where)s.account appears twice in one entry", field=where, where=where
                )
            seen.add(posting.account)
            if (
                not isinstance(posting.minutes, int)
                or isinstance(posting.minutes, bool)
                or posting.minutes == 0
            ):
                raise MalformedEntry(
                    "%(where)s.minutes must be a non-zero integer", field=where, where=where
                )
            if abs(posting.minutes) > MAX_SAFE_INTEGER:
                raise MalformedEntry(
                    "%(where)s.minutes is outside ±(2^53-1)",
                    field=f"{where}.minutes",
                    where=where,
                )
        if not isinstance(self.body, Mapping):
            raise MalformedEntry("body must be an object", field="body")
        for i, sig in enumerate(self.signatures):
            if not isinstance(sig, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in sig.items()
            ):
                raise MalformedEntry(
                    f"signatures[{i}] must map names to strings", field="signatures"
                )
        _check_value(dict(self.body), "body")
        _check_value([dict(s) for s in self.signatures], "signatures")

    def content(self) -> dict[str, JSON]:
        """The caller-chosen part of an entry: equal content means the same request."""
        return {
            "kind": self.kind,
            "id": self.id,
            "postings": [{"account": p.account, "minutes": p.minutes} for p in self.postings],
            "body": dict(self.body),
            "signatures": [dict(s) for s in self.signatures],
        }


def _within_limit(leaf: bytes) -> bytes:
    if len(leaf) > MAX_LEAF_BYTES:
        raise MalformedEntry(f"entry is larger than {MAX_LEAF_BYTES} bytes", field="body")
    return leaf


@dataclass(frozen=True)
class Entry:
    seq: int
    prev: bytes
    time: str
    request: EntryRequest

    def to_json(self) -> dict[str, JSON]:
        return {
            "v": FORMAT_VERSION,
            "seq": self.seq,
            "prev": base64.b64encode(self.prev).decode(),
            "time": self.time,
            **self.request.content(),
        }

    def leaf(self) -> bytes:
        return _within_limit(canonical_json(self.to_json()))

    def validated_leaf(self) -> bytes:
        """``leaf`` of an entry whose request passed ``validate`` (the sequencer's case): its
        every value is then one canonical JSON takes (``seq`` an int, ``prev`` and ``time``
        strings), so they are encoded without walking them again."""
        return _within_limit(_encode(self.to_json()))

    @classmethod
    def from_leaf(cls, data: bytes) -> Entry:
        """Decode leaf bytes, requiring the exact canonical form and every field."""
        try:
            raw = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MalformedEntry(f"leaf is not JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise MalformedEntry("leaf is not a JSON object")
        expected = {"v", "seq", "prev", "time", "kind", "id", "postings", "body", "signatures"}
        if set(raw) != expected:
            raise MalformedEntry(f"leaf fields are {sorted(raw)}, expected {sorted(expected)}")
        if raw["v"] != FORMAT_VERSION:
            raise MalformedEntry(f"unknown format version {raw['v']!r}", field="v")
        if type(raw["seq"]) is not int or raw["seq"] < 0:
            raise MalformedEntry("seq must be a non-negative integer", field="seq")
        if not isinstance(raw["time"], str) or not TIME.match(raw["time"]):
            raise MalformedEntry("time must be RFC 3339 UTC with microseconds", field="time")
        try:
            prev = base64.b64decode(raw["prev"], validate=True)
        except (TypeError, ValueError) as exc:
            raise MalformedEntry("prev is not base64", field="prev") from exc
        if len(prev) != 32:
            raise MalformedEntry("prev is not 32 bytes", field="prev")
        postings = raw["postings"]
        if not isinstance(postings, list) or not all(
            isinstance(p, dict) and set(p) == {"account", "minutes"} for p in postings
        ):
            raise MalformedEntry("postings must be a list of {account, minutes}", field="postings")
        signatures = raw["signatures"]
        if not isinstance(signatures, list):
            raise MalformedEntry("signatures must be a list", field="signatures")
        request = EntryRequest(
            kind=raw["kind"],
            id=raw["id"],
            postings=tuple(Posting(p["account"], p["minutes"]) for p in postings),
            body=raw["body"],
            signatures=tuple(signatures),
        )
        request.validate()
        entry = cls(raw["seq"], prev, raw["time"], request)
        if entry.leaf() != data:
            raise MalformedEntry("leaf is not in RFC 8785 canonical form")
        return entry
