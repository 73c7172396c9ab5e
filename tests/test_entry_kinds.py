"""The typed entry kinds (ledger.kinds): every value the services write becomes an entry the
ledger's rules accept and reads back as the same value; a body without a field is refused
naming it; a deposit over the stored-time cap reads back what the writer sent to the pool."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.entry import EntryRequest, canonical_json
from ledger.errors import MalformedEntry
from ledger.kinds import (
    Approval,
    BankPolicy,
    CatalogueEntry,
    Deposit,
    DepositClaims,
    Device,
    Donation,
    Exchange,
    Gift,
    Grant,
    Redemption,
    Refund,
    Release,
    ReportAnchor,
    Reserve,
    Reversal,
    Seal,
    Typed,
    read,
    weighted,
)
from ledger.postings import check_postings, hold_account

BANK = "b1"
opaque = st.text("0123456789abcdef", min_size=16, max_size=16)
member = opaque.map(lambda o: f"{BANK}:member:{o}")
minutes = st.integers(5, 10_000)  # 5 minutes at the lowest weight, 100 ‰, are worth 1
weight = st.integers(100, 5000)
words = st.text("abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=20)
pseudonym = opaque.map(lambda o: f"p:{o}")
digest = st.text("0123456789abcdef", min_size=64, max_size=64)
entry_id = words.map(lambda w: f"x:{w}")


@st.composite
def deposits(draw: st.DrawFn) -> Deposit:
    signed = draw(st.booleans())
    return Deposit(
        id=draw(entry_id),
        volunteer=draw(member),
        bank=BANK,
        record=draw(digest),
        service=draw(words),
        service_version=draw(st.integers(1, 50)),
        minutes=draw(minutes),
        weight=draw(weight),
        policy=draw(st.integers(0, 50)),
        org=draw(words),
        confirmed_by=draw(pseudonym),
        confirmed_as=draw(st.sampled_from(["elder", "family", "staff_for_elder", "code"])),
        verified_by=draw(pseudonym),
        device_key=draw(opaque) if signed else None,
        device_signature=draw(words) if signed else None,
    )


@st.composite
def reversals(draw: st.DrawFn) -> Reversal:
    original = draw(gifts).to_request()
    return Reversal.of(
        original,
        draw(st.integers(0, 10**6)),
        id=draw(entry_id),
        reason=draw(words),
        approved_by=draw(pseudonym),
        requested_by=draw(st.none() | pseudonym),
    )


gifts = st.builds(Gift, entry_id, member, member, minutes, pseudonym).filter(
    lambda g: g.giver != g.receiver
)
typed_values = st.one_of(
    deposits(),
    st.builds(Reserve, entry_id, member, words, words, minutes, weight),
    st.builds(
        Redemption,
        entry_id,
        member.map(hold_account) | member,
        minutes,
        words,
        st.none() | words,
        st.none() | digest,
    ),
    st.builds(Release, entry_id, member, minutes, words, st.none()),
    st.builds(Release, entry_id, member, minutes, st.none(), words),
    st.builds(Refund, entry_id, member, minutes, words, digest),
    st.builds(Exchange, entry_id, member, words, minutes, words, pseudonym),
    gifts,
    st.builds(Donation, entry_id, member, minutes, st.none() | pseudonym),
    st.builds(Grant, entry_id, member, minutes, words, pseudonym),
    reversals(),
    st.builds(
        BankPolicy,
        st.just(BANK),
        st.integers(1, 99),
        pseudonym,
        st.fixed_dictionaries({"stored_cap_minutes": minutes, "timezone": words}),
    ),
    st.builds(
        CatalogueEntry,
        st.just(BANK),
        words,
        st.integers(1, 99),
        words,
        weight,
        st.booleans(),
        st.text(max_size=8),
        st.text(max_size=8),
        pseudonym,
    ),
    st.builds(
        Approval,
        entry_id,
        member,
        st.sampled_from([("volunteer",), ("elder",), ("volunteer", "elder")]),
        words,
        pseudonym,
        st.booleans(),
    ),
    st.builds(Device, entry_id, opaque, words, member, st.sampled_from(["register", "revoke"])),
    st.builds(Seal, st.integers(0, 10**6), words),
    st.builds(
        ReportAnchor, st.just(BANK), st.just("2026-H1"), words, digest, st.integers(1, 10**6)
    ),
)


@given(typed_values)
def test_every_typed_entry_is_accepted_by_the_ledger_and_reads_back_as_itself(
    value: Typed,
) -> None:
    request = value.to_request()
    request.validate()
    if request.kind != "reversal":  # a reversal's postings are checked against its original
        check_postings(request)
    canonical_json(request.content())
    assert read(request) == value
    assert type(value).from_entry(request) == value


@given(deposits(), st.integers(0, 20_000), st.integers(0, 20_000))
def test_a_deposit_past_the_cap_reads_back_the_minutes_the_writer_sent_to_the_pool(
    deposit: Deposit, balance: int, cap: int
) -> None:
    assert deposit.volunteer is not None
    request = deposit.to_request(stored_cap=cap)
    assert request.ceiling is not None
    written = request.ceiling.apply(request, {deposit.volunteer: balance})
    check_postings(written)
    back = Deposit.from_entry(written)
    assert back.to_pool == max(0, deposit.amount - max(0, cap - balance))
    assert back.amount == deposit.amount == weighted(deposit.minutes, deposit.weight)
    kept = deposit.amount - back.to_pool
    assert back.volunteer == (deposit.volunteer if kept else None)
    assert sum(p.minutes for p in written.postings if p.account == deposit.volunteer) == kept


def test_weighted_rounds_half_up_to_whole_minutes() -> None:
    assert weighted(60, 1000) == 60
    assert weighted(45, 1500) == 68  # 67.5 → 68
    assert weighted(1, 499) == 0
    assert weighted(1, 500) == 1
    assert weighted(90, 1600) == 144


# Read as absent: to_pool (written before the field existed, read as 0), a redemption's request
# and record (the demo's one-phase redemptions have neither).
OPTIONAL = frozenset({"to_pool", "request", "record"})
SAMPLES: list[Any] = [
    Deposit(
        "d:1", "b1:member:aa", BANK, "ab" * 32, "meal", 1, 60, 1000, 1, "o", "p:1", "elder", "p:2"
    ),
    Reserve("r:1", "b1:member:aa", "req", "meal", 60, 1000),
    Redemption("m:1", "b1:hold:aa", 60, "meal", "req", "ab" * 32),
    Release("release:reversal:rv1", "b1:member:aa", 60, None, "rv1"),
    Refund("f:1", "b1:member:aa", 60, "req", "ab" * 32),
    Exchange("e:1", "b1:member:aa", "pk1", 30, "order-1", "p:1"),
    Gift("g:1", "b1:member:aa", "b1:member:bb", 30, "p:1"),
    Grant("t:1", "b1:member:aa", 30, "regular_support", "p:1"),
    Approval("a:1", "b1:member:aa", ("elder",), "o", "p:1", True),
    Device("v:1", "k", "pub", "b1:member:aa", "register"),
    Seal(3, "head"),
    ReportAnchor(BANK, "2026-H1", "f", "ab" * 32, 9),
]


@pytest.mark.parametrize("value", SAMPLES, ids=lambda v: type(v).__name__)
def test_a_body_missing_a_field_is_refused_naming_it(value: Any) -> None:
    request = value.to_request()
    for name in request.body:
        if name in OPTIONAL:
            continue
        body = {k: v for k, v in request.body.items() if k != name}
        with pytest.raises(MalformedEntry) as refused:
            type(value).from_entry(dataclasses.replace(request, body=body))
        assert refused.value.field == f"body.{name}", name
    assert type(value).from_entry(request) == value  # the same entry, whole, reads


def test_an_entry_read_as_the_wrong_kind_is_refused_naming_the_kind() -> None:
    gift = Gift("g:1", "b1:member:aa", "b1:member:bb", 30, "p:1").to_request()
    with pytest.raises(MalformedEntry) as refused:
        Donation.from_entry(gift)
    assert refused.value.field == "kind"
    assert Gift.from_entry(gift).minutes == 30


def test_a_donation_whose_postings_do_not_reach_the_pool_is_refused() -> None:
    to_pool = Donation("n:1", "b1:member:aa", 30, "p:1").to_request()
    elsewhere = EntryRequest(
        "donation",
        "n:1",
        (to_pool.postings[0], dataclasses.replace(to_pool.postings[1], account="b1:member:bb")),
        to_pool.body,
    )
    with pytest.raises(MalformedEntry) as refused:
        Donation.from_entry(elsewhere)
    assert refused.value.field == "postings"
    assert Donation.from_entry(to_pool).donor == "b1:member:aa"


@given(deposits())
def test_a_deposits_claims_are_its_fields_as_the_auditor_reads_them(deposit: Deposit) -> None:
    request = deposit.to_request()
    claims = DepositClaims.of(request.body, request.signatures)
    assert (claims.record, claims.minutes, claims.weight, claims.to_pool) == (
        deposit.record,
        deposit.minutes,
        deposit.weight,
        deposit.to_pool,
    )
    assert (claims.confirmed_by, claims.confirmed_as, claims.verified_by) == (
        deposit.confirmed_by,
        deposit.confirmed_as,
        deposit.verified_by,
    )
    assert claims.verifier_signers == (deposit.verified_by,)
    signed = deposit.device_key and deposit.device_signature
    assert claims.device_signatures == (
        ((deposit.device_key, deposit.device_signature),) if signed else ()
    )


def test_claims_keep_what_a_deposit_refuses_as_none_where_it_is_missing_or_mistyped() -> None:
    body = {"record": 7, "minutes": True, "weight": "1000", "confirmed_by": "p:1", "to_pool": 0}
    claims = DepositClaims.of(body, ({"role": "volunteer", "key": "k"},))
    assert (claims.record, claims.minutes, claims.weight) == (None, None, None)
    assert (claims.confirmed_by, claims.confirmed_as, claims.to_pool) == ("p:1", None, 0)
    assert claims.verifier_signers == () and claims.device_signatures == (("k", None),)
    refused = EntryRequest("deposit", "d:1", (), body)
    with pytest.raises(MalformedEntry):
        Deposit.from_entry(refused)
