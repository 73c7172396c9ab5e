"""The auditor keeps a book of holds from the public log alone (``audit.holds``): every hold
redeemed or released once, for the minutes it held, and every hold account equal to its open
holds — offline on a forged bundle the operator signed, and online across resumed runs."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from audit.auditor import Policy, verify_bundle, verify_online
from audit.holds import HoldBook
from ledger.entry import EntryRequest, Posting
from ledger.log import Log
from ledger.postings import hold_account
from tests.helpers import REDEMPTION, member
from tests.test_auditor import deposit, filled, forged_bundle, text_of
from tests.test_witness import log_app, serve

__all__ = ["filled"]  # the auditor tests' log, used here too

ELDER = member(1)
HOLD = hold_account(ELDER)


def reserve(request: str, minutes: int, entry_id: str | None = None) -> EntryRequest:
    return EntryRequest(
        "reserve",
        entry_id or f"reserve:{request}",
        (Posting(ELDER, -minutes), Posting(HOLD, minutes)),
        {"request": request, "service": "meal", "minutes": minutes, "weight": 1000},
    )


def release(request: str, minutes: int, entry_id: str | None = None) -> EntryRequest:
    return EntryRequest(
        "release",
        entry_id or f"release:{request}",
        (Posting(HOLD, -minutes), Posting(ELDER, minutes)),
        {"request": request},
    )


def redemption(request: str, minutes: int) -> EntryRequest:
    return EntryRequest(
        "redemption",
        f"redeem:{request}",
        (Posting(HOLD, -minutes), Posting(REDEMPTION, minutes)),
        {"request": request, "record": "0" * 64, "service": "meal"},
    )


def refund(request: str, minutes: int) -> EntryRequest:
    return EntryRequest(
        "refund",
        f"refund:{request}",
        (Posting(REDEMPTION, -minutes), Posting(ELDER, minutes)),
        {"request": request, "record": "0" * 64},
    )


def reversal(seq: int, postings: tuple[Posting, ...], reversal_id: str) -> EntryRequest:
    return EntryRequest(
        "reversal",
        f"reversal:{reversal_id}",
        postings,
        {"reverses": seq, "reason": "mistake", "requested_by": "p:a", "approved_by": "p:b"},
    )


def test_a_log_that_keeps_its_holds_passes(tmp_path: Path, filled: Log) -> None:
    requests = [
        deposit("d0", ELDER, 300),
        reserve("q1", 30),
        release("q1", 30),  # cancelled
        reserve("q2", 45),
        redemption("q2", 45),  # served
        reserve("q3", 60),
        redemption("q3", 60),
        refund("q3", 60),  # its record rejected: paid back
        reserve("q4", 20),  # still open
        reserve("q5", 15),
        redemption("q5", 15),
        reversal(10, (Posting(HOLD, 15), Posting(REDEMPTION, -15)), "v1"),
        EntryRequest(
            "release",
            "release:reversal:v1",
            (Posting(HOLD, -15), Posting(ELDER, 15)),
            {"reversal": "v1"},
        ),
    ]
    report = verify_bundle(
        forged_bundle(tmp_path / "good", requests, filled.signer), Policy(filled.signer.verifier)
    )
    assert report.ok, text_of(report)


def test_holds_settled_twice_or_wrongly_are_named(tmp_path: Path, filled: Log) -> None:
    requests = [
        deposit("d0", ELDER, 300),
        reserve("q1", 30),
        redemption("q1", 30),
        reserve("q2", 40),
        release("q1", 30, "release:q1-again"),  # q1 was paid: released as well, from q2's hold
        redemption("q2", 25),  # takes less than q2 held
        refund("q9", 10),  # q9 was never redeemed
        reserve("q1", 5, "reserve:q1-again"),  # a second hold for q1
        reserve("q6", 10),
        redemption("q6", 10),
        reversal(9, (Posting(HOLD, 10), Posting(REDEMPTION, -10)), "v2"),  # never released
    ]
    text = text_of(
        verify_bundle(
            forged_bundle(tmp_path / "bad", requests, filled.signer),
            Policy(filled.signer.verifier),
        )
    )
    assert "seq 4: release of request 'q1', which holds nothing" in text
    assert "seq 5: redemption of request 'q2' takes 25 minutes from" in text
    assert "but its reserve held 40" in text
    assert "seq 6: refund of request 'q9', which has no redemption to pay back" in text
    assert "seq 7: second reserve for request 'q1'" in text
    # q2's 40 minutes, q1's second 5 and v2's 10 are what the book expects; the account holds
    # 40 + 5 + 10 − 30 (the wrong release) = 25 → 30 minutes short (a negative "stuck")
    assert f"holds: hold account {HOLD} holds" in text
    assert "signed root" not in text  # the operator signed it all: only the book catches it


def test_open_holds_carry_over_between_online_runs(filled: Log, tmp_path: Path) -> None:
    policy = Policy(filled.signer.verifier)
    state = tmp_path / "state.json"
    filled.append(deposit("d-holds", ELDER, 200))
    filled.append(reserve("q1", 30))
    with serve(log_app(filled)) as url:
        first = verify_online(url, policy, state_path=state)
        assert first.ok, text_of(first)
        filled.append(redemption("q1", 30))  # settles a hold reserved before the saved state
        second = verify_online(url, policy, state_path=state)
        assert second.ok and second.entries == 1, text_of(second)
        filled.append(reserve("q2", 30))
        filled.append(release("q1", 30, "release:q1-after-payment"))  # q1 again: both ways
        third = verify_online(url, policy, state_path=state)
    assert not third.ok and third.entries == 2
    assert "release of request 'q1', which holds nothing" in text_of(third)


def test_an_old_state_without_holds_replays_everything_once(filled: Log, tmp_path: Path) -> None:
    policy = Policy(filled.signer.verifier)
    state = tmp_path / "state.json"
    filled.append(deposit("d-holds", ELDER, 200))
    filled.append(reserve("q1", 30))
    with serve(log_app(filled)) as url:
        assert verify_online(url, policy, state_path=state).ok
        saved = state.read_text().replace('"holds": {', '"unused": {')
        state.write_text(saved)
        filled.append(redemption("q1", 30))
        again = verify_online(url, policy, state_path=state)
    assert again.ok, text_of(again)
    assert again.entries == filled.size()  # not resumed: the book is rebuilt from the start


events = st.lists(
    st.tuples(st.sampled_from(["reserve", "release", "redemption", "refund"]), st.integers(0, 3)),
    max_size=30,
)


@given(events)
def test_the_book_agrees_with_a_simple_model(steps: list[tuple[str, int]]) -> None:
    """Whatever order the entries come in, the book flags exactly the steps a simple state
    machine (not held → held → paid or released; paid → paid back; a request released or paid
    back may be held again) refuses, and at the end expects exactly the minutes still held."""
    book = HoldBook()
    state: dict[str, str] = {}
    for seq, (kind, n) in enumerate(steps):
        request = f"q{n}"
        minutes = -10 if kind in ("release", "redemption") else 10
        problems = book.apply(seq, (kind, request, "" if kind == "refund" else HOLD, minutes))
        now = state.get(request, "none")
        allowed = {
            ("reserve", "none"): "held",
            ("reserve", "released"): "held",
            ("reserve", "paid back"): "held",
            ("release", "held"): "released",
            ("redemption", "held"): "paid",
            ("refund", "paid"): "paid back",
        }.get((kind, now))
        assert (problems == []) == (allowed is not None), (steps[: seq + 1], problems)
        if allowed is not None:
            state[request] = allowed
    held = 10 * sum(1 for s in state.values() if s == "held")
    assert book.finish({HOLD: held}) == []
    assert book.finish({HOLD: held + 1}) != []
