"""Catalogue, policy, requests and service records: immutable records, no framework code."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise


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


REVERSAL_STATUSES = ("pending", "approved", "rejected")


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
