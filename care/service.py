"""The life of an hour: catalogue and policy, requests and dispatch, service records, their
confirmation and verification, deposits, redemption (two-phase), gifts, donations, pool grants
and reversals. Every rule lives here; the web layer only translates.

Every ledger entry this module appends has an id derived from the workflow object it belongs
to (``deposit:<record>``, ``reserve:<request>``…), so a retried or repeated action can never
post twice: the log returns the first result for a repeated id.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select, update

from accounts.errors import Conflict, Forbidden, InvalidInput, NotFound, TokenInvalid
from accounts.model import Member, MemberStatus, Principal, Role
from accounts.service import AccountsService
from accounts.storage import AccountsStore, Tx, utc
from accounts.tokens import new_id
from care.errors import (
    CareError,
    DailyCapExceeded,
    FutureRecord,
    GiftsDisabled,
    InsufficientBalance,
    InvalidConfirmationCode,
    InvalidDuration,
    InvalidSignature,
    LateRecord,
    MemberNotActive,
    NotARelative,
    NotEligible,
    NotPriorityElder,
    OutsideRequest,
    OverlappingRecord,
    SelfVerification,
    TooManyCodeAttempts,
    WrongState,
)
from care.model import (
    Category,
    ConfirmedAs,
    Policy,
    RecordStatus,
    RequestStatus,
    ServiceRecord,
    ServiceRequest,
    ServiceType,
)
from care.storage import (
    bank_policies,
    confirmation_codes,
    reversal_requests,
    service_records,
    service_requests,
    service_types,
    to_record,
    to_request,
    to_type,
)
from ledger import AppendResult
from ledger.entry import Ceiling, Entry, EntryRequest, Posting, canonical_json
from ledger.errors import EntryError
from ledger.errors import InsufficientBalance as LedgerInsufficient
from ledger.postings import ISSUANCE, POOL, REDEMPTION, hold_account, system_account

MAX_RECORD_MINUTES = 24 * 60
# A record for a request may start this long before its window and end this long after it,
# and run this many minutes over the request's (service rarely keeps to the minute).
WINDOW_SLACK = timedelta(hours=2)
EXTRA_MINUTES = 60
EARLIEST, LATEST = datetime(2000, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC)
CODE_TTL = timedelta(minutes=30)
CODE_DIGITS = 6
# Wrong confirmation codes allowed (key prefix: failures, window in seconds): a record's code
# confirmation locks after 5 (the elder's side or staff confirm it instead), a person trying
# codes and an elder whose codes are tried get 10 an hour. 10 guesses in 10^6 codes.
CODE_LIMITS = {"code-record": (5, 86400), "code-by": (10, 3600), "code-elder": (10, 3600)}


class Ledger(Protocol):
    """What the workflow needs of the log."""

    def append(self, request: EntryRequest) -> AppendResult: ...

    def balances(self, accounts: list[str]) -> dict[str, int]: ...

    def history(
        self, accounts: list[str], limit: int = 50, before_seq: int | None = None
    ) -> list[Entry]: ...

    def entry(self, seq: int) -> Entry | None: ...

    def entries_by_id(self, ids: list[str]) -> dict[str, Entry]: ...

    def receipt(self, index: int) -> str: ...


@dataclass(frozen=True)
class RecordDraft:
    fields: dict[str, Any]
    volunteer: Member
    elder: Member
    kind: ServiceType
    start: datetime
    end: datetime
    minutes: int
    org_id: str
    policy: Policy


@dataclass(frozen=True)
class Balance:
    member_id: str
    available: int
    reserved: int


@dataclass(frozen=True)
class HistoryItem:
    seq: int
    time: str
    kind: str
    minutes: int  # change to available + reserved of this member
    counterpart: str | None  # another member (masked id) or a system account role
    service: str | None
    record: str | None


def weighted(minutes: int, weight_permille: int) -> int:
    """Deposit value: minutes × weight, rounded half up to a whole minute (integers only)."""
    return (minutes * weight_permille + 500) // 1000


def record_digest(fields: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(fields)).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


def _text(value: str | None, field: str, max_length: int, required: bool = True) -> str | None:
    if value is None or not value.strip():
        if required:
            raise InvalidInput(f"{field} must not be empty", field=field)
        return None
    value = value.strip()
    if len(value) > max_length:
        raise InvalidInput(f"{field} must be at most {max_length} characters", field=field)
    return value


def _aware(value: datetime, field: str) -> datetime:
    """A time given with its zone, in UTC, within the years a time bank can mean."""
    if value.tzinfo is None:
        raise InvalidInput(
            f"{field} needs a time zone (e.g. 2026-11-25T09:00:00+08:00)", field=field
        )
    try:
        utc_value = value.astimezone(UTC)
    except OverflowError:
        utc_value = None
    if utc_value is None or not EARLIEST <= utc_value < LATEST:
        raise InvalidInput(f"{field} must be between the years 2000 and 2199", field=field)
    return utc_value


class CareService:
    def __init__(
        self,
        store: AccountsStore,
        accounts: AccountsService,
        ledger: Ledger,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.store = store
        self.accounts = accounts
        self.ledger = ledger
        self.clock = clock

    # ================================================================ policy and catalogue

    def policy(self, bank_id: str) -> Policy:
        with self.store.snapshot() as tx:
            row = tx.conn.execute(
                select(bank_policies)
                .where(bank_policies.c.bank_id == bank_id)
                .order_by(bank_policies.c.version.desc())
                .limit(1)
            ).first()
        if row is None:
            return Policy()
        known = set(Policy().values())
        values = {k: v for k, v in json.loads(row.values_json).items() if k in known}
        return Policy(version=row.version, ledger_seq=row.ledger_seq, **values)

    def set_policy(self, principal: Principal, changes: dict[str, Any]) -> Policy:
        _require_bank_admin(principal)
        current = self.policy(principal.bank_id)
        allowed = set(current.values())
        for key, value in changes.items():
            if key not in allowed:
                raise InvalidInput(f"unknown policy field {key}", field=key)
            expected = type(current.values()[key])
            if type(value) is not expected:
                raise InvalidInput(f"{key} must be {expected.__name__}", field=key)
            if isinstance(value, int) and not isinstance(value, bool) and value < 0:
                raise InvalidInput(f"{key} must not be negative", field=key)
            if key == "record_late_days" and isinstance(value, int) and not 1 <= value <= 366:
                raise InvalidInput("record_late_days must be 1-366", field=key)
        if "timezone" in changes:
            try:
                ZoneInfo(str(changes["timezone"]))
            except (KeyError, ValueError) as exc:
                raise InvalidInput("unknown time zone", field="timezone") from exc
        version = current.version + 1
        new = replace(current, version=version, ledger_seq=None, **changes)
        result = self.ledger.append(
            EntryRequest(
                "policy",
                f"policy:{principal.bank_id}:{version}",
                body={
                    "bank": principal.bank_id,
                    "version": version,
                    "set_by": principal.user_id or "",
                    **new.values(),
                },
            )
        )
        with self.store.transaction() as tx:
            tx.insert(
                bank_policies,
                bank_id=principal.bank_id,
                version=version,
                values_json=json.dumps(new.values()),
                set_by=principal.user_id,
                set_at=self.clock(),
                ledger_seq=result.seq,
            )
        return replace(new, ledger_seq=result.seq)

    def catalogue(self, principal: Principal, include_inactive: bool = False) -> list[ServiceType]:
        with self.store.snapshot() as tx:
            conditions = [service_types.c.bank_id == principal.bank_id]
            if not include_inactive:
                conditions.append(service_types.c.active.is_(True))
            rows = tx.find(service_types, *conditions, order=[service_types.c.code])
        return [to_type(r) for r in rows]

    def upsert_service_type(
        self,
        principal: Principal,
        code: str,
        name_zh: str,
        name_en: str,
        category: str,
        weight_permille: int,
        active: bool = True,
    ) -> ServiceType:
        """Create or change a service type; the change is a policy entry in the log and
        applies to records verified after it."""
        _require_bank_admin(principal)
        if (
            not code
            or len(code) > 32
            or not code.replace("-", "").replace("_", "").isalnum()
            or not code.isascii()
        ):
            raise InvalidInput("code must be 1-32 ASCII letters, digits, '-' or '_'", field="code")
        try:
            kind = Category(category)
        except ValueError as exc:
            allowed = ", ".join(c.value for c in Category)
            raise InvalidInput(f"category must be one of: {allowed}", field="category") from exc
        if not 100 <= weight_permille <= 5000:
            raise InvalidInput(
                "weight_permille must be between 100 and 5000", field="weight_permille"
            )
        zh = _text(name_zh, "name_zh", 100)
        en = _text(name_en, "name_en", 100)
        with self.store.snapshot() as tx:
            existing = tx.first(
                service_types,
                service_types.c.bank_id == principal.bank_id,
                service_types.c.code == code,
            )
        version = (existing.version + 1) if existing else 1
        result = self.ledger.append(
            EntryRequest(
                "policy",
                f"service:{principal.bank_id}:{code}:{version}",
                body={
                    "bank": principal.bank_id,
                    "service": code,
                    "version": version,
                    "category": kind.value,
                    "weight": weight_permille,
                    "active": active,
                    "name_zh": zh or "",
                    "name_en": en or "",
                    "set_by": principal.user_id or "",
                },
            )
        )
        now = self.clock()
        with self.store.transaction() as tx:
            values = dict(
                name_zh=zh,
                name_en=en,
                category=kind.value,
                weight_permille=weight_permille,
                active=active,
                version=version,
                ledger_seq=result.seq,
                updated_by=principal.user_id,
                updated_at=now,
            )
            if existing:
                tx.update(service_types, existing.id, **values)
                type_id = existing.id
            else:
                type_id = new_id()
                tx.insert(service_types, id=type_id, bank_id=principal.bank_id, code=code, **values)
            return to_type(tx.get(service_types, type_id))

    def _type_by_code(self, tx: Tx, bank_id: str, code: str) -> ServiceType:
        row = tx.first(
            service_types, service_types.c.bank_id == bank_id, service_types.c.code == code
        )
        if row is None or not row.active:
            raise NotFound(f"no active service type {code!r}", field="service_code")
        return to_type(row)

    # ================================================================ requests and dispatch

    def create_request(
        self,
        principal: Principal,
        elder_id: str,
        service_code: str,
        window_start: datetime,
        window_end: datetime,
        minutes: int,
        notes: str | None,
        redeem: bool,
    ) -> ServiceRequest:
        elder, access = self.accounts.member_access(principal, elder_id)
        if access not in ("self", "proxy", "staff", "admin"):
            raise Forbidden(
                "an elder, their family proxy or staff acting for them requests services"
            )
        if not elder.is_elder or elder.status is not MemberStatus.ACTIVE:
            raise InvalidInput("services are requested for an active elder", field="elder_id")
        start, end = _aware(window_start, "window_start"), _aware(window_end, "window_end")
        if end <= start:
            raise InvalidInput("window_end must be after window_start", field="window_end")
        window = int((end - start).total_seconds() // 60)
        if not 1 <= minutes <= min(window, MAX_RECORD_MINUTES):
            raise InvalidInput(
                f"minutes must be 1-{min(window, MAX_RECORD_MINUTES)} (the time window)",
                field="minutes",
            )
        if elder.org_id is None:
            raise InvalidInput("the elder belongs to no organisation", field="elder_id")
        if redeem:
            self._require_eligible(elder)
        with self.store.transaction() as tx:
            kind = self._type_by_code(tx, elder.bank_id, service_code)
            request_id = new_id()
            tx.insert(
                service_requests,
                id=request_id,
                bank_id=elder.bank_id,
                elder_id=elder.id,
                org_id=elder.org_id,
                service_type_id=kind.id,
                window_start=start,
                window_end=end,
                minutes=minutes,
                notes=_text(notes, "notes", 500, required=False),
                redeem=redeem,
                status=str(RequestStatus.OPEN),
                requested_by=principal.user_id or "",
                acting_for=access != "self",
                hold_minutes=0,
                created_at=self.clock(),
            )
            return to_request(tx.get(service_requests, request_id))

    def _visible_request(
        self, tx: Tx, principal: Principal, request_id: str
    ) -> tuple[ServiceRequest, str]:
        row = tx.get(service_requests, request_id) if isinstance(request_id, str) else None
        if row is None or row.bank_id != principal.bank_id or principal.is_partner:
            raise NotFound(f"no request {request_id}")
        request = to_request(row)
        if principal.is_bank_admin:
            return request, "admin"
        if request.org_id in principal.orgs():
            return request, "staff"
        if (
            principal.acting_member_id == request.elder_id
            or request.elder_id in principal.proxied_members()
        ):
            return request, "elder"
        acting = principal.acting_member_id
        if acting is not None and acting == request.volunteer_id:
            return request, "volunteer"
        if request.status is RequestStatus.OPEN and principal.has(Role.VOLUNTEER):
            return request, "candidate"
        raise NotFound(f"no request {request_id}")

    def get_request(self, principal: Principal, request_id: str) -> ServiceRequest:
        with self.store.snapshot() as tx:
            request, role = self._visible_request(tx, principal, request_id)
        return _for_viewer(request, role)

    def list_requests(self, principal: Principal, status: str | None) -> list[ServiceRequest]:
        if principal.is_partner:
            raise Forbidden("partner keys cannot read requests")
        conditions: list[Any] = [service_requests.c.bank_id == principal.bank_id]
        if status is not None:
            try:
                conditions.append(service_requests.c.status == RequestStatus(status).value)
            except ValueError as exc:
                raise InvalidInput("unknown status", field="status") from exc
        if not principal.is_bank_admin:
            mine: list[Any] = [service_requests.c.org_id.in_(principal.orgs())]
            if principal.acting_member_id:
                mine += [
                    service_requests.c.elder_id == principal.acting_member_id,
                    service_requests.c.volunteer_id == principal.acting_member_id,
                ]
            if principal.proxied_members():
                mine.append(service_requests.c.elder_id.in_(principal.proxied_members()))
            if principal.has(Role.VOLUNTEER):
                mine.append(service_requests.c.status == RequestStatus.OPEN.value)
            conditions.append(or_(*mine))
        with self.store.snapshot() as tx:
            rows = tx.find(service_requests, *conditions, order=[service_requests.c.window_start])
        requests = [to_request(r) for r in rows[:500]]
        return [_for_viewer(r, self._role_in(principal, r)) for r in requests]

    @staticmethod
    def _role_in(principal: Principal, request: ServiceRequest) -> str:
        """How a caller who may list ``request`` relates to it (as ``_visible_request``)."""
        if principal.is_bank_admin:
            return "admin"
        if request.org_id in principal.orgs():
            return "staff"
        if (
            principal.acting_member_id == request.elder_id
            or request.elder_id in principal.proxied_members()
        ):
            return "elder"
        acting = principal.acting_member_id
        if acting is not None and acting == request.volunteer_id:
            return "volunteer"
        return "candidate"

    def assign(self, principal: Principal, request_id: str, volunteer_id: str) -> ServiceRequest:
        """Staff dispatch a request to a volunteer (线下派单)."""
        with self.store.snapshot() as tx:
            request, role = self._visible_request(tx, principal, request_id)
        if role not in ("staff", "admin"):
            raise Forbidden("only staff of the elder's organisation dispatch requests")
        volunteer = self._bank_member(principal, volunteer_id)
        return self._accept(request, volunteer, principal.user_id or "")

    def claim(self, principal: Principal, request_id: str) -> ServiceRequest:
        """A volunteer takes an open request (线上点单)."""
        volunteer = self._acting_volunteer(principal, "claims requests")
        with self.store.snapshot() as tx:
            request, _ = self._visible_request(tx, principal, request_id)
        return self._accept(request, volunteer, principal.user_id or "")

    def _acting_volunteer(self, principal: Principal, what: str) -> Member:
        """The caller as an active volunteer: a pending, rejected or disabled one is told so."""
        if principal.member_id is not None and not principal.member_active:
            raise MemberNotActive(
                "your registration is not approved (or was rejected or disabled)",
                field="member",
                zh="您的注册尚未通过审核（或已被拒绝、停用）",
            )
        if principal.acting_member_id is None or not principal.has(Role.VOLUNTEER):
            raise Forbidden(f"only an approved volunteer {what}")
        volunteer = self.accounts.member(principal.acting_member_id)
        _require_active(volunteer, "member")
        return volunteer

    def _bank_member(
        self, principal: Principal, member_id: str, field: str = "volunteer_id"
    ) -> Member:
        try:
            member = self.accounts.member(member_id) if isinstance(member_id, str) else None
        except NotFound:
            member = None
        if member is None or member.bank_id != principal.bank_id:
            raise NotFound(f"no member {member_id}", field=field)
        return member

    def _accept(self, request: ServiceRequest, volunteer: Member, by: str) -> ServiceRequest:
        """Open → assigned. A redemption's minutes are held at the first assignment and stay
        held while the request is withdrawn and taken again; they leave the hold only by the
        redemption (the service happened) or the release (the request was cancelled)."""
        if request.status is not RequestStatus.OPEN:
            raise WrongState(f"request is {request.status}, not open")
        if not volunteer.is_volunteer:
            raise InvalidInput("the request must go to a volunteer", field="volunteer_id")
        _require_active(volunteer, "volunteer_id")
        if volunteer.id == request.elder_id:
            raise SelfVerification("a member cannot serve their own request")
        elder = self.accounts.member(request.elder_id)
        _require_active(elder, "elder_id")
        hold = request.hold_minutes
        placed = False
        if request.redeem and not hold:
            self._require_eligible(elder)
            with self.store.snapshot() as tx:
                kind = to_type(tx.get(service_types, request.service_type_id))
            hold = weighted(request.minutes, kind.weight_permille)
            placed = True
            self._append(
                EntryRequest(
                    "reserve",
                    f"reserve:{request.id}",
                    (
                        Posting(elder.ledger_account, -hold),
                        Posting(hold_account(elder.ledger_account), hold),
                    ),
                    {
                        "request": request.id,
                        "service": kind.code,
                        "minutes": request.minutes,
                        "weight": kind.weight_permille,
                    },
                )
            )
        with self.store.transaction() as tx:
            changed = tx.conn.execute(
                update(service_requests)
                .where(
                    service_requests.c.id == request.id,
                    service_requests.c.status == RequestStatus.OPEN.value,
                )
                .values(
                    status=RequestStatus.ASSIGNED.value,
                    volunteer_id=volunteer.id,
                    assigned_by=by,
                    hold_minutes=hold,
                )
            ).rowcount
            now = to_request(tx.get(service_requests, request.id))
        if changed != 1:
            if placed and now.status is RequestStatus.CANCELLED:
                # Cancelled between our reserve and our update: the canceller saw no hold.
                self._release(now, hold)
            raise WrongState(f"request was {now.status} meanwhile", zh="该需求已被他人接单或已取消")
        return now

    def _release(self, request: ServiceRequest, minutes: int) -> None:
        """Give a cancelled request's held minutes back (idempotent: one id per request)."""
        elder = self.accounts.member(request.elder_id)
        self._append(
            EntryRequest(
                "release",
                f"release:{request.id}",
                (
                    Posting(hold_account(elder.ledger_account), -minutes),
                    Posting(elder.ledger_account, minutes),
                ),
                {"request": request.id},
            )
        )

    def withdraw(self, principal: Principal, request_id: str) -> ServiceRequest:
        """The assigned volunteer (or staff) gives a request back: it is open again for
        another volunteer, its held minutes stay held."""
        with self.store.snapshot() as tx:
            request, role = self._visible_request(tx, principal, request_id)
        if role not in ("volunteer", "staff", "admin"):
            raise Forbidden("only the assigned volunteer or staff give a request back")
        with self.store.transaction() as tx:
            current = _locked_request(tx, request.id)
            if current.status is not RequestStatus.ASSIGNED:
                raise WrongState(f"request is {current.status}, not assigned")
            if _live_record(tx, request.id) is not None:
                raise WrongState(
                    "a service record was logged for this request; staff reject it first",
                    zh="该需求已有服务记录，须先由工作人员驳回记录",
                )
            tx.conn.execute(
                update(service_requests)
                .where(service_requests.c.id == request.id)
                .values(status=RequestStatus.OPEN.value, volunteer_id=None, assigned_by=None)
            )
            return to_request(tx.get(service_requests, request.id))

    def cancel(self, principal: Principal, request_id: str, reason: str) -> ServiceRequest:
        """The elder's side or staff cancel; held minutes go back to the elder. A request
        whose service was recorded cannot be cancelled until staff reject that record: the
        service is either paid or its minutes released, never neither."""
        text = _text(reason, "reason", 500)
        with self.store.snapshot() as tx:
            request, role = self._visible_request(tx, principal, request_id)
        if role == "volunteer":
            raise Forbidden(
                "a volunteer gives a request back with POST /v1/requests/{id}/withdraw; "
                "only the elder's side or staff cancel it"
            )
        if role not in ("elder", "staff", "admin"):
            raise Forbidden("only the elder's side or staff cancel a request")
        with self.store.transaction() as tx:
            current = _locked_request(tx, request.id)
            if current.status not in (RequestStatus.OPEN, RequestStatus.ASSIGNED):
                raise WrongState(f"request is {current.status}")
            if _live_record(tx, request.id) is not None:
                raise WrongState(
                    "a service record was logged for this request; staff reject it first",
                    zh="该需求已有服务记录，须先由工作人员驳回记录",
                )
            tx.update(
                service_requests,
                request.id,
                status=RequestStatus.CANCELLED.value,
                cancelled_by=principal.user_id,
                cancel_reason=text,
            )
            cancelled = to_request(tx.get(service_requests, request.id))
        if cancelled.hold_minutes:
            self._release(cancelled, cancelled.hold_minutes)
        return cancelled

    # ================================================================ service records

    def create_confirmation_code(self, principal: Principal, elder_id: str) -> tuple[str, datetime]:
        """A short code the elder's side reads to the volunteer to confirm a service."""
        elder, access = self.accounts.member_access(principal, elder_id)
        if access not in ("self", "proxy", "staff", "admin") or not elder.is_elder:
            raise Forbidden("only the elder, their family or staff create confirmation codes")
        _require_active(elder, "elder_id")
        code = "".join(secrets.choice("0123456789") for _ in range(CODE_DIGITS))
        expires = self.clock() + CODE_TTL
        with self.store.transaction() as tx:
            tx.insert(
                confirmation_codes,
                id=new_id(),
                elder_id=elder.id,
                code_hash=self._code_hash(elder.id, code),
                created_by=principal.user_id or "",
                created_at=self.clock(),
                expires_at=expires,
            )
        return code, expires

    def _code_hash(self, elder_id: str, code: str) -> str:
        key = self.accounts.protector.data_key
        return hmac.new(key, f"confirm:{elder_id}:{code}".encode(), hashlib.sha256).hexdigest()

    def draft_record(
        self,
        principal: Principal,
        *,
        elder_id: str,
        service_code: str,
        check_in: datetime,
        check_out: datetime,
        minutes: int | None,
        request_id: str | None,
    ) -> RecordDraft:
        """Check a record the volunteer is about to log and give its canonical fields: the
        bytes a phone signs with its device key (``canonical_json(fields)``)."""
        volunteer = self._acting_volunteer(principal, "logs service records")
        elder = self._bank_member(principal, elder_id)
        if not elder.is_elder:
            raise InvalidInput("services are given to an elder", field="elder_id")
        _require_active(elder, "elder_id")
        if elder.id == volunteer.id:
            raise SelfVerification("a volunteer cannot record a service to themselves")
        start, end = _aware(check_in, "check_in"), _aware(check_out, "check_out")
        now = self.clock()
        if end > now + timedelta(minutes=5) or start > now:
            raise FutureRecord(
                "a service can be recorded only after it happened", field="check_out"
            )
        if end <= start:
            raise InvalidDuration(
                "check_out must be after check_in", field="check_out", zh="签退时间必须晚于签到时间"
            )
        span = int((end - start).total_seconds() // 60)
        minutes = span if minutes is None else minutes
        if not 1 <= minutes <= min(span, MAX_RECORD_MINUTES):
            raise InvalidDuration(
                f"minutes must be between 1 and the {span} minutes between check-in and check-out",
                field="minutes",
                zh="服务时长不能超过签到与签退之间的时间",
            )
        policy = self.policy(elder.bank_id)
        if end < now - timedelta(days=policy.record_late_days):
            raise LateRecord(
                f"the service ended more than {policy.record_late_days} days ago; "
                "ask the organisation to record it",
                field="check_out",
            )
        org_id = elder.org_id
        with self.store.snapshot() as tx:
            kind = self._type_by_code(tx, elder.bank_id, service_code)
            if request_id is not None:
                request, _ = self._visible_request(tx, principal, request_id)
                if (
                    request.volunteer_id != volunteer.id
                    or request.status is not RequestStatus.ASSIGNED
                ):
                    raise WrongState("the request is not assigned to you", field="request_id")
                if request.elder_id != elder.id or request.service_type_id != kind.id:
                    raise InvalidInput(
                        "the record must match its request's elder and service", field="request_id"
                    )
                _within_request(request, start, end, minutes)
                org_id = request.org_id
        if org_id is None:
            raise InvalidInput("the elder belongs to no organisation", field="elder_id")
        fields = {
            "bank": elder.bank_id,
            "volunteer": volunteer.ledger_account,
            "elder": elder.ledger_account,
            "org": org_id,
            "service": kind.code,
            "check_in": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "check_out": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "minutes": minutes,
            "request": request_id or "",
        }
        return RecordDraft(fields, volunteer, elder, kind, start, end, minutes, org_id, policy)

    def draft_for_signing(
        self,
        principal: Principal,
        *,
        elder_id: str,
        service_code: str,
        check_in: datetime,
        check_out: datetime,
        minutes: int | None,
        request_id: str | None,
    ) -> RecordDraft:
        """``draft_record`` for a phone: its fields carry the elder's ledger account, which
        links to every public entry of hers, so a volunteer gets them only for a request
        assigned to them (a record without a request is logged unsigned)."""
        if request_id is None:
            raise Forbidden(
                "drafts to sign are given for a request assigned to you: send request_id",
                field="request_id",
            )
        return self.draft_record(
            principal,
            elder_id=elder_id,
            service_code=service_code,
            check_in=check_in,
            check_out=check_out,
            minutes=minutes,
            request_id=request_id,
        )

    def log_record(
        self,
        principal: Principal,
        *,
        elder_id: str,
        service_code: str,
        check_in: datetime,
        check_out: datetime,
        minutes: int | None,
        request_id: str | None,
        device_key_id: str | None,
        signature: str | None,
        confirmation_code: str | None,
    ) -> ServiceRecord:
        """The volunteer records a service they gave."""
        draft = self.draft_record(
            principal,
            elder_id=elder_id,
            service_code=service_code,
            check_in=check_in,
            check_out=check_out,
            minutes=minutes,
            request_id=request_id,
        )
        now = self.clock()
        fields, elder, start, policy = draft.fields, draft.elder, draft.start, draft.policy
        if (device_key_id is None) != (signature is None):
            raise InvalidInput("send device_key_id and signature together", field="signature")
        if device_key_id is not None and signature is not None:
            try:
                self.accounts.check_device_signature(
                    principal.user_id or "", device_key_id, canonical_json(fields), signature
                )
            except TokenInvalid as exc:
                raise InvalidSignature(str(exc), field="signature") from exc
        zone = ZoneInfo(policy.timezone)
        day_start = datetime.combine(start.astimezone(zone).date(), datetime.min.time(), zone)
        code_keys = _code_keys(None, principal.user_id, elder.id)
        try:
            record_id = self._insert_record(
                principal, draft, day_start, confirmation_code, code_keys, device_key_id, signature
            )
        except InvalidConfirmationCode:
            self._count_wrong_code(code_keys, now)
            raise
        record = self._record(record_id)
        if record.status is RecordStatus.CONFIRMED and record.request_id is not None:
            self._redeem(record)
        return record

    def _insert_record(
        self,
        principal: Principal,
        draft: RecordDraft,
        day_start: datetime,
        confirmation_code: str | None,
        code_keys: list[str],
        device_key_id: str | None,
        signature: str | None,
    ) -> str:
        """The record's row in one write: overlap, daily cap, request and code checked inside."""
        now = self.clock()
        volunteer, elder, kind = draft.volunteer, draft.elder, draft.kind
        start, end, minutes, org_id = draft.start, draft.end, draft.minutes, draft.org_id
        policy, request_id = draft.policy, draft.fields["request"] or None
        digest = record_digest(draft.fields)
        with self.store.transaction() as tx:
            overlap = tx.first(
                service_records,
                service_records.c.volunteer_id == volunteer.id,
                service_records.c.status != RecordStatus.REJECTED.value,
                service_records.c.check_in < end,
                service_records.c.check_out > start,
            )
            if overlap is not None:
                span_text = f"{utc(overlap.check_in)} – {utc(overlap.check_out)}"
                raise OverlappingRecord(
                    f"overlaps record {overlap.id} ({span_text})", field="check_in"
                )
            logged = tx.conn.execute(
                select(func.coalesce(func.sum(service_records.c.minutes), 0)).where(
                    service_records.c.volunteer_id == volunteer.id,
                    service_records.c.status != RecordStatus.REJECTED.value,
                    service_records.c.check_in >= day_start.astimezone(UTC),
                    service_records.c.check_in < (day_start + timedelta(days=1)).astimezone(UTC),
                )
            ).scalar_one()
            if int(logged) + minutes > policy.daily_cap_minutes:
                cap = policy.daily_cap_minutes
                raise DailyCapExceeded(
                    f"{logged} minutes already logged that day; the cap is {cap}",
                    field="minutes",
                )
            if request_id is not None:
                request = _locked_request(tx, request_id)
                if (
                    request.status is not RequestStatus.ASSIGNED
                    or request.volunteer_id != volunteer.id
                ):
                    raise WrongState("the request is not assigned to you", field="request_id")
                if _live_record(tx, request_id) is not None:
                    raise WrongState(
                        "a record for this request was logged already", field="request_id"
                    )
            record_id = new_id()
            confirmation = None
            if confirmation_code is not None:
                _refuse_if_throttled(tx, code_keys, now)
                confirmation = self._take_code(tx, elder.id, confirmation_code, now, record_id)
                if confirmation == principal.user_id:
                    raise SelfVerification(
                        "a code you created yourself cannot confirm your own service",
                        field="confirmation_code",
                    )
            tx.insert(
                service_records,
                id=record_id,
                bank_id=elder.bank_id,
                request_id=request_id,
                volunteer_id=volunteer.id,
                elder_id=elder.id,
                org_id=org_id,
                service_type_id=kind.id,
                check_in=start,
                check_out=end,
                minutes=minutes,
                digest=digest,
                device_key_id=device_key_id,
                device_signature=signature,
                status=RecordStatus.LOGGED.value,
                created_by=principal.user_id or "",
                created_at=now,
            )
            if confirmation is not None:
                tx.update(
                    service_records,
                    record_id,
                    status=RecordStatus.CONFIRMED.value,
                    confirmed_by=confirmation,
                    confirmed_as=ConfirmedAs.CODE.value,
                    confirmed_at=now,
                )
                if request_id is not None:
                    _complete_request(tx, request_id)
        return record_id

    def _record(self, record_id: str) -> ServiceRecord:
        with self.store.snapshot() as tx:
            row = tx.get(service_records, record_id)
        assert row is not None
        return to_record(row)

    def _visible_record(self, principal: Principal, record_id: str) -> tuple[ServiceRecord, str]:
        with self.store.snapshot() as tx:
            row = tx.get(service_records, record_id) if isinstance(record_id, str) else None
        if row is None or row.bank_id != principal.bank_id or principal.is_partner:
            raise NotFound(f"no record {record_id}")
        record = to_record(row)
        if principal.acting_member_id == record.volunteer_id:
            return record, "volunteer"
        if principal.acting_member_id == record.elder_id:
            return record, "elder"
        if record.elder_id in principal.proxied_members():
            return record, "family"
        if record.org_id in principal.orgs():
            return record, "staff"
        if principal.is_bank_admin:
            return record, "admin"
        if principal.has(Role.AUDITOR):
            return record, "auditor"
        raise NotFound(f"no record {record_id}")

    def get_record(self, principal: Principal, record_id: str) -> ServiceRecord:
        return self._visible_record(principal, record_id)[0]

    def list_records(self, principal: Principal, status: str | None) -> list[ServiceRecord]:
        if principal.is_partner:
            raise Forbidden("partner keys cannot read service records")
        conditions: list[Any] = [service_records.c.bank_id == principal.bank_id]
        if status is not None:
            try:
                conditions.append(service_records.c.status == RecordStatus(status).value)
            except ValueError as exc:
                raise InvalidInput("unknown status", field="status") from exc
        if not (principal.is_bank_admin or principal.has(Role.AUDITOR)):
            mine: list[Any] = [service_records.c.org_id.in_(principal.orgs())]
            if principal.acting_member_id:
                mine += [
                    service_records.c.volunteer_id == principal.acting_member_id,
                    service_records.c.elder_id == principal.acting_member_id,
                ]
            if principal.proxied_members():
                mine.append(service_records.c.elder_id.in_(principal.proxied_members()))
            conditions.append(or_(*mine))
        with self.store.snapshot() as tx:
            rows = tx.find(service_records, *conditions, order=[service_records.c.check_in])
        return [to_record(r) for r in rows[-500:]]

    def confirm(
        self, principal: Principal, record_id: str, code: str | None = None
    ) -> ServiceRecord:
        """The served side confirms: the elder, a family proxy, staff acting for the elder, or
        the volunteer passing on a code the elder's side gave them."""
        record, role = self._visible_record(principal, record_id)
        if record.status is not RecordStatus.LOGGED:
            raise WrongState(f"record is {record.status}")
        self._require_record_members_active(record)
        if code is not None:
            return self._confirm_with_code(record, code, principal.user_id)
        if role == "volunteer" or principal.member_id == record.volunteer_id:
            raise SelfVerification(
                "a volunteer cannot confirm their own record; ask the elder for a code"
            )
        as_ = {
            "elder": ConfirmedAs.ELDER,
            "family": ConfirmedAs.FAMILY,
            "staff": ConfirmedAs.STAFF_FOR_ELDER,
            "admin": ConfirmedAs.STAFF_FOR_ELDER,
        }.get(role)
        if as_ is None:
            raise Forbidden("the elder, their family or the organisation's staff confirm services")
        return self._mark_confirmed(record, principal.user_id or "", as_)

    def _require_record_members_active(self, record: ServiceRecord) -> None:
        _require_active(self.accounts.member(record.volunteer_id), "volunteer_id")
        _require_active(self.accounts.member(record.elder_id), "elder_id")

    def _take_code(self, tx: Tx, elder_id: str, code: str, now: datetime, record_id: str) -> str:
        """Use up a live confirmation code of ``elder_id`` for ``record_id``; returns who
        created it."""
        row = tx.first(
            confirmation_codes,
            confirmation_codes.c.elder_id == elder_id,
            confirmation_codes.c.code_hash == self._code_hash(elder_id, code),
            confirmation_codes.c.used_at.is_(None),
        )
        expires = utc(row.expires_at) if row is not None else None
        if row is None or expires is None or expires <= now:
            raise InvalidConfirmationCode(
                "confirmation code is wrong, used or expired", field="confirmation_code"
            )
        tx.update(confirmation_codes, row.id, used_at=now, record_id=record_id)
        return str(row.created_by)

    def _count_wrong_code(self, keys: list[str], now: datetime) -> None:
        """Count a wrong code against ``keys``, after the refused write rolled back."""
        with self.store.transaction() as tx:
            for key in keys:
                tx.throttle(key, now, CODE_LIMITS[key.split(":", 1)[0]][1])

    def _confirm_with_code(self, record: ServiceRecord, code: str, by: str | None) -> ServiceRecord:
        now = self.clock()
        keys = _code_keys(record.id, by, record.elder_id)
        with self.store.snapshot() as tx:
            _refuse_if_throttled(tx, keys, now)
        try:
            with self.store.transaction() as tx:
                creator = self._take_code(tx, record.elder_id, code, now, record.id)
                if creator in (by, record.created_by):  # refused: the code stays unused
                    raise SelfVerification(
                        "a code you created yourself cannot confirm your own service",
                        field="confirmation_code",
                    )
        except InvalidConfirmationCode:
            self._count_wrong_code(keys, now)
            raise
        return self._mark_confirmed(record, creator, ConfirmedAs.CODE)

    def _mark_confirmed(self, record: ServiceRecord, by: str, as_: ConfirmedAs) -> ServiceRecord:
        with self.store.transaction() as tx:
            if not _move_record(
                tx,
                record.id,
                RecordStatus.LOGGED,
                status=RecordStatus.CONFIRMED.value,
                confirmed_by=by,
                confirmed_as=as_.value,
                confirmed_at=self.clock(),
            ):
                raise WrongState("record was confirmed or rejected meanwhile")
            if record.request_id is not None:
                _complete_request(tx, record.request_id)
        confirmed = self._record(record.id)
        if confirmed.request_id is not None:
            self._redeem(confirmed)
        return confirmed

    def _redeem(self, record: ServiceRecord) -> None:
        """The service of a request happened (its request is completed, in the transaction
        that confirmed the record): post the held redemption. Idempotent, one id a request."""
        assert record.request_id is not None
        with self.store.snapshot() as tx:
            request = to_request(tx.get(service_requests, record.request_id))
        if request.status is RequestStatus.COMPLETED and request.hold_minutes:
            elder = self.accounts.member(request.elder_id)
            with self.store.snapshot() as tx:
                kind = to_type(tx.get(service_types, request.service_type_id))
            self._append(
                EntryRequest(
                    "redemption",
                    f"redeem:{request.id}",
                    (
                        Posting(hold_account(elder.ledger_account), -request.hold_minutes),
                        Posting(system_account(elder.bank_id, REDEMPTION), request.hold_minutes),
                    ),
                    {"request": request.id, "record": record.digest, "service": kind.code},
                )
            )

    def verify(self, principal: Principal, record_id: str) -> ServiceRecord:
        """The organisation verifies: one ledger entry deposits minutes × weight."""
        record, _ = self._visible_record(principal, record_id)
        if principal.member_id == record.volunteer_id:
            raise SelfVerification("a volunteer cannot verify their own record")
        if record.org_id not in principal.orgs():
            raise Forbidden("only staff of the record's organisation verify it")
        self.accounts.require_second_factor(principal)
        if record.status is not RecordStatus.CONFIRMED:
            raise WrongState(_why_not_verifiable(record.status))
        if record.confirmed_by == principal.user_id:
            raise SelfVerification(
                "whoever confirmed the service for the elder cannot also verify it"
            )
        self._require_record_members_active(record)
        # Confirmed → verified first, so that a reject racing this verify finds the record
        # verified (and is refused) instead of rejecting a record whose deposit is posted.
        verifier = principal.user_id or ""
        with self.store.transaction() as tx:
            moved = _move_record(
                tx,
                record.id,
                RecordStatus.CONFIRMED,
                status=RecordStatus.VERIFIED.value,
                verified_by=verifier,
                verified_at=self.clock(),
            )
        if not moved:
            raise WrongState("record was verified or rejected meanwhile")
        try:
            self._post_deposit(record, verifier)
        except Exception:
            with self.store.transaction() as tx:  # nothing was posted: confirmed again
                tx.conn.execute(
                    update(service_records)
                    .where(
                        service_records.c.id == record.id,
                        service_records.c.deposit_seq.is_(None),
                    )
                    .values(status=RecordStatus.CONFIRMED.value, verified_by=None, verified_at=None)
                )
            raise
        return self._record(record.id)

    def _post_deposit(self, record: ServiceRecord, verifier: str) -> None:
        """Append a verified record's deposit and note its seq on the record (idempotent:
        ``deposit:<record>``; also what the repair of an interrupted verification runs)."""
        volunteer = self.accounts.member(record.volunteer_id)
        policy = self.policy(record.bank_id)
        with self.store.snapshot() as tx:
            kind = to_type(tx.get(service_types, record.service_type_id))
        amount = weighted(record.minutes, kind.weight_permille)
        # The stored-time cap is applied by the log's writer against the balances of the
        # moment: deposits verified together cannot pass it together. The excess goes to the
        # pool, and the entry's to_pool says how much.
        member = volunteer.ledger_account
        cap = Ceiling(
            member,
            (member, hold_account(member)),
            policy.stored_cap_minutes,
            system_account(record.bank_id, POOL),
            "to_pool",
        )
        postings = [Posting(system_account(record.bank_id, ISSUANCE), -amount)]
        postings.append(Posting(member, amount))
        signatures = [{"role": "verifier", "by": verifier}]
        if record.device_key_id and record.device_signature:
            signatures.insert(
                0,
                {"role": "volunteer", "key": record.device_key_id, "sig": record.device_signature},
            )
        result = self._append(
            EntryRequest(
                "deposit",
                f"deposit:{record.id}",
                tuple(postings),
                {
                    "record": record.digest,
                    "service": kind.code,
                    "minutes": record.minutes,
                    "weight": kind.weight_permille,
                    "policy": policy.version,
                    "service_version": kind.version,
                    "org": record.org_id,
                    "confirmed_by": record.confirmed_by or "",
                    "confirmed_as": str(record.confirmed_as),
                    "verified_by": verifier,
                    "to_pool": 0,
                },
                tuple(signatures),
                cap,
            )
        )
        with self.store.transaction() as tx:
            noted = _move_record(
                tx, record.id, RecordStatus.VERIFIED, deposit_seq=result.seq, deposit_minutes=amount
            )
        if not noted:
            raise WrongState(f"record {record.id} left 'verified' while its deposit was posted")

    def reject(self, principal: Principal, record_id: str, reason: str) -> ServiceRecord:
        text = _text(reason, "reason", 500)
        record, role = self._visible_record(principal, record_id)
        if principal.member_id == record.volunteer_id:
            raise SelfVerification("a volunteer cannot reject their own record")
        if role not in ("staff", "admin"):
            raise Forbidden("only staff of the record's organisation reject it")
        if record.status not in (RecordStatus.LOGGED, RecordStatus.CONFIRMED):
            raise WrongState(f"record is {record.status}")
        refund: ServiceRequest | None = None
        with self.store.transaction() as tx:
            if not _move_record(
                tx,
                record.id,
                record.status,
                status=RecordStatus.REJECTED.value,
                rejected_reason=text,
                verified_by=principal.user_id,
                verified_at=self.clock(),
            ):
                raise WrongState("record was verified or rejected meanwhile")
            if record.request_id is not None:
                request = _locked_request(tx, record.request_id)
                if request.status is RequestStatus.COMPLETED:
                    # The confirmation had completed (and paid) the request: the service did
                    # not happen as recorded, so the request is cancelled and paid back.
                    tx.update(
                        service_requests,
                        request.id,
                        status=RequestStatus.CANCELLED.value,
                        cancelled_by=principal.user_id,
                        cancel_reason="service record rejected",
                    )
                    refund = request
        if refund is not None and refund.hold_minutes:
            self._refund(refund, record)
        return self._record(record.id)

    def _refund(self, request: ServiceRequest, record: ServiceRecord) -> None:
        """Give back a redemption whose record staff rejected (idempotent: one id a request)."""
        elder = self.accounts.member(request.elder_id)
        self._append(
            EntryRequest(
                "refund",
                f"refund:{request.id}",
                (
                    Posting(system_account(elder.bank_id, REDEMPTION), -request.hold_minutes),
                    Posting(elder.ledger_account, request.hold_minutes),
                ),
                {"request": request.id, "record": record.digest},
            )
        )

    # ================================================================ repair

    def repair(self) -> list[str]:
        """Finish every step a killed process left half done (see ``care.holds``); returns
        what it did. Safe to run at any time and any number of times."""
        done: list[str] = []
        with self.store.snapshot() as tx:
            requests = [to_request(r) for r in tx.find(service_requests, service_requests.c.redeem)]
            unposted = [
                to_record(r)
                for r in tx.find(
                    service_records,
                    service_records.c.status == RecordStatus.VERIFIED.value,
                    service_records.c.deposit_seq.is_(None),
                )
            ]
        kinds = ("reserve", "release", "redeem", "refund")
        wanted = [f"{k}:{r.id}" for r in requests for k in kinds]
        posted: dict[str, Entry] = {}
        for start in range(0, len(wanted), 1000):  # a bounded IN list per read
            posted.update(self.ledger.entries_by_id(wanted[start : start + 1000]))
        for request in requests:
            ids = [f"{kind}:{request.id}" for kind in kinds]
            reserve = posted.get(ids[0])
            if reserve is None or ids[1] in posted or ids[2] in posted:
                continue
            held = sum(p.minutes for p in reserve.request.postings if p.minutes > 0)
            if request.status is RequestStatus.CANCELLED:
                self._release(request, held)
                done.append(f"released {held} minutes held for cancelled request {request.id}")
            elif request.status is RequestStatus.COMPLETED:
                record = self._completed_record(request.id)
                if record is not None:
                    self._redeem(record)
                    done.append(f"redeemed {held} minutes of completed request {request.id}")
            elif request.hold_minutes != held:
                with self.store.transaction() as tx:
                    tx.update(service_requests, request.id, hold_minutes=held)
                done.append(f"request {request.id} now holds the {held} minutes reserved for it")
        for record in unposted:
            self._post_deposit(record, record.verified_by or "")
            done.append(f"posted the deposit of verified record {record.id}")
        return done

    def _completed_record(self, request_id: str) -> ServiceRecord | None:
        with self.store.snapshot() as tx:
            row = tx.first(
                service_records,
                service_records.c.request_id == request_id,
                service_records.c.status.in_(
                    [RecordStatus.CONFIRMED.value, RecordStatus.VERIFIED.value]
                ),
            )
        return to_record(row) if row is not None else None

    # ================================================================ eligibility and transfers

    def _require_eligible(self, member: Member) -> None:
        policy = self.policy(member.bank_id)
        born = self.accounts.birth_date(member.id)
        today = self.clock().astimezone(ZoneInfo(policy.timezone)).date()
        if born is not None and _age(born, today) >= policy.redemption_age:
            return
        if self.accounts.active_flags(member.id):
            return
        raise NotEligible(
            f"redemption needs age {policy.redemption_age} or a priority flag", field="elder_id"
        )

    def gift(
        self, principal: Principal, from_id: str, to_id: str, minutes: int, key: str
    ) -> AppendResult:
        giver, access = self.accounts.member_access(principal, from_id)
        if access not in ("self", "proxy"):
            raise Forbidden("only the member or their family proxy gives their minutes")
        receiver = self._bank_member(principal, to_id, field="to_member_id")
        _require_active(giver, "from_member_id")
        _require_active(receiver, "to_member_id")
        if access == "proxy" and receiver.id == principal.member_id:
            raise Forbidden("a family proxy cannot give the elder's minutes to themselves")
        if not self.policy(giver.bank_id).gifts_allowed:
            raise GiftsDisabled("gifts are switched off in this bank's policy")
        if not self.accounts.are_confirmed_relatives(giver.id, receiver.id):
            raise NotARelative("gifts go only to a confirmed direct relative", field="to_member_id")
        _positive(minutes)
        return self._append(
            EntryRequest(
                "gift",
                f"gift:{_opaque(giver.ledger_account)}:{key}",
                (
                    Posting(giver.ledger_account, -minutes),
                    Posting(receiver.ledger_account, minutes),
                ),
                {"by": principal.user_id or "", "relation": "confirmed"},
            )
        )

    def donate(self, principal: Principal, from_id: str, minutes: int, key: str) -> AppendResult:
        donor, access = self.accounts.member_access(principal, from_id)
        if access not in ("self", "proxy"):
            raise Forbidden("only the member or their family proxy donates their minutes")
        _require_active(donor, "from_member_id")
        _positive(minutes)
        return self._append(
            EntryRequest(
                "donation",
                f"donation:{_opaque(donor.ledger_account)}:{key}",
                (
                    Posting(donor.ledger_account, -minutes),
                    Posting(system_account(donor.bank_id, POOL), minutes),
                ),
                {"by": principal.user_id or ""},
            )
        )

    def grant(
        self, principal: Principal, elder_id: str, minutes: int, reason: str, key: str
    ) -> AppendResult:
        _require_bank_admin(principal)
        elder, _ = self.accounts.member_access(principal, elder_id)
        _require_active(elder, "elder_id")
        flags = self.accounts.active_flags(elder.id)
        if not elder.is_elder or not flags:
            raise NotPriorityElder(
                "pool minutes go to elders flagged as priority", field="elder_id"
            )
        text = _text(reason, "reason", 500)
        _positive(minutes)
        return self._append(
            EntryRequest(
                "grant",
                f"grant:{_opaque(elder.ledger_account)}:{key}",
                (
                    Posting(system_account(elder.bank_id, POOL), -minutes),
                    Posting(elder.ledger_account, minutes),
                ),
                {
                    "reason": text or "",
                    "priority": True,
                    "by": principal.user_id or "",
                },
            )
        )

    def request_reversal(self, principal: Principal, seq: int, reason: str) -> dict[str, Any]:
        _require_bank_admin(principal)
        text = _text(reason, "reason", 500)
        entry = self.ledger.entry(seq) if seq >= 0 else None
        if (
            entry is None
            or not entry.request.postings
            or not all(
                p.account.startswith(f"{principal.bank_id}:") for p in entry.request.postings
            )
        ):
            raise NotFound(f"no entry {seq} that moved minutes in this bank", field="seq")
        if entry.request.kind in ("reversal", "reserve", "release"):
            raise InvalidInput(f"a {entry.request.kind} cannot be reversed", field="seq")
        reversal_id = new_id()
        with self.store.transaction() as tx:
            if tx.first(
                reversal_requests,
                reversal_requests.c.entry_seq == seq,
                reversal_requests.c.status.in_(["pending", "approved"]),
            ):
                raise Conflict(f"entry {seq} already has a reversal request", field="seq")
            tx.insert(
                reversal_requests,
                id=reversal_id,
                bank_id=principal.bank_id,
                entry_seq=seq,
                reason=text,
                status="pending",
                requested_by=principal.user_id or "",
                requested_at=self.clock(),
            )
            return _row_dict(tx.get(reversal_requests, reversal_id))

    def list_reversals(self, principal: Principal, status: str | None) -> list[dict[str, Any]]:
        _require_bank_admin(principal)
        conditions: list[Any] = [reversal_requests.c.bank_id == principal.bank_id]
        if status is not None:
            conditions.append(reversal_requests.c.status == status)
        with self.store.snapshot() as tx:
            rows = tx.find(reversal_requests, *conditions, order=[reversal_requests.c.requested_at])
        return [_row_dict(r) for r in rows]

    def reject_reversal(self, principal: Principal, reversal_id: str) -> dict[str, Any]:
        """A bank admin turns down (or its requester withdraws) a pending reversal."""
        _require_bank_admin(principal)
        with self.store.transaction() as tx:
            row = tx.get(reversal_requests, reversal_id)
            if row is None or row.bank_id != principal.bank_id:
                raise NotFound(f"no reversal request {reversal_id}")
            if row.status != "pending":
                raise WrongState(f"reversal request is {row.status}")
            tx.update(
                reversal_requests,
                row.id,
                status="rejected",
                decided_by=principal.user_id,
                decided_at=self.clock(),
            )
            return _row_dict(tx.get(reversal_requests, row.id))

    def approve_reversal(self, principal: Principal, reversal_id: str) -> dict[str, Any]:
        """A second bank admin approves; only then is the reversing entry appended."""
        _require_bank_admin(principal)
        with self.store.snapshot() as tx:
            row = tx.get(reversal_requests, reversal_id)
        if row is None or row.bank_id != principal.bank_id:
            raise NotFound(f"no reversal request {reversal_id}")
        if row.status != "pending":
            raise WrongState(f"reversal request is {row.status}")
        if row.requested_by == principal.user_id:
            raise SelfVerification(
                "a second administrator must approve a reversal", zh="冲正须由另一位管理员批准"
            )
        entry = self.ledger.entry(int(row.entry_seq))
        assert entry is not None
        result = self._append(
            EntryRequest(
                "reversal",
                f"reversal:{row.id}",
                tuple(Posting(p.account, -p.minutes) for p in entry.request.postings),
                {
                    "reverses": int(row.entry_seq),
                    "reason": row.reason,
                    "requested_by": row.requested_by,
                    "approved_by": principal.user_id or "",
                },
            )
        )
        self._after_reversal(entry, int(row.entry_seq), row.id)
        with self.store.transaction() as tx:
            tx.update(
                reversal_requests,
                row.id,
                status="approved",
                decided_by=principal.user_id,
                decided_at=self.clock(),
                reversal_seq=result.seq,
            )
            return _row_dict(tx.get(reversal_requests, row.id))

    def _after_reversal(self, entry: Entry, seq: int, reversal_id: str) -> None:
        """Keep the workflow true to the log: a reversed deposit's record is no longer
        verified, and minutes a reversed redemption put back on hold are released."""
        if entry.request.kind == "deposit":
            with self.store.transaction() as tx:
                tx.conn.execute(
                    update(service_records)
                    .where(service_records.c.deposit_seq == seq)
                    .values(
                        status=RecordStatus.REJECTED.value,
                        rejected_reason=f"deposit {seq} reversed ({reversal_id})",
                    )
                )
        for posting in entry.request.postings:
            if posting.account.split(":")[1] == "hold" and posting.minutes < 0:
                member = posting.account.replace(":hold:", ":member:")
                self._append(
                    EntryRequest(
                        "release",
                        f"release:reversal:{reversal_id}",
                        (
                            Posting(posting.account, posting.minutes),
                            Posting(member, -posting.minutes),
                        ),
                        {"reversal": reversal_id},
                    )
                )

    # ================================================================ balances, history, receipts

    def balance(self, principal: Principal, member_id: str) -> Balance:
        member = self._readable_member(principal, member_id)
        held = self.ledger.balances([member.ledger_account, hold_account(member.ledger_account)])
        return Balance(
            member.id, held[member.ledger_account], held[hold_account(member.ledger_account)]
        )

    def pool_balance(self, principal: Principal) -> int:
        """Minutes in the bank's pool (公益池): what grants to priority elders can draw on.
        For bank administrators, who grant from it, and auditors."""
        if not (principal.is_bank_admin or principal.has(Role.AUDITOR)):
            raise Forbidden("the pool's balance is for bank administrators and auditors")
        pool = system_account(principal.bank_id, POOL)
        return self.ledger.balances([pool])[pool]

    def _readable_member(self, principal: Principal, member_id: str) -> Member:
        if principal.is_partner:
            if "read_points" not in principal.partner_scopes:
                raise Forbidden("this key may not read points")
            member = self._bank_member(principal, member_id)
            return member
        member, access = self.accounts.member_access(principal, member_id)
        if access == "auditor" or access in ("self", "proxy", "staff", "admin"):
            return member
        raise NotFound(f"no member {member_id}")

    def history(
        self, principal: Principal, member_id: str, limit: int, before: int | None
    ) -> list[HistoryItem]:
        if principal.is_partner:
            raise Forbidden("partner keys read balances only")
        member = self._readable_member(principal, member_id)
        own = {member.ledger_account, hold_account(member.ledger_account)}
        items = []
        for entry in self.ledger.history(sorted(own), limit, before):
            change = sum(p.minutes for p in entry.request.postings if p.account in own)
            others = [p.account for p in entry.request.postings if p.account not in own]
            counterpart = None
            if others:
                role = others[0].split(":")[1]
                counterpart = f"member …{others[0][-4:]}" if role == "member" else role
            body = entry.request.body
            items.append(
                HistoryItem(
                    entry.seq,
                    entry.time,
                    entry.request.kind,
                    change,
                    counterpart,
                    str(body["service"]) if "service" in body else None,
                    str(body["record"]) if "record" in body else None,
                )
            )
        return items

    def receipt(self, principal: Principal, member_id: str, seq: int) -> str:
        if principal.is_partner:
            raise Forbidden("partner keys read balances only")
        member = self._readable_member(principal, member_id)
        entry = self.ledger.entry(seq) if seq >= 0 else None
        own = {member.ledger_account, hold_account(member.ledger_account)}
        if entry is None or not any(p.account in own for p in entry.request.postings):
            raise NotFound(f"no entry {seq} for this member", field="seq")
        return self.ledger.receipt(seq)

    # ================================================================ ledger

    def _append(self, request: EntryRequest) -> AppendResult:
        try:
            return self.ledger.append(request)
        except LedgerInsufficient as exc:
            raise InsufficientBalance(
                f"not enough minutes: {exc.balance} available, {-exc.change} needed",
                field="minutes",
            ) from exc
        except EntryError as exc:
            raise CareError(str(exc), field=exc.field) from exc


def _for_viewer(request: ServiceRequest, role: str) -> ServiceRequest:
    """Notes ("复查心脏") are for the elder's side, staff and the assigned volunteer; a
    volunteer browsing open requests sees the service, the time and the area, not them."""
    return request if role != "candidate" else replace(request, notes=None)


def _within_request(request: ServiceRequest, start: datetime, end: datetime, minutes: int) -> None:
    """A record for a request keeps to its window (± ``WINDOW_SLACK``) and its minutes
    (+ at most ``EXTRA_MINUTES``)."""
    if start < request.window_start - WINDOW_SLACK or end > request.window_end + WINDOW_SLACK:
        raise OutsideRequest(
            f"the service must fall within the request's window "
            f"{request.window_start:%Y-%m-%d %H:%M}–{request.window_end:%H:%M} UTC "
            f"(± {WINDOW_SLACK.seconds // 3600} h)",
            field="check_in",
        )
    if minutes > request.minutes + EXTRA_MINUTES:
        raise OutsideRequest(
            f"the request is for {request.minutes} minutes; a record of it may hold at most "
            f"{request.minutes + EXTRA_MINUTES}",
            field="minutes",
        )


def _code_keys(record_id: str | None, by: str | None, elder_id: str) -> list[str]:
    keys = [f"code-by:{by or 'anonymous'}", f"code-elder:{elder_id}"]
    return ([f"code-record:{record_id}"] if record_id else []) + keys


def _refuse_if_throttled(tx: Tx, keys: list[str], now: datetime) -> None:
    for key in keys:
        limit, window = CODE_LIMITS[key.split(":", 1)[0]]
        if tx.throttle_count(key, now, window) >= limit:
            if key.startswith("code-record:"):
                raise TooManyCodeAttempts(
                    f"{limit} wrong codes for this record: the elder, their family or staff "
                    "confirm it instead",
                    field="confirmation_code",
                )
            raise TooManyCodeAttempts(
                f"{limit} wrong confirmation codes within {window // 60} minutes; try again later",
                field="confirmation_code",
            )


def _require_active(member: Member, field: str) -> None:
    """The one rule every use case applies: only approved members take part."""
    if member.status is not MemberStatus.ACTIVE:
        raise MemberNotActive(f"member {member.id} is {member.status}, not active", field=field)


def _move_record(tx: Tx, record_id: str, expected: RecordStatus, **values: Any) -> bool:
    """Change a record only if it is still ``expected``: whether it was (the compare-and-set
    that keeps racing confirmations, verifications and rejections from overwriting each
    other)."""
    changed = tx.conn.execute(
        update(service_records)
        .where(service_records.c.id == record_id, service_records.c.status == expected.value)
        .values(**values)
    ).rowcount
    return bool(changed == 1)


def _locked_request(tx: Tx, request_id: str) -> ServiceRequest:
    """The request's row, locked for the rest of the write (PostgreSQL; SQLite's writer
    holds the whole database already)."""
    row = tx.conn.execute(
        select(service_requests).where(service_requests.c.id == request_id).with_for_update()
    ).first()
    if row is None:
        raise NotFound(f"no request {request_id}", field="request_id")
    return to_request(row)


def _live_record(tx: Tx, request_id: str) -> Any:
    """A record of the request that was not rejected, if any."""
    return tx.first(
        service_records,
        service_records.c.request_id == request_id,
        service_records.c.status != RecordStatus.REJECTED.value,
    )


def _complete_request(tx: Tx, request_id: str) -> None:
    """Assigned → completed, in the transaction that confirms its record; a request that
    was cancelled meanwhile refuses the confirmation (its held minutes went back)."""
    request = _locked_request(tx, request_id)
    if request.status is not RequestStatus.ASSIGNED:
        raise WrongState(
            f"the request of this record is {request.status}; the record cannot be confirmed",
            zh="该记录对应的需求已取消，不能确认",
        )
    tx.update(service_requests, request_id, status=RequestStatus.COMPLETED.value)


def _row_dict(row: Any) -> dict[str, Any]:
    assert row is not None
    return {k: utc(v) if isinstance(v, datetime) else v for k, v in row._mapping.items()}


def _opaque(account: str) -> str:
    """The random part of a ledger account: entry ids never carry internal member ids."""
    return account.rsplit(":", 1)[-1]


def _require_bank_admin(principal: Principal) -> None:
    if not principal.is_bank_admin:
        raise Forbidden("only a bank administrator may do this")


def _positive(minutes: int) -> None:
    if not isinstance(minutes, int) or isinstance(minutes, bool) or not 1 <= minutes <= 10**9:
        raise InvalidInput("minutes must be a positive whole number", field="minutes")


def _age(born: date, today: date) -> int:
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def _why_not_verifiable(status: RecordStatus) -> str:
    """Tells staff what to do next: a verified record has already deposited its minutes."""
    if status is RecordStatus.VERIFIED:
        return "record is already verified; its minutes were deposited"
    if status is RecordStatus.REJECTED:
        return "record is rejected; it cannot be verified"
    return f"record is {status}; it must be confirmed by the served side first"
