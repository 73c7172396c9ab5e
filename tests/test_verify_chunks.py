"""The per-leaf checks of ``timebank verify``'s worker processes against the reference ones.

``ledger.verify_chunks`` reads common leaves through ``leaf_decoding.plain_leaf`` (a template of the
canonical layout, then the JSON decoder) and checks a kind's posting rules once per
(kind, reason, accounts and signs). These tests hold both to ``Entry.from_leaf`` and
``postings.check_postings`` on leaves built to sit right at the edges of those shortcuts.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

from ledger import verify_chunks
from ledger.entry import ZERO_HASH, Entry, EntryRequest, Posting, canonical_json
from ledger.errors import LedgerError
from ledger.facts import fact_row
from ledger.leaf_decoding import _AFTER_BODY, _BODY_AT, _SCAN, _fast_entry, plain_leaf, prev_bytes
from ledger.merkle import Frontier, leaf_hash
from ledger.postings import check_postings
from tests.helpers import ISSUANCE, POOL, member

TIME = "2026-12-05T10:00:00.000000Z"


def _leaf(request: EntryRequest, seq: int = 0, prev: bytes = ZERO_HASH) -> bytes:
    """Leaf bytes of ``request`` as written, with no rule checked (``Entry.leaf``)."""
    return Entry(seq, prev, TIME, request).leaf()


def _deposit(entry_id: str, to: str, amount: int, **body: Any) -> EntryRequest:
    postings = (Posting(ISSUANCE, -amount), Posting(to, amount))
    return EntryRequest("deposit", entry_id, postings, body)


def _reference(leaf: bytes) -> bool:
    """Whether the one-process replay accepts the leaf on its own (decodes, follows rules)."""
    try:
        check_postings(Entry.from_leaf(leaf).request)
    except LedgerError:
        return False
    return True


def _raw(leaf: bytes) -> dict[str, Any]:
    return json.loads(leaf)  # type: ignore[no-any-return]


def _edited(leaf: bytes, field: str, value: Any) -> bytes:
    raw = _raw(leaf)
    raw[field] = value
    return json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


BASE = _leaf(_deposit("d-1", member(1), 30, record="ab" * 32, minutes=30, service="meal"))
THREE_POSTINGS = _leaf(
    EntryRequest(
        "deposit",
        "d-3",
        (Posting(ISSUANCE, -30), Posting(member(1), 20), Posting(member(2), 10)),
        {"service": "meal"},
    )
)
# Leaves that sit on the edges of the envelope template or of the decoded path; each is
# judged by the reference decoder, so the list may hold both good and bad ones.
EDGES = [
    BASE,
    _edited(BASE, "body", {"x": {}, "id": "fake", "kind": "deposit"}),
    _edited(BASE, "body", {"a": '},"id":"x","kind":"deposit","postings":[],"prev":"'}),
    _edited(BASE, "body", {"n": 2**53 - 1, "m": -(2**53 - 1)}),
    _edited(BASE, "body", {"n": 2**53}),
    _edited(BASE, "body", {"k" * 64: 1}),
    _edited(BASE, "body", {"k" * 65: 1}),
    _edited(BASE, "body", {"deep": [{"": 1}]}),
    _edited(BASE, "body", {"deep": [{"k": [1, 2**60]}]}),
    _edited(BASE, "body", {"s": "línea"}),
    _edited(BASE, "body", []),
    _edited(BASE, "seq", 10**15 - 1),
    _edited(BASE, "seq", 10**15),
    _edited(BASE, "seq", 2**53),
    _edited(BASE, "seq", True),
    _edited(BASE, "v", True),
    _edited(BASE, "prev", base64.b64encode(bytes(32)).decode().replace("A=", "B=")),
    _edited(BASE, "prev", base64.b64encode(bytes(31)).decode()),
    _edited(BASE, "signatures", [{"device": "ed25519:abc"}]),
    _edited(BASE, "signatures", [{"device": 1}]),
    _edited(BASE, "signatures", [{"d" * 65: "x"}]),
    _edited(BASE, "postings", []),
    _edited(BASE, "postings", [{"account": ISSUANCE, "minutes": -30}]),
    THREE_POSTINGS,
    _edited(
        BASE,
        "postings",
        [{"account": member(1), "minutes": 30}, {"account": ISSUANCE, "minutes": -30}],
    ),
    _edited(BASE, "postings", [{"account": ISSUANCE, "minutes": -30}] * 3),
    BASE.replace(b'"id":"d-1"', b'"id" :"d-1"'),
    _edited(BASE, "postings", [{"account": member(1), "minutes": 30}] * 2),
    _edited(
        BASE,
        "postings",
        [{"account": ISSUANCE, "minutes": -(2**53)}, {"account": member(1), "minutes": 2**53}],
    ),
    _edited(BASE, "postings", [{"account": ISSUANCE, "minutes": 0}]),
    _edited(BASE, "postings", [{"account": "bank:nobody", "minutes": -30}]),
    _edited(BASE, "kind", "Deposit"),
    _edited(BASE, "id", "has space"),
    _edited(BASE, "time", "2026-12-05T10:00:00Z"),
    BASE.replace(b'"minutes":-30', b'"minutes":-30.0'),
    BASE.replace(b'"minutes":-30', b'"minutes":-030'),
    BASE.replace(b'"v":1}', b'"v":1} '),
    BASE.replace(b'"v":1}', b'"v":1,"v":1}'),
    BASE.replace(b'{"body":{', b'{"body":{"minutes":1,'),
    BASE.replace(b'"service":"meal"', b'"service":"me\\u0061l"'),
    BASE.replace(b'"id":"d-1",', b"").replace(b'"kind"', b'"id":"d-1","kind"'),
]


@pytest.mark.parametrize("leaf", EDGES, ids=range(len(EDGES)))
def test_plain_leaf_accepts_only_what_the_reference_accepts(leaf: bytes) -> None:
    try:
        want: Entry | None = Entry.from_leaf(leaf)
    except LedgerError:
        want = None
    fast = _fast_entry(leaf)
    assert fast is None or fast == want
    plain = plain_leaf(leaf)
    if plain is not None and prev_bytes(plain.prev) is not None:  # prev: checked by the caller
        assert want is not None
        assert (plain.seq, plain.time, plain.kind, plain.id) == (
            want.seq,
            want.time,
            want.request.kind,
            want.request.id,
        )
        assert plain.body == want.request.body
        assert plain.postings == [(p.account, p.minutes) for p in want.request.postings]
    fields = verify_chunks._leaf_fields(leaf, set())
    assert (fields is not None and prev_bytes(fields[1]) is not None) == _reference(leaf)


def _fits_template(leaf: bytes) -> bool:
    text = leaf.decode()
    return _AFTER_BODY.fullmatch(text, _SCAN(text, _BODY_AT)[1]) is not None


def test_plain_leaf_takes_the_common_leaf_through_the_template() -> None:
    assert _fits_template(BASE)
    assert plain_leaf(BASE) is not None
    assert _fits_template(EDGES[1])  # a body key named "id"
    assert _fits_template(THREE_POSTINGS) and plain_leaf(THREE_POSTINGS) is not None
    assert plain_leaf(_edited(BASE, "signatures", [{"device": "ed25519:abc"}])) is not None


def _requests() -> list[EntryRequest]:
    """Requests whose (kind, reason, accounts and signs) repeat, each good or bad."""
    a, b = member(1), member(2)
    return [
        _deposit("d1", a, 30),
        _deposit("d2", a, 45),  # same key as d1: remembered
        EntryRequest("deposit", "d3", (Posting(ISSUANCE, -30), Posting(a, 40))),  # unbalanced
        _deposit("d4", b, 30),
        EntryRequest("gift", "g1", (Posting(a, -10), Posting(b, 10))),
        EntryRequest("gift", "g2", (Posting(a, 10), Posting(b, -10))),
        EntryRequest("gift", "g3", (Posting(a, -10), Posting(b, 11))),  # unbalanced
        EntryRequest("gift", "g4", (Posting(ISSUANCE, -10), Posting(b, 10))),  # role
        EntryRequest("grant", "p1", (Posting(POOL, -5), Posting(a, 5)), {"reason": "x"}),
        EntryRequest("grant", "p2", (Posting(POOL, -6), Posting(a, 6)), {"reason": "x"}),
        EntryRequest("grant", "p3", (Posting(POOL, -5), Posting(a, 5)), {"reason": " "}),
        EntryRequest("grant", "p4", (Posting(POOL, -5), Posting(a, 5)), {"reason": 3}),
        EntryRequest("grant", "p5", (Posting(POOL, -5), Posting(a, 5)), {}),
        EntryRequest("grant", "p6", (Posting(POOL, -5), Posting(a, 5)), {"reason": ["x"]}),
        EntryRequest("deposit", "d5", (Posting(ISSUANCE, -30), Posting(a, 30)), {"reason": 3}),
        EntryRequest("policy", "o1", (), {"reason": "x"}),
        EntryRequest("policy", "o2", (Posting(a, -1), Posting(b, 1))),
        EntryRequest("nonsense", "n1", (Posting(a, -1), Posting(b, 1))),
    ]


def test_remembered_posting_rules_give_the_reference_answers() -> None:
    remembered: set[tuple[Any, ...]] = set()
    for request in _requests() * 2:
        leaf = _leaf(request)
        got = verify_chunks._leaf_fields(leaf, remembered)
        assert (got is not None) == _reference(leaf), request
        assert got is None or prev_bytes(got[1]) == ZERO_HASH


def _rows(leaves: list[bytes]) -> tuple[list[Any], list[Any], list[list[Any]], list[Any]]:
    """What a worker reads for entries [0, len(leaves)) of a log holding ``leaves``."""
    rows, postings, facts = [], [], []
    for seq, leaf in enumerate(leaves):
        entry = Entry.from_leaf(leaf)
        request = entry.request
        rows.append((seq, request.id, leaf_hash(leaf), request.kind, entry.time, leaf, entry.prev))
        postings += [(seq, p.account, p.minutes) for p in request.postings]
        facts.append(fact_row(seq, request))
    frontier, nodes = Frontier(), [[] for _ in range(16)]
    for leaf in leaves:
        for level, index, node in frontier.append(leaf_hash(leaf)):
            nodes[level - 1].append((index, node))
    return rows, postings, nodes, facts


def _chain(requests: list[EntryRequest]) -> list[bytes]:
    leaves, prev = [], ZERO_HASH
    for seq, request in enumerate(requests):
        leaf = _leaf(request, seq, prev)
        leaves.append(leaf)
        prev = leaf_hash(leaf)
    return leaves


def test_a_chunk_of_good_leaves_is_accepted_with_its_frontiers() -> None:
    good = [r for r in _requests() if _reference(_leaf(r))]
    leaves = _chain((good * 3)[:16])
    leaves = _chain([Entry.from_leaf(leaf).request for leaf in leaves])
    rows, postings, nodes, facts = _rows(leaves)
    chunk = verify_chunks.check_rows(0, 16, 4, [5, 11, 16], rows, postings, nodes[:4], facts)
    assert chunk.dirty == ""
    for size, part in chunk.frontiers:
        frontier = Frontier()
        for leaf in leaves[:size]:
            frontier.append(leaf_hash(leaf))
        assert part == tuple(frontier.hashes)
    assert chunk.top == frontier.root()
    assert chunk.first_prev == ZERO_HASH and chunk.last_hash == leaf_hash(leaves[-1])


@pytest.mark.parametrize("at", [0, 5, 15])
def test_a_chunk_with_an_unbalanced_leaf_whose_key_was_seen_is_refused(at: int) -> None:
    requests = [_deposit(f"d{i}", member(i % 2), 30 + i) for i in range(16)]
    bad = requests[at]
    requests[at] = EntryRequest(bad.kind, bad.id, (bad.postings[0], Posting(member(at % 2), 99)))
    leaves = _chain(requests)
    rows, postings, nodes, facts = _rows(leaves)
    chunk = verify_chunks.check_rows(0, 16, 4, [16], rows, postings, nodes[:4], facts)
    assert chunk.dirty == f"seq {at}: the leaf"


def test_a_chunk_whose_prev_is_not_the_hash_before_is_refused() -> None:
    leaves = _chain([_deposit(f"d{i}", member(1), 30) for i in range(4)])
    raw = _raw(leaves[2])
    raw["prev"] = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    leaves[2] = canonical_json(raw)
    rows, postings, nodes, facts = _rows(leaves)
    chunk = verify_chunks.check_rows(0, 4, 2, [4], rows, postings, nodes[:2], facts)
    assert chunk.dirty == "seq 2: prev or time"
    leaves = _chain([_deposit(f"d{i}", member(1), 30) for i in range(4)])
    rows, postings, nodes, facts = _rows(leaves)
    assert verify_chunks.check_rows(0, 4, 2, [4], rows, postings, nodes[:2], facts).dirty == ""


def test_the_postings_index_is_compared_whatever_order_its_rows_come_in() -> None:
    """Rows in (seq, account) order are compared as a list; in any other order (a collation
    that sorts accounts differently) as a set; either way one changed row is refused."""
    requests = [_deposit(f"d{i}", member(i), 30) for i in range(4)]
    leaves = _chain([EntryRequest(r.kind, r.id, r.postings[::-1], r.body) for r in requests])
    rows, postings, nodes, facts = _rows(leaves)
    ordered = sorted(postings)
    assert ordered != postings  # the leaves list the member's account first
    for given in (ordered, postings, postings[::-1]):
        assert verify_chunks.check_rows(0, 4, 2, [4], rows, given, nodes[:2], facts).dirty == ""
    seq, account, minutes = ordered[5]
    changes = [
        (seq, account, minutes + 1),
        (seq + 1, account, minutes),
        (seq, member(9), minutes),
        ordered[4],
    ]
    for changed in changes:
        for given in ([*ordered[:5], changed, *ordered[6:]], [changed, *ordered[:5], *ordered[6:]]):
            chunk = verify_chunks.check_rows(0, 4, 2, [4], rows, given, nodes[:2], facts)
            assert chunk.dirty == "entries 0–3: postings index"
    for given in (ordered[:-1], [*ordered, (3, member(9), 1)]):
        chunk = verify_chunks.check_rows(0, 4, 2, [4], rows, given, nodes[:2], facts)
        assert chunk.dirty == "entries 0–3: postings index"


def test_a_chunk_whose_log_facts_row_differs_is_refused() -> None:
    """The rows the half-yearly report sums: one changed, missing or added is refused."""
    leaves = _chain(
        [_deposit(f"d{i}", member(1), 30, service="meal", minutes=30) for i in range(4)]
    )
    rows, postings, nodes, facts = _rows(leaves)
    assert verify_chunks.check_rows(0, 4, 2, [4], rows, postings, nodes[:2], facts).dirty == ""
    seq, kind, bank, credited, service, org, served = facts[2]
    for given in (
        [*facts[:2], (seq, kind, bank, credited + 60, service, org, served), facts[3]],
        [*facts[:2], (seq, kind, bank, credited, "bath", org, served), facts[3]],
        [*facts[:2], facts[3]],
        [*facts, (4, kind, bank, credited, service, org, served)],
    ):
        chunk = verify_chunks.check_rows(0, 4, 2, [4], rows, postings, nodes[:2], given)
        assert chunk.dirty == "entries 0–3: log_facts"


def test_a_new_batch_inside_a_chunk_needs_its_checkpoint() -> None:
    """Every batch's entries share its time and it signs a checkpoint: where the time changes
    a checkpoint of that size is stored, unless it was deleted."""
    leaves, prev = [], ZERO_HASH
    for seq in range(4):
        entry = Entry(
            seq,
            prev,
            TIME if seq < 2 else "2026-12-05T10:00:01.000000Z",
            _deposit(f"d{seq}", member(1), 30),
        )
        leaves.append(entry.leaf())
        prev = leaf_hash(leaves[-1])
    rows, postings, nodes, facts = _rows(leaves)
    assert verify_chunks.check_rows(0, 4, 2, [2, 4], rows, postings, nodes[:2], facts).dirty == ""
    chunk = verify_chunks.check_rows(0, 4, 2, [4], rows, postings, nodes[:2], facts)
    assert chunk.dirty == "seq 2: a new batch without a checkpoint before it"
