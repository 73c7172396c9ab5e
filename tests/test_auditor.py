"""The auditor: shared leaf replay, bundles, online verification, split views and receipts."""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.entry import ZERO_HASH, Entry, EntryRequest, Posting
from ledger.errors import LedgerError
from ledger.merkle import leaf_hash
from ledger.replay import Replay, ReplayState, _fast_entry, decode_leaf
from tests.helpers import ISSUANCE, deposit, donation, gift, grant, member, redemption

TIME = "2026-11-25T08:00:00.000000Z"


def mixed_requests(count: int) -> list[EntryRequest]:
    """Deposits, gifts, donations, grants, redemptions and one reversal that keep every rule."""
    requests: list[EntryRequest] = []
    for n in range(count):
        a, b = member(n % 7), member((n + 3) % 7)
        step = n % 10
        if n < 8 or step in (0, 1, 2, 3) or (step == 7 and n <= 10):
            requests.append(deposit(f"d{n}", a, 90 + n % 50))
        elif step in (4, 5):
            requests.append(gift(f"g{n}", a, b, 10))
        elif step == 6:
            requests.append(donation(f"n{n}", a, 15))
        elif step == 7 and n > 10:
            requests.append(grant(f"p{n}", b, 5))
        elif n == 8:
            requests.append(
                EntryRequest(
                    "reversal",
                    f"r{n}",
                    (Posting(ISSUANCE, 90), Posting(member(0), -90)),
                    {"reverses": 0, "reason": "logged twice"},
                )
            )
        else:
            requests.append(redemption(f"x{n}", a, 20))
    return requests


def demo_leaves(count: int) -> list[bytes]:
    leaves: list[bytes] = []
    prev = ZERO_HASH
    for seq, request in enumerate(mixed_requests(count)):
        leaf = Entry(seq, prev, TIME, request).leaf()
        leaves.append(leaf)
        prev = leaf_hash(leaf)
    return leaves


# ---------------------------------------------------------------- the fast decoder agrees


def _reference(leaf: bytes) -> Entry | None:
    try:
        return Entry.from_leaf(leaf)
    except LedgerError:
        return None


def _agree(leaf: bytes) -> None:
    want = _reference(leaf)
    fast = _fast_entry(leaf)
    assert fast is None or fast == want, leaf
    try:
        got: Entry | None = decode_leaf(leaf)
    except LedgerError:
        got = None
    assert got == want, leaf


def test_fast_decoder_takes_the_common_leaves() -> None:
    leaves = demo_leaves(300)
    assert sum(_fast_entry(leaf) is not None for leaf in leaves) == len(leaves)
    for leaf in leaves:
        _agree(leaf)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=True)
    | st.text(max_size=80),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=70), inner, max_size=3)
    ),
    max_leaves=8,
)
FIELDS = ["v", "seq", "prev", "time", "kind", "id", "postings", "body", "signatures"]


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.integers(min_value=0, max_value=59),
    field=st.sampled_from([*FIELDS, "postings.0.minutes", "postings.0.account", "extra"]),
    value=json_values,
    layout=st.sampled_from(["canonical", "ascii", "spaced", "unsorted"]),
)
def test_fast_decoder_never_accepts_what_the_reference_refuses(
    base: int, field: str, value: Any, layout: str
) -> None:
    raw = json.loads(DEMO[base])
    if field == "extra":
        raw["extra"] = value
    elif field.startswith("postings.0."):
        if raw["postings"]:
            raw["postings"][0][field.rsplit(".", 1)[1]] = value
    else:
        raw[field] = value
    encode = {
        "canonical": dict(sort_keys=True, separators=(",", ":"), ensure_ascii=False),
        "ascii": dict(sort_keys=True, separators=(",", ":"), ensure_ascii=True),
        "spaced": dict(sort_keys=True, ensure_ascii=False),
        "unsorted": dict(separators=(",", ":"), ensure_ascii=False),
    }[layout]
    try:
        leaf = json.dumps(raw, **encode).encode("utf-8")  # type: ignore[arg-type]
    except (ValueError, UnicodeEncodeError):
        return
    _agree(leaf)


@settings(max_examples=300)
@given(base=st.integers(min_value=0, max_value=59), data=st.data())
def test_fast_decoder_agrees_on_byte_edits(base: int, data: st.DataObject) -> None:
    leaf = bytearray(DEMO[base])
    at = data.draw(st.integers(min_value=0, max_value=len(leaf) - 1))
    leaf[at] = data.draw(st.sampled_from(b'0123456789"\\:,{}[]aZ- \x7f\xc3'))
    _agree(bytes(leaf))


def test_fast_decoder_edge_cases() -> None:
    raw = json.loads(DEMO[0])
    cases: list[dict[str, Any]] = []
    for field, value in [
        ("seq", True),
        ("v", True),
        ("prev", base64.b64encode(bytes(32)).decode().replace("A=", "B=")),
        ("body", {"": 1}),
        ("body", {"k" * 65: 1}),
        ("body", {"k" * 64: "v" * 200}),
        ("body", {"n": 2**53}),
        ("body", {"n": 2**53 - 1, "m": -(2**53 - 1)}),
        ("body", {"s": "línea"}),
        ("body", {"s": 'quote " and \\ slash'}),
        ("signatures", [{"device": 1}]),
        ("signatures", [{"device": "ed25519:abc"}]),
    ]:
        changed = dict(raw)
        changed[field] = value
        cases.append(changed)
    for case in cases:
        leaf = json.dumps(case, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        _agree(leaf.encode())


DEMO = demo_leaves(60)


# ---------------------------------------------------------------- replay


def test_replay_state_round_trips_and_resumes() -> None:
    leaves = demo_leaves(120)
    whole = Replay()
    for i, leaf in enumerate(leaves):
        whole.add(i, leaf)
    whole.finish(lambda seqs: {s: leaves[s] for s in seqs})
    assert whole.problems == []

    first = Replay()
    for i, leaf in enumerate(leaves[:70]):
        first.add(i, leaf)
    first.finish(lambda seqs: {s: leaves[s] for s in seqs})
    saved = json.loads(json.dumps(first.state().to_json()))
    second = Replay(state=ReplayState.from_json(saved))
    for i, leaf in enumerate(leaves[70:], start=70):
        second.add(i, leaf)
    second.finish(lambda seqs: {s: leaves[s] for s in seqs})
    assert second.problems == []
    assert second.root() == whole.root()
    assert second.balances == whole.balances


def test_replay_reports_a_shifted_run_once() -> None:
    leaves = demo_leaves(40)
    del leaves[10]
    replay = Replay()
    for i, leaf in enumerate(leaves):
        replay.add(i, leaf)
    replay.finish(lambda seqs: {s: leaves[s] for s in seqs})
    shifted = [p for p in replay.problems if "leaf says" in p.message]
    assert len(shifted) == 1
    assert str(shifted[0]).startswith("seq 10: leaf says seq 11")
    assert "up to seq 38" in shifted[0].message
