"""The workflow's bodies over HTTP: what the care and ledger routes take and give
(``api.care_routes``, ``api.ledger_routes``), each mapped from the domain's types."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec

from api.schemas import Input
from care.model import (
    GrantReason,
    Policy,
    ReversalReason,
    ServiceRecord,
    ServiceRequest,
    ServiceType,
    Visit,
)
from ledger import AppendResult

Minutes = Annotated[int, msgspec.Meta(ge=1, le=10**9)]


class ServiceTypeIn(Input):
    code: str
    name_zh: str
    name_en: str
    category: str
    weight_permille: int
    active: bool = True


class ServiceTypeOut(msgspec.Struct):
    id: str
    code: str
    name_zh: str
    name_en: str
    category: str
    weight_permille: int
    active: bool
    version: int
    ledger_seq: int | None


def type_out(t: ServiceType) -> ServiceTypeOut:
    return ServiceTypeOut(
        t.id,
        t.code,
        t.name_zh,
        t.name_en,
        str(t.category),
        t.weight_permille,
        t.active,
        t.version,
        t.ledger_seq,
    )


class PolicyIn(Input):
    redemption_age: int | None = None
    stored_cap_minutes: int | None = None
    daily_cap_minutes: int | None = None
    gifts_allowed: bool | None = None
    timezone: str | None = None
    record_late_days: int | None = None
    points_unit: str | None = None
    points_per_hour: int | None = None
    star_levels: bool | None = None
    star_hours: str | None = None
    visit_services: str | None = None
    coverage_flags: str | None = None


class PolicyOut(msgspec.Struct):
    version: int
    redemption_age: int
    stored_cap_minutes: int
    daily_cap_minutes: int
    gifts_allowed: bool
    timezone: str
    record_late_days: int
    points_unit: str
    points_per_hour: int
    star_levels: bool
    star_hours: str
    visit_services: str
    coverage_flags: str
    ledger_seq: int | None


def policy_out(p: Policy) -> PolicyOut:
    return PolicyOut(
        p.version,
        p.redemption_age,
        p.stored_cap_minutes,
        p.daily_cap_minutes,
        p.gifts_allowed,
        p.timezone,
        p.record_late_days,
        p.points_unit,
        p.points_per_hour,
        p.star_levels,
        p.star_hours,
        p.visit_services,
        p.coverage_flags,
        p.ledger_seq,
    )


class RequestIn(Input):
    elder_id: str
    service_code: str
    window_start: datetime
    window_end: datetime
    minutes: Minutes
    notes: str | None = None
    redeem: bool = False


class RequestOut(msgspec.Struct):
    id: str
    elder_id: str
    org_id: str
    service_type_id: str
    window_start: datetime
    window_end: datetime
    minutes: int
    notes: str | None
    redeem: bool
    status: str
    requested_by: str
    acting_for: bool
    volunteer_id: str | None
    assigned_by: str | None
    hold_minutes: int
    cancelled_by: str | None
    cancel_reason: str | None
    created_at: datetime
    # False: open, paid with the elder's stored time, holding none yet, and her available
    # minutes no longer cover it; nobody can take it until they do (or it is cancelled).
    payable: bool = True


def request_out(r: ServiceRequest, payable: bool = True) -> RequestOut:
    return RequestOut(
        r.id,
        r.elder_id,
        r.org_id,
        r.service_type_id,
        r.window_start,
        r.window_end,
        r.minutes,
        r.notes,
        r.redeem,
        str(r.status),
        r.requested_by,
        r.acting_for,
        r.volunteer_id,
        r.assigned_by,
        r.hold_minutes,
        r.cancelled_by,
        r.cancel_reason,
        r.created_at,
        payable,
    )


class VisitOut(msgspec.Struct):
    """The visit page's view, for the volunteer's phone: whom, where, when and what."""

    request_id: str
    status: str
    elder_id: str
    elder_name: str | None
    area: str | None
    address: str | None
    window_start: datetime
    window_end: datetime
    minutes: int
    notes: str | None
    service_code: str
    service_name_zh: str
    service_name_en: str
    timezone: str


def visit_out(v: Visit, timezone: str) -> VisitOut:
    r = v.request
    return VisitOut(
        r.id,
        str(r.status),
        r.elder_id,
        v.elder_name,
        v.area,
        v.address,
        r.window_start,
        r.window_end,
        r.minutes,
        r.notes,
        v.service.code,
        v.service.name_zh,
        v.service.name_en,
        timezone,
    )


class AssignIn(Input):
    volunteer_id: str


class ReasonIn(Input):
    reason: str


class RecordIn(Input):
    elder_id: str
    service_code: str
    check_in: datetime
    check_out: datetime
    minutes: Minutes | None = None
    request_id: str | None = None
    device_key_id: str | None = None
    signature: str | None = None
    confirmation_code: str | None = None


class DraftIn(Input):
    elder_id: str
    service_code: str
    check_in: datetime
    check_out: datetime
    minutes: Minutes | None = None
    request_id: str | None = None


class DraftOut(msgspec.Struct):
    fields: dict[str, Any]
    digest: str  # hex SHA-256 of the fields' RFC 8785 bytes: the record's digest
    to_sign: str  # base64 of the bytes a phone signs (``ledger.entry.record_signing_message``)


class ConfirmIn(Input):
    confirmation_code: str | None = None


class RecordOut(msgspec.Struct):
    id: str
    request_id: str | None
    volunteer_id: str
    elder_id: str
    org_id: str
    service_type_id: str
    check_in: datetime
    check_out: datetime
    minutes: int
    digest: str
    signed_by_device: str | None
    status: str
    confirmed_by: str | None
    confirmed_as: str | None
    confirmed_at: datetime | None
    verified_by: str | None
    verified_at: datetime | None
    rejected_reason: str | None
    deposit_seq: int | None
    deposit_minutes: int | None
    created_at: datetime


def record_out(r: ServiceRecord) -> RecordOut:
    return RecordOut(
        r.id,
        r.request_id,
        r.volunteer_id,
        r.elder_id,
        r.org_id,
        r.service_type_id,
        r.check_in,
        r.check_out,
        r.minutes,
        r.digest,
        r.device_key_id,
        str(r.status),
        r.confirmed_by,
        str(r.confirmed_as) if r.confirmed_as else None,
        r.confirmed_at,
        r.verified_by,
        r.verified_at,
        r.rejected_reason,
        r.deposit_seq,
        r.deposit_minutes,
        r.created_at,
    )


class CodeOut(msgspec.Struct):
    code: str
    expires_at: datetime


class GiftIn(Input):
    from_member_id: str
    to_member_id: str
    minutes: Minutes


class DonationIn(Input):
    from_member_id: str
    minutes: Minutes


class GrantIn(Input):
    elder_id: str
    minutes: Minutes
    reason: str  # free text, kept off the public log (sealed)
    reason_code: GrantReason = GrantReason.OTHER  # what the log says


class EntryOut(msgspec.Struct):
    seq: int
    id: str
    time: str
    tree_size: int
    replayed: bool


def entry_out(r: AppendResult) -> EntryOut:
    return EntryOut(r.seq, r.id, r.time, r.tree_size, r.replayed)


class ReversalIn(Input):
    seq: Annotated[int, msgspec.Meta(ge=0, le=2**53 - 1)]
    reason: str  # free text, for the bank's administrators only
    reason_code: ReversalReason = ReversalReason.OTHER  # what the reversal entry says


class ReversalOut(msgspec.Struct):
    id: str
    entry_seq: int
    reason: str
    reason_code: str
    status: str
    requested_by: str
    requested_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    reversal_seq: int | None


def reversal_out(row: dict[str, Any]) -> ReversalOut:
    return ReversalOut(**{f: row[f] for f in ReversalOut.__struct_fields__})


class BalanceOut(msgspec.Struct):
    member_id: str
    available_minutes: int
    reserved_minutes: int


class HistoryOut(msgspec.Struct):
    seq: int
    time: str
    kind: str
    minutes: int
    counterpart: str | None
    service: str | None
    record: str | None
    receipt: str
