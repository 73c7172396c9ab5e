"""Catalogue, policy, requests and service records: immutable records, no framework code.

A request's and a record's state changes are rules, written here as methods that return the
changed value or raise the care error saying which rule refused (``WrongState``,
``SelfVerification``, ``Forbidden``). The use cases in ``care/`` call them, then store the
change with a compare-and-set on the old status (``care.repo.save_request`` / ``save_record``),
so a change that raced another one is refused instead of overwriting it. ``role`` is how the
caller relates to the request or record (``care.base``: ``elder`` for the elder's side,
``family``, ``volunteer``, ``staff``, ``admin``, ``candidate``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from itertools import pairwise

from accounts.errors import Forbidden, Words
from care.errors import InsufficientBalance, SelfVerification, WrongState
from ledger.kinds import weighted


class Category(enum.StrEnum):
    MEALS = "meals"  # 助餐
    CLEANING = "cleaning"  # 助洁
    ESCORT = "escort"  # 助行
    BATHING = "bathing"  # 助浴
    MEDICAL_ESCORT = "medical_escort"  # 助医
    REHABILITATION = "rehabilitation"  # 康复
    NURSING = "nursing"  # 护理
    COMPANY = "company"  # 探访关爱
    ERRANDS = "errands"  # 代购代办
    EMERGENCY = "emergency"  # 紧急救援


@dataclass(frozen=True)
class Policy:
    """Per-bank rules. Minutes everywhere; weights in per-mille."""

    version: int = 0
    redemption_age: int = 60
    stored_cap_minutes: int = 1500 * 60
    daily_cap_minutes: int = 12 * 60
    gifts_allowed: bool = True
    timezone: str = "Asia/Shanghai"
    record_late_days: int = 7  # a record is logged at most this many days after check-out
    points_unit: str = "hours"  # how verified service is shown as points: POINTS_UNITS
    points_per_hour: int = 10  # points for one verified hour, when points_unit is "points"
    star_levels: bool = False  # show star levels (一星 … 五星) to volunteers and partners
    star_hours: str = "100,300,600,1000,1500"  # cumulative verified hours for 一星 … 五星
    # Visit coverage (reports.coverage): the services that count as a visit and the priority
    # flags that make an elder one to visit, comma-separated codes; empty means all of them.
    visit_services: str = ""
    coverage_flags: str = ""
    ledger_seq: int | None = None

    def values(self) -> dict[str, int | bool | str]:
        return {
            "redemption_age": self.redemption_age,
            "stored_cap_minutes": self.stored_cap_minutes,
            "daily_cap_minutes": self.daily_cap_minutes,
            "gifts_allowed": self.gifts_allowed,
            "timezone": self.timezone,
            "record_late_days": self.record_late_days,
            "points_unit": self.points_unit,
            "points_per_hour": self.points_per_hour,
            "star_levels": self.star_levels,
            "star_hours": self.star_hours,
            "visit_services": self.visit_services,
            "coverage_flags": self.coverage_flags,
        }

    @property
    def star_thresholds(self) -> tuple[int, ...]:
        return star_thresholds(self.star_hours)

    @property
    def visit_service_codes(self) -> frozenset[str]:
        """The service codes that count as a visit; empty: every service."""
        return codes_of(self.visit_services)

    @property
    def coverage_flag_names(self) -> frozenset[str]:
        """The priority flags that make an elder one to visit; empty: any flag."""
        return codes_of(self.coverage_flags)


def codes_of(text: str) -> frozenset[str]:
    return frozenset(part.strip() for part in text.split(",") if part.strip())


POINTS_UNITS = ("minutes", "hours", "points")
STARS = 5


def star_thresholds(text: str) -> tuple[int, ...]:
    """``"100,300,600,1000,1500"`` → the hours of each star, five rising whole numbers."""
    try:
        hours = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError("star_hours is five whole numbers of hours, comma-separated") from None
    if len(hours) != STARS or hours[0] <= 0 or any(a >= b for a, b in pairwise(hours)):
        raise ValueError("star_hours is five rising numbers of hours, the first above 0")
    return hours


@dataclass(frozen=True)
class ServiceType:
    id: str
    bank_id: str
    code: str
    name_zh: str
    name_en: str
    category: Category
    weight_permille: int
    active: bool
    version: int
    ledger_seq: int | None


class RequestStatus(enum.StrEnum):
    OPEN = "open"
    ASSIGNED = "assigned"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class RecordStatus(enum.StrEnum):
    LOGGED = "logged"  # by the volunteer, waiting for the served side
    CONFIRMED = "confirmed"  # by the elder, their family or staff acting for them
    VERIFIED = "verified"  # by the organisation: deposited
    REJECTED = "rejected"


class ConfirmedAs(enum.StrEnum):
    ELDER = "elder"
    FAMILY = "family"
    STAFF_FOR_ELDER = "staff_for_elder"
    CODE = "code"


# How the served side's confirmation is written, by the confirming caller's role.
CONFIRMING_ROLES: Mapping[str, ConfirmedAs] = {
    "elder": ConfirmedAs.ELDER,
    "family": ConfirmedAs.FAMILY,
    "staff": ConfirmedAs.STAFF_FOR_ELDER,
    "admin": ConfirmedAs.STAFF_FOR_ELDER,
}

REVERSAL_STATUSES = ("pending", "approved", "rejected")
# A request's cancel reason when staff reject the record of its service (pages say it in words).
RECORD_REJECTED = "service record rejected"

_HAS_RECORD = (
    "a service record was logged for this request; staff reject it first",
    "该需求已有服务记录，须先由工作人员驳回记录",
)


class GrantReason(enum.StrEnum):
    """Why pool minutes were granted, as the public log says it: a code that tells nothing of
    the elder (the free-text reason is kept off the log, sealed)."""

    REGULAR_SUPPORT = "regular_support"  # 定期补贴
    EMERGENCY_SUPPORT = "emergency_support"  # 紧急援助
    FESTIVAL_CARE = "festival_care"  # 节日慰问
    BANK_DECISION = "bank_decision"  # 银行决定
    OTHER = "other"  # 其他


class ReversalReason(enum.StrEnum):
    """Why an entry was reversed, as the public log says it (the free text stays with the
    reversal request, readable by the bank's administrators only)."""

    DUPLICATE = "duplicate"  # 重复记录
    WRONG_MINUTES = "wrong_minutes"  # 时长有误
    WRONG_MEMBER = "wrong_member"  # 记错成员
    NOT_SERVED = "not_served"  # 服务未发生
    MISTAKE = "mistake"  # 操作失误
    OTHER = "other"  # 其他


@dataclass(frozen=True)
class Shortfall:
    """Why nobody can take a request paid with stored time: she has ``have`` minutes of it
    available (held minutes excluded), the service needs ``need``."""

    have: int
    need: int


@dataclass(frozen=True)
class ServiceRequest:
    id: str
    bank_id: str
    elder_id: str
    org_id: str
    service_type_id: str
    window_start: datetime
    window_end: datetime
    minutes: int
    notes: str | None
    redeem: bool
    status: RequestStatus
    requested_by: str
    acting_for: bool
    volunteer_id: str | None
    assigned_by: str | None
    hold_minutes: int
    cancelled_by: str | None
    cancel_reason: str | None
    created_at: datetime

    def shows_the_home_to(self, role: str) -> bool:
        """Whether a caller who relates to the request as ``role`` (``care.base``'s
        ``_visible_request``) is told whom and where: the volunteer it is assigned to, while it
        is assigned (a logged record waiting for the elder included), gets the elder's masked
        name and, on the visit, her full address; no one else, and not that volunteer once it
        is completed, cancelled or given back."""
        return role == "volunteer" and self.status is RequestStatus.ASSIGNED

    def price(self, weight_permille: int) -> int:
        """The stored minutes this service takes from her, at its type's weight: what its
        first assignment holds (``reserve``) and its confirmed service redeems."""
        return weighted(self.minutes, weight_permille)

    @property
    def unheld(self) -> bool:
        """Open, paid with stored time and holding none of it yet: whether anyone can take it
        depends on her balance now (``shortfall``)."""
        return self.redeem and self.status is RequestStatus.OPEN and not self.hold_minutes

    def shortfall(self, stored: int, weight_permille: int) -> Shortfall | None:
        """Whether her stored time stands in the way of this request: it is paid with stored
        time, open, holds none yet (the first assignment holds its price) and her available
        minutes ``stored`` do not cover its price. None when nothing stands in the way (not
        paid with stored time, already held, no longer open, or covered): a request asked
        for when she could pay becomes payable again as soon as her balance covers it."""
        if not self.unheld:
            return None
        need = self.price(weight_permille)
        return Shortfall(stored, need) if stored < need else None

    def require_payable(self, stored: int, weight_permille: int) -> None:
        """The one rule for asking for a request paid with stored time and for taking it: her
        available minutes ``stored`` cover its price, or it already holds them. Refused
        (``insufficient-balance``, at ``redeem``) with what she has and what it needs."""
        short = self.shortfall(stored, weight_permille)
        if short is not None:
            raise InsufficientBalance(
                "the elder has %(have)s minutes of stored time; this service needs %(need)s",
                field="redeem",
                have=short.have,
                need=short.need,
            )

    def cancelled(
        self, role: str, by: str | None, reason: str, *, has_record: bool
    ) -> ServiceRequest:
        """Open or assigned → cancelled, by the elder's side or staff. A volunteer gives a
        request back instead (``withdrawn``); a request whose service was recorded is
        cancelled only after staff reject the record, so the service is paid or its minutes
        released, never neither."""
        if role == "volunteer":
            raise Forbidden(
                "a volunteer gives a request back with POST /v1/requests/{id}/withdraw; "
                "only the elder's side or staff cancel it"
            )
        if role not in ("elder", "staff", "admin"):
            raise Forbidden("only the elder's side or staff cancel a request")
        if self.status not in (RequestStatus.OPEN, RequestStatus.ASSIGNED):
            raise WrongState("request is %(status)s", status=Words(self.status))
        if has_record:
            raise WrongState(_HAS_RECORD[0], zh=_HAS_RECORD[1])
        return replace(self, status=RequestStatus.CANCELLED, cancelled_by=by, cancel_reason=reason)

    def completed(self) -> ServiceRequest:
        """Assigned → completed, as its record is confirmed; a request cancelled meanwhile
        refuses the confirmation (its held minutes went back)."""
        if self.status is not RequestStatus.ASSIGNED:
            raise WrongState(
                "the request of this record is %(status)s; the record cannot be confirmed",
                zh="该记录对应的需求已取消，不能确认",
                status=Words(self.status),
            )
        return replace(self, status=RequestStatus.COMPLETED)

    def paid_back(self, by: str | None) -> ServiceRequest:
        """Completed → cancelled, as staff reject the record of its service: it did not happen
        as recorded, and its redemption is refunded."""
        if self.status is not RequestStatus.COMPLETED:
            raise WrongState("request is %(status)s, not completed", status=Words(self.status))
        return replace(
            self,
            status=RequestStatus.CANCELLED,
            cancelled_by=by,
            cancel_reason=RECORD_REJECTED,
        )

    def withdrawn(self, role: str, *, has_record: bool) -> ServiceRequest:
        """Assigned → open again, given back by its volunteer or staff; its held minutes stay
        held for the next volunteer."""
        if role not in ("volunteer", "staff", "admin"):
            raise Forbidden("only the assigned volunteer or staff give a request back")
        if self.status is not RequestStatus.ASSIGNED:
            raise WrongState("request is %(status)s, not assigned", status=Words(self.status))
        if has_record:
            raise WrongState(_HAS_RECORD[0], zh=_HAS_RECORD[1])
        return replace(self, status=RequestStatus.OPEN, volunteer_id=None, assigned_by=None)


@dataclass(frozen=True)
class Visit:
    """What the volunteer a request is assigned to is shown of it (``/volunteer/visit/{id}``,
    ``GET /v1/requests/{id}/visit``): the request, its service, the elder's masked name, her
    area and her full address (``None`` where she has none on file)."""

    request: ServiceRequest
    service: ServiceType
    elder_name: str | None
    area: str | None
    address: str | None


@dataclass(frozen=True)
class ServiceRecord:
    id: str
    bank_id: str
    request_id: str | None
    volunteer_id: str
    elder_id: str
    org_id: str
    service_type_id: str
    check_in: datetime
    check_out: datetime
    minutes: int
    digest: str
    device_key_id: str | None
    device_signature: str | None
    status: RecordStatus
    confirmed_by: str | None
    confirmed_as: ConfirmedAs | None
    confirmed_at: datetime | None
    verified_by: str | None
    verified_at: datetime | None
    rejected_reason: str | None
    deposit_seq: int | None
    deposit_minutes: int | None
    created_by: str
    created_at: datetime

    def confirming_as(self, role: str, member_id: str | None) -> ConfirmedAs:
        """How the caller would confirm this record for the served side (without a code):
        never the volunteer who logged it."""
        if self.status is not RecordStatus.LOGGED:
            raise WrongState("record is %(status)s", status=Words(self.status))
        if role == "volunteer" or member_id == self.volunteer_id:
            raise SelfVerification(
                "a volunteer cannot confirm their own record; ask the elder for a code"
            )
        as_ = CONFIRMING_ROLES.get(role)
        if as_ is None:
            raise Forbidden("the elder, their family or the organisation's staff confirm services")
        return as_

    def confirmed(self, by: str, as_: ConfirmedAs, at: datetime) -> ServiceRecord:
        """Logged → confirmed by the served side (``by`` created the code, for a code)."""
        if self.status is not RecordStatus.LOGGED:
            raise not_confirmable(self.status)
        return replace(
            self,
            status=RecordStatus.CONFIRMED,
            confirmed_by=by,
            confirmed_as=as_,
            confirmed_at=at,
        )

    def check_verifier(self, member_id: str | None, orgs: frozenset[str] | set[str]) -> None:
        """Only staff of the record's organisation verify it, never its volunteer."""
        if member_id == self.volunteer_id:
            raise SelfVerification("a volunteer cannot verify their own record")
        if self.org_id not in orgs:
            raise Forbidden("only staff of the record's organisation verify it")

    def verified(self, by: str, at: datetime) -> ServiceRecord:
        """Confirmed → verified (its minutes are deposited next), by someone other than who
        confirmed it for the elder."""
        if self.status is not RecordStatus.CONFIRMED:
            raise WrongState(_why_not_verifiable(self.status))
        if self.confirmed_by == by:
            raise SelfVerification(
                "whoever confirmed the service for the elder cannot also verify it",
                zh="为老人确认服务的人不能再审核这条记录",
            )
        return replace(self, status=RecordStatus.VERIFIED, verified_by=by, verified_at=at)

    def rejected(
        self, role: str, member_id: str | None, by: str | None, reason: str, at: datetime
    ) -> ServiceRecord:
        """Logged or confirmed → rejected by staff of its organisation or a bank administrator
        (never its volunteer); a verified record is corrected by a reversal instead."""
        if member_id == self.volunteer_id:
            raise SelfVerification("a volunteer cannot reject their own record")
        if role not in ("staff", "admin"):
            raise Forbidden(
                "only staff of the record's organisation, or a bank administrator, reject it"
            )
        if self.status not in (RecordStatus.LOGGED, RecordStatus.CONFIRMED):
            raise WrongState("record is %(status)s", status=Words(self.status))
        return replace(
            self,
            status=RecordStatus.REJECTED,
            rejected_reason=reason,
            verified_by=by,
            verified_at=at,
        )


def not_confirmable(status: RecordStatus) -> WrongState:
    """Tells the served side why a tap did nothing: the centre or her family may have confirmed
    the visit first, or staff rejected its record."""
    if status in (RecordStatus.CONFIRMED, RecordStatus.VERIFIED):
        return WrongState("this service was already confirmed", zh="这次服务已经确认过了")
    if status is RecordStatus.REJECTED:
        return WrongState(
            "the centre rejected the record of this service; there is nothing to confirm",
            zh="服务中心已经驳回了这次服务的记录，不用再确认",
        )
    return WrongState("record is %(status)s", status=Words(status))


def _why_not_verifiable(status: RecordStatus) -> str:
    """Tells staff what to do next: a verified record has already deposited its minutes."""
    if status is RecordStatus.VERIFIED:
        return "record is already verified; its minutes were deposited"
    if status is RecordStatus.REJECTED:
        return "record is rejected; it cannot be verified"
    return f"record is {status}; it must be confirmed by the served side first"
