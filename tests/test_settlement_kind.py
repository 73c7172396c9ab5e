"""The ``settlement`` kind (ledger.kinds.settlement): each value reads back as itself and is
accepted with no postings, refused with any; both banks' signatures hold over the document's
exact bytes and fail when one figure changes; a malformed document is refused naming the field.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.entry import Posting, canonical_json
from ledger.errors import MalformedEntry, PostingRuleViolation
from ledger.kinds import Settlement, read
from ledger.kinds.settlement import (
    SIGNING_PREFIX,
    BankSignature,
    CutOff,
    SettlementDocument,
    month_end,
)
from ledger.note import Signer
from ledger.postings import check_postings

H, R = "gulou.timebank.test/log", "qinhuai.timebank.test/log"
H_KEY, R_KEY = Signer.generate(H + "/peers"), Signer.generate(R + "/peers")
roots = st.text("0123456789abcdef", min_size=64, max_size=64)
months = st.builds(lambda y, m: f"{y:04d}-{m:02d}", st.integers(2000, 2999), st.integers(1, 12))
sizes, minutes = st.integers(0, 10**9), st.integers(0, 10**9)


def _settlement(month: str, h: CutOff, r: CutOff, peer: str) -> Settlement:
    document = SettlementDocument.of(month, h, r)
    signatures = (
        BankSignature.make(H, document, H_KEY),
        BankSignature.make(R, document, R_KEY),
    )
    return Settlement(peer, document, signatures)


settlements = st.builds(
    _settlement,
    months,
    st.builds(CutOff, st.just(H), sizes, roots, minutes),
    st.builds(CutOff, st.just(R), sizes, roots, minutes),
    st.sampled_from([H, R]),
)


@given(settlements)
def test_every_settlement_is_accepted_and_reads_back_as_itself(value: Settlement) -> None:
    request = value.to_request()
    request.validate()
    check_postings(request)
    canonical_json(request.content())
    assert read(request) == value
    assert request.id == f"settlement:{value.peer_origin}:{value.document.month}"
    first, second = value.document.banks
    assert value.document.net_minutes == first.sent - second.sent


def test_the_signatures_cover_the_exact_document_and_nothing_else() -> None:
    value = _settlement("2026-11", CutOff(H, 7, "a" * 64, 65), CutOff(R, 5, "b" * 64, 10), R)
    document = value.document
    assert document.signed_bytes() == SIGNING_PREFIX + canonical_json(document.to_json())
    assert document.signed_bytes().startswith(b'timebank-settlement/v1\n{"banks":[{"cutoff_root"')
    h_sig, r_sig = value.signatures
    assert h_sig.holds(document, H_KEY.verifier) and r_sig.holds(document, R_KEY.verifier)
    assert not h_sig.holds(document, R_KEY.verifier)  # another bank's key
    changed = dataclasses.replace(document, net_minutes=document.net_minutes + 1)
    assert not h_sig.holds(changed, H_KEY.verifier)


def test_a_settlement_moves_nothing() -> None:
    value = _settlement("2026-11", CutOff(H, 7, "a" * 64, 65), CutOff(R, 5, "b" * 64, 10), R)
    moving = dataclasses.replace(
        value.to_request(),
        postings=(Posting("gulou:due_to:qinhuai", -55), Posting("gulou:member:ab", 55)),
    )
    with pytest.raises(PostingRuleViolation):
        check_postings(moving)
    check_postings(value.to_request())


def test_a_malformed_settlement_is_refused_naming_the_field() -> None:
    value = _settlement("2026-11", CutOff(H, 7, "a" * 64, 65), CutOff(R, 5, "b" * 64, 10), R)
    request = value.to_request()
    document = dict(request.body["document"])
    swapped = {**document, "banks": list(reversed(document["banks"]))}
    for body, field in (
        ({**request.body, "document": swapped}, "document"),
        ({**request.body, "signatures": request.body["signatures"][:1]}, "body.signatures"),
        ({**request.body, "document": {**document, "month": "2026-13"}}, "month"),
    ):
        with pytest.raises(MalformedEntry) as refused:
            Settlement.from_entry(dataclasses.replace(request, body=body))
        assert refused.value.field == field
    with pytest.raises(MalformedEntry) as refused:
        Settlement.from_entry(dataclasses.replace(request, id="settlement:elsewhere:2026-11"))
    assert refused.value.field == "id"
    assert Settlement.from_entry(request) == value


def test_a_month_ends_at_the_first_instant_of_the_next() -> None:
    assert month_end("2026-11") == "2026-12-01T00:00:00.000000Z"
    assert month_end("2026-12") == "2027-01-01T00:00:00.000000Z"
