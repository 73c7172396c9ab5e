"""The workflow's rules on the model, without a database or a ledger: one rule per test, each
refusal next to the same change allowed for the one who may make it."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from accounts.errors import Forbidden
from care.errors import InsufficientBalance, SelfVerification, WrongState
from care.model import (
    ConfirmedAs,
    RecordStatus,
    RequestStatus,
    ServiceRecord,
    ServiceRequest,
    Shortfall,
)

NOON = datetime(2026, 12, 5, 12, tzinfo=UTC)

REQUEST = ServiceRequest(
    id="q1",
    bank_id="b1",
    elder_id="elder",
    org_id="org",
    service_type_id="meal",
    window_start=NOON,
    window_end=NOON,
    minutes=60,
    notes=None,
    redeem=True,
    status=RequestStatus.ASSIGNED,
    requested_by="elder-user",
    acting_for=False,
    volunteer_id="vol",
    assigned_by="vol-user",
    hold_minutes=60,
    cancelled_by=None,
    cancel_reason=None,
    created_at=NOON,
)
RECORD = ServiceRecord(
    id="r1",
    bank_id="b1",
    request_id="q1",
    volunteer_id="vol",
    elder_id="elder",
    org_id="org",
    service_type_id="meal",
    check_in=NOON,
    check_out=NOON,
    minutes=60,
    digest="ab" * 32,
    device_key_id=None,
    device_signature=None,
    status=RecordStatus.LOGGED,
    confirmed_by=None,
    confirmed_as=None,
    confirmed_at=None,
    verified_by=None,
    verified_at=None,
    rejected_reason=None,
    deposit_seq=None,
    deposit_minutes=None,
    created_by="vol-user",
    created_at=NOON,
)


def test_a_volunteer_gives_a_request_back_but_does_not_cancel_it() -> None:
    with pytest.raises(Forbidden, match="withdraw"):
        REQUEST.cancelled("volunteer", "vol-user", "busy", has_record=False)
    back = REQUEST.withdrawn("volunteer", has_record=False)
    assert (back.status, back.volunteer_id, back.hold_minutes) == (RequestStatus.OPEN, None, 60)


@pytest.mark.parametrize("role", ["elder", "staff", "admin"])
def test_the_elders_side_or_staff_cancel_a_live_request(role: str) -> None:
    cancelled = REQUEST.cancelled(role, "u", "not needed", has_record=False)
    assert (cancelled.status, cancelled.cancelled_by, cancelled.cancel_reason) == (
        RequestStatus.CANCELLED,
        "u",
        "not needed",
    )
    with pytest.raises(Forbidden):
        REQUEST.cancelled("candidate", "u", "not needed", has_record=False)


def test_a_request_with_a_logged_record_is_cancelled_only_after_the_record_is_rejected() -> None:
    with pytest.raises(WrongState, match="reject it first"):
        REQUEST.cancelled("elder", "u", "x", has_record=True)
    with pytest.raises(WrongState, match="reject it first"):
        REQUEST.withdrawn("volunteer", has_record=True)
    assert REQUEST.cancelled("elder", "u", "x", has_record=False).status is RequestStatus.CANCELLED


@pytest.mark.parametrize("status", [RequestStatus.COMPLETED, RequestStatus.CANCELLED])
def test_a_finished_request_is_neither_cancelled_nor_given_back(status: RequestStatus) -> None:
    finished = dataclasses.replace(REQUEST, status=status)
    with pytest.raises(WrongState):
        finished.cancelled("elder", "u", "x", has_record=False)
    with pytest.raises(WrongState):
        finished.withdrawn("staff", has_record=False)
    assert REQUEST.withdrawn("staff", has_record=False).status is RequestStatus.OPEN


def test_a_request_completes_from_assigned_only_and_is_paid_back_from_completed_only() -> None:
    done = REQUEST.completed()
    assert done.status is RequestStatus.COMPLETED
    with pytest.raises(WrongState, match="cannot be confirmed"):
        dataclasses.replace(REQUEST, status=RequestStatus.CANCELLED).completed()
    back = done.paid_back("staff-user")
    assert (back.status, back.cancel_reason) == (RequestStatus.CANCELLED, "service record rejected")
    with pytest.raises(WrongState):
        REQUEST.paid_back("staff-user")


@pytest.mark.parametrize(
    ("role", "as_"),
    [
        ("elder", ConfirmedAs.ELDER),
        ("family", ConfirmedAs.FAMILY),
        ("staff", ConfirmedAs.STAFF_FOR_ELDER),
        ("admin", ConfirmedAs.STAFF_FOR_ELDER),
    ],
)
def test_the_served_side_confirms_and_the_record_says_how(role: str, as_: ConfirmedAs) -> None:
    assert RECORD.confirming_as(role, "someone") is as_
    confirmed = RECORD.confirmed("u", as_, NOON)
    assert (confirmed.status, confirmed.confirmed_as, confirmed.confirmed_by) == (
        RecordStatus.CONFIRMED,
        as_,
        "u",
    )


def test_the_volunteer_never_confirms_their_own_record() -> None:
    with pytest.raises(SelfVerification):
        RECORD.confirming_as("volunteer", "vol")
    with pytest.raises(SelfVerification):  # as staff of the organisation, too
        RECORD.confirming_as("staff", "vol")
    with pytest.raises(Forbidden):
        RECORD.confirming_as("candidate", "other")
    assert RECORD.confirming_as("staff", "other") is ConfirmedAs.STAFF_FOR_ELDER


def test_a_record_is_confirmed_once() -> None:
    confirmed = RECORD.confirmed("u", ConfirmedAs.ELDER, NOON)
    with pytest.raises(WrongState):
        confirmed.confirmed("u", ConfirmedAs.ELDER, NOON)
    with pytest.raises(WrongState):
        confirmed.confirming_as("elder", "someone")


def test_whoever_confirmed_for_the_elder_does_not_verify() -> None:
    confirmed = RECORD.confirmed("staff-a", ConfirmedAs.STAFF_FOR_ELDER, NOON)
    with pytest.raises(SelfVerification, match="confirmed the service"):
        confirmed.verified("staff-a", NOON)
    verified = confirmed.verified("staff-b", NOON)
    assert (verified.status, verified.verified_by) == (RecordStatus.VERIFIED, "staff-b")


@pytest.mark.parametrize(
    ("status", "says"),
    [
        (RecordStatus.LOGGED, "confirmed by the served side first"),
        (RecordStatus.VERIFIED, "already verified"),
        (RecordStatus.REJECTED, "rejected"),
    ],
)
def test_only_a_confirmed_record_is_verified(status: RecordStatus, says: str) -> None:
    with pytest.raises(WrongState, match=says):
        dataclasses.replace(RECORD, status=status).verified("staff-b", NOON)
    assert dataclasses.replace(RECORD, status=RecordStatus.CONFIRMED).verified("staff-b", NOON)


def test_only_staff_of_the_records_organisation_and_never_its_volunteer_verify() -> None:
    with pytest.raises(SelfVerification):
        RECORD.check_verifier("vol", {"org"})
    with pytest.raises(Forbidden):
        RECORD.check_verifier("staff-member", {"other-org"})
    RECORD.check_verifier("staff-member", {"org"})


def test_staff_reject_a_logged_or_confirmed_record_but_not_a_verified_one() -> None:
    for status in (RecordStatus.LOGGED, RecordStatus.CONFIRMED):
        rejected = dataclasses.replace(RECORD, status=status).rejected(
            "staff", "m", "u", "did not happen", NOON
        )
        assert (rejected.status, rejected.rejected_reason) == (
            RecordStatus.REJECTED,
            "did not happen",
        )
    with pytest.raises(WrongState):
        dataclasses.replace(RECORD, status=RecordStatus.VERIFIED).rejected(
            "staff", "m", "u", "x", NOON
        )
    with pytest.raises(SelfVerification):
        RECORD.rejected("staff", "vol", "u", "x", NOON)
    with pytest.raises(Forbidden):
        RECORD.rejected("elder", "m", "u", "x", NOON)


def test_a_request_paid_with_stored_time_needs_her_minutes_until_it_holds_them() -> None:
    """Open and holding nothing: her available minutes must cover the weighted price (45
    minutes of nursing at 1.5× need 68); once held (assigned, or given back after), or not
    paid with stored time, her balance no longer stands in the way."""
    asked = dataclasses.replace(
        REQUEST, status=RequestStatus.OPEN, volunteer_id=None, hold_minutes=0, minutes=45
    )
    assert asked.unheld and asked.price(1500) == 68
    assert asked.shortfall(67, 1500) == Shortfall(67, 68)
    with pytest.raises(InsufficientBalance) as refused:
        asked.require_payable(67, 1500)
    assert refused.value.field == "redeem"
    assert str(refused.value) == "the elder has 67 minutes of stored time; this service needs 68"
    asked.require_payable(68, 1500)
    assert asked.shortfall(68, 1500) is None
    given_back = dataclasses.replace(asked, hold_minutes=68)
    assert not given_back.unheld and given_back.shortfall(0, 1500) is None
    assert dataclasses.replace(REQUEST, minutes=45).shortfall(0, 1500) is None  # assigned
    assert dataclasses.replace(asked, redeem=False).shortfall(0, 1500) is None
    cancelled = dataclasses.replace(asked, status=RequestStatus.CANCELLED)
    assert cancelled.shortfall(0, 1500) is None
