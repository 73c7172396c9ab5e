"""The kinds of a transfer between two banks' logs (ledger.kinds.interbank) and their posting
rules: each value reads back as itself and is accepted; a posting outside the rules is refused
naming the posting, next to the same entry with the right accounts accepted; on a real log
(both databases) ``due_to`` never goes below zero and only a void takes minutes out of it,
while ``due_from`` runs negative; nothing can move these minutes anywhere else."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.entry import ACCOUNT, EntryRequest, Posting, canonical_json
from ledger.errors import InsufficientBalance, MalformedEntry, PostingRuleViolation
from ledger.kinds import (
    TransferIn,
    TransferOut,
    TransferRefusal,
    TransferSettled,
    TransferVoid,
    Typed,
    read,
)
from ledger.log import Log
from ledger.postings import (
    KIND_RULES,
    check_postings,
    due_from_account,
    due_to_account,
    system_account,
)
from tests.helpers import BANK, deposit, member

hexes = st.text("0123456789abcdef", min_size=32, max_size=32)
leaf = st.text("0123456789abcdef", min_size=64, max_size=64)
account = st.text("0123456789abcdef", min_size=16, max_size=16).map(lambda o: f"h:member:{o}")
peer = st.sampled_from(["qinhuai", "gulou", "r2"])
minutes = st.integers(1, 100_000)
index = st.integers(0, 10**9)
time = st.just("2026-12-05T21:00:00.000000Z")

outs = st.builds(
    TransferOut, hexes, account, peer, minutes, st.just("r.test/log"), account, time, st.just("p")
)
ins = st.builds(TransferIn, hexes, account, peer, minutes, st.just("h.test/log"), index, leaf)
settled = st.builds(TransferSettled, hexes, index, st.just("r.test/log"), index, leaf)
voids = st.builds(
    TransferVoid, hexes, account, peer, minutes, index, st.sampled_from(["refused", "expired"])
)

refusals = st.builds(
    TransferRefusal,
    hexes,
    peer,
    st.just("h.test/log"),
    index,
    leaf,
    st.sampled_from(["unknown-member", "wrong-member", "not-for-us", "expired", "not-related"]),
)


@given(st.one_of(outs, ins, settled, voids, refusals))
def test_every_transfer_entry_is_accepted_and_reads_back_as_itself(value: Typed) -> None:
    request = value.to_request()
    request.validate()
    check_postings(request)
    canonical_json(request.content())
    assert read(request) == value


@given(outs, index)
def test_a_void_gives_back_exactly_what_the_transfer_held(out: TransferOut, at: int) -> None:
    void = TransferVoid.of(out, at, "refused").to_request()
    held = {p.account: p.minutes for p in out.to_request().postings}
    assert {p.account: -p.minutes for p in void.postings} == held


def test_the_new_accounts_match_the_account_pattern() -> None:
    assert ACCOUNT.match(due_to_account("gulou", "qinhuai"))
    assert ACCOUNT.match(due_from_account("qinhuai", "gulou"))
    assert not ACCOUNT.match("gulou:due_to")  # a peer is always named
    assert not ACCOUNT.match("gulou:due_to:Qin huai")


OUT = TransferOut(
    "0" * 32, member(1), "r", 30, "r.test/log", "r:member:x", "2026-12-05T21:00:00.000000Z", "p"
)
DUE_TO = due_to_account(BANK, "r")
DUE_FROM = due_from_account(BANK, "h")


@pytest.mark.parametrize(
    ("kind", "wrong", "right"),
    [
        # transfer_out credits only due_to: not due_from, not the pool
        ("transfer_out", [(member(1), -5), (DUE_FROM, 5)], [(member(1), -5), (DUE_TO, 5)]),
        ("transfer_out", [(member(1), -5), (f"{BANK}:pool", 5)], [(member(1), -5), (DUE_TO, 5)]),
        # transfer_in debits only due_from (never issuance or due_to)
        ("transfer_in", [(DUE_TO, -5), (member(2), 5)], [(DUE_FROM, -5), (member(2), 5)]),
        (
            "transfer_in",
            [(f"{BANK}:issuance", -5), (member(2), 5)],
            [(DUE_FROM, -5), (member(2), 5)],
        ),
        # transfer_void pays due_to back to a member only
        (
            "transfer_void",
            [(DUE_TO, -5), (f"{BANK}:redemption", 5)],
            [(DUE_TO, -5), (member(1), 5)],
        ),
        # one member and one peer account: no splitting a transfer over two members
        (
            "transfer_out",
            [(member(1), -6), (DUE_TO, 3), (due_to_account(BANK, "r2"), 3)],
            [(member(1), -6), (DUE_TO, 6)],
        ),
    ],
)
def test_a_transfer_outside_its_rules_is_refused_next_to_the_right_one(
    kind: str, wrong: list[tuple[str, int]], right: list[tuple[str, int]]
) -> None:
    def entry(postings: list[tuple[str, int]]) -> EntryRequest:
        return EntryRequest(kind, "x", tuple(Posting(a, m) for a, m in postings))

    check_postings(entry(right))
    with pytest.raises(PostingRuleViolation) as refused:
        check_postings(entry(wrong))
    assert (refused.value.field or "").startswith("postings")


def test_no_other_kind_touches_the_peer_accounts() -> None:
    """Only the transfer kinds move minutes into or out of due_to and due_from (a reversal
    cannot pay a peer's minutes out; a settlement moves nothing)."""
    for kind, rule in KIND_RULES.items():
        touches = (rule.debit | rule.credit) & {"due_to", "due_from"}
        if kind in ("transfer_out", "transfer_in", "transfer_void"):
            assert touches
        else:
            assert not touches, kind
    assert KIND_RULES["transfer_out"].debit == {"member"}
    assert KIND_RULES["transfer_void"].debit == {"due_to"}


def test_a_settled_transfer_moves_nothing() -> None:
    moving = dataclasses.replace(
        TransferSettled("0" * 32, 3, "r.test/log", 7, "a" * 64).to_request(),
        postings=(Posting(DUE_TO, -5), Posting(member(1), 5)),
    )
    with pytest.raises(PostingRuleViolation):
        check_postings(moving)


def test_a_transfer_body_without_its_quote_is_refused_naming_the_field() -> None:
    request = TransferIn("0" * 32, member(2), "h", 5, "h.test/log", 4, "b" * 64).to_request()
    broken = dataclasses.replace(request, body={**request.body, "from_leaf_hash": "nothex"})
    with pytest.raises(MalformedEntry) as refused:
        TransferIn.from_entry(broken)
    assert refused.value.field == "body.from_leaf_hash"
    TransferIn.from_entry(request)
    renamed = dataclasses.replace(OUT.to_request(), id="transfer-out:" + "1" * 32)
    with pytest.raises(MalformedEntry) as wrong_id:
        TransferOut.from_entry(renamed)
    assert wrong_id.value.field == "id"


def test_on_a_log_due_to_holds_until_voided_and_due_from_runs_negative(log: Log) -> None:
    log.append(deposit("d1", member(1), 60))
    log.append(OUT.to_request())
    assert log.balances([member(1), DUE_TO]) == {member(1): 30, DUE_TO: 30}
    # a void of more than the hold is refused: due_to never goes below zero
    too_much = dataclasses.replace(OUT, transfer="1" * 32, minutes=31)
    with pytest.raises(InsufficientBalance):
        log.append(TransferVoid.of(too_much, 1, "refused").to_request())
    void = TransferVoid.of(OUT, 1, "refused")
    log.append(void.to_request())
    assert log.append(void.to_request()).replayed  # a retried void credits once
    assert log.balances([member(1), DUE_TO]) == {member(1): 60, DUE_TO: 0}
    received = TransferIn("2" * 32, member(2), "h", 45, "h.test/log", 9, "c" * 64)
    log.append(received.to_request())
    assert log.append(received.to_request()).replayed
    assert log.balances([member(2), DUE_FROM]) == {member(2): 45, DUE_FROM: -45}
    assert log.balance(system_account(BANK, "issuance")) == -60
    assert log.verify().ok
