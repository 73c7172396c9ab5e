"""Decoding a leaf fast: the common canonical leaf read against a template of its layout.

Every verifier decodes every leaf (``ledger.replay``, ``ledger.verify_chunks``, the auditor,
statements and receipts). A leaf that is plainly canonical — sorted keys, strings that need no
escaping, integers in range, no signatures — is checked field by field against
:data:`_AFTER_BODY` and only its body goes through the JSON decoder and the canonical
re-encoding; anything else is decoded by ``Entry.from_leaf``, which names what is wrong.
:func:`decode_leaf` returns exactly what ``Entry.from_leaf`` returns, or raises as it does.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
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
    Entry,
    EntryRequest,
    Posting,
)

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


# The canonical leaf with no signatures is ``{"body":`` + its body, then this, field by field
# (keys in their sorted order): every string in a charset that needs no escape, integers of at
# most 15 digits (so within ±(2^53-1)) in their one spelling. Two postings (the usual number)
# are captured one by one; any other number as one group for ``_POSTING``.
_BODY_AT = len('{"body":')
_ONE_POSTING = r'\{"account":"([A-Za-z0-9:_-]+)","minutes":(-?[1-9][0-9]{0,14})\}'
_ANY_POSTING = r'\{"account":"[A-Za-z0-9:_-]+","minutes":-?[1-9][0-9]{0,14}\}'
_AFTER_BODY = re.compile(
    r',"id":"([A-Za-z0-9._:@/-]{1,128})","kind":"([a-z][a-z0-9_-]{0,31})","postings":\['
    rf"(?:{_ONE_POSTING},{_ONE_POSTING}|((?:{_ANY_POSTING})(?:,{_ANY_POSTING})*)?)\],"
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
    characters), and keys must then only be 1–64 long. A leaf without signatures is read as
    ``{"body":``, one JSON object (the C scanner says where it ends; it must be its own
    canonical encoding), then the rest of its canonical layout (``_AFTER_BODY``); any other is
    decoded whole. Either way the text equals the canonical encoding of what it decodes to, so
    ``Entry.leaf()`` of the entry built from it gives these bytes back.
    """
    if len(leaf) > MAX_LEAF_BYTES or not leaf.isascii() or b"\\" in leaf or b"\x7f" in leaf:
        return None
    text = leaf.decode("ascii")
    if not text.startswith('{"body":{'):
        return _plain_decoded(text)
    try:  # floats, NaN and Infinity leave the fast path here
        body, end = _SCAN(text, _BODY_AT)
    except (StopIteration, ValueError):
        return None
    rest = _AFTER_BODY.fullmatch(text, end)
    if rest is None:
        return _plain_decoded(text)
    entry_id, kind, account, minutes, other, more_minutes, postings, prev, seq, time = rest.groups()
    if not _plain_value(body) or _canonical_text(body) != text[_BODY_AT:end]:
        return None
    if not _matches(kind, KIND):
        return None
    if account is not None:
        if account == other:
            return None
        moves = [(account, int(minutes)), (other, int(more_minutes))]
    else:
        moves = [(a, int(m)) for a, m in _POSTING.findall(postings or "")]
        if len(moves) > 1 and len({a for a, _ in moves}) != len(moves):
            return None
    accounts = _MATCHED[ACCOUNT]
    for name, _ in moves:
        if name not in accounts and not _matches(name, ACCOUNT):
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
    """:func:`plain_leaf` for a leaf that does not fit ``_AFTER_BODY``: decoded whole."""
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
