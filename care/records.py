"""Service records: a volunteer logs a visit (signed by a device key, or unsigned from a
form), checked against its request's window, the daily cap and the lateness limit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from accounts.errors import Forbidden, InvalidInput, TokenInvalid, Words
from accounts.model import Member, Principal, Role
from accounts.storage import Tx, utc
from accounts.tokens import new_id
from care.base import aware, record_digest, require_active
from care.codes import Codes, code_throttle_keys, refuse_if_throttled
from care.errors import (
    DailyCapExceeded,
    FutureRecord,
    InvalidConfirmationCode,
    InvalidDuration,
    InvalidSignature,
    LateRecord,
    OutsideRequest,
    OverlappingRecord,
    SelfVerification,
    WrongState,
)
from care.model import (
    ConfirmedAs,
    Policy,
    RecordStatus,
    RequestStatus,
    ServiceRecord,
    ServiceRequest,
    ServiceType,
)
from care.repo import (
    complete_request,
    listed,
    live_record,
    locked_request,
    minutes_toward_cap,
    overlapping_record,
)
from care.requests import MAX_RECORD_MINUTES
from care.storage import (
    service_records,
    service_requests,
    to_record,
    to_request,
)
from database.group import Refused
from ledger.entry import record_signing_message

# A record for a request may start this long before its window and end this long after it,
# and run this many minutes over the request's (service rarely keeps to the minute).
WINDOW_SLACK = timedelta(hours=2)


EXTRA_MINUTES = 60


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


def _within_request(request: ServiceRequest, start: datetime, end: datetime, minutes: int) -> None:
    """A record for a request keeps to its window (± ``WINDOW_SLACK``) and its minutes
    (+ at most ``EXTRA_MINUTES``)."""
    if start < request.window_start - WINDOW_SLACK or end > request.window_end + WINDOW_SLACK:
        raise OutsideRequest(
            "the service must fall within the request's window %(start)s–%(end)s UTC "
            "(± %(hours)s h)",
            field="check_in",
            start=f"{request.window_start:%Y-%m-%d %H:%M}",
            end=f"{request.window_end:%H:%M}",
            hours=WINDOW_SLACK.seconds // 3600,
        )
    if minutes > request.minutes + EXTRA_MINUTES:
        raise OutsideRequest(
            "the request is for %(minutes)s minutes; a record of it may hold at most %(most)s",
            field="minutes",
            minutes=request.minutes,
            most=request.minutes + EXTRA_MINUTES,
        )


@dataclass(frozen=True)
class DayLoad:
    """Volunteers' load on a request's day across the whole bank, for dispatching it."""

    logged: dict[str, int]  # minutes toward the daily cap (``minutes_toward_cap``)
    assigned: dict[str, int]  # minutes of other requests assigned to them that day
    busy: set[str]  # assigned another request overlapping the request's window


class Records(Codes):
    """Drafting and logging service records, and reading them."""

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
        """Check a record the volunteer is about to log and give its canonical fields; a phone
        signs ``record_signing_message`` of their digest with its device key."""
        with self.store.snapshot() as tx:
            volunteer = self._acting_volunteer(principal, Words("logs service records"), tx)
            elder = self._bank_member(principal, elder_id, "elder_id", tx)
            if not elder.is_elder:
                raise InvalidInput("services are given to an elder", field="elder_id")
            require_active(elder, "elder_id")
            if elder.id == volunteer.id:
                raise SelfVerification("a volunteer cannot record a service to themselves")
            start, end = aware(check_in, "check_in"), aware(check_out, "check_out")
            now = self.clock()
            if end > now + timedelta(minutes=5) or start > now:
                raise FutureRecord(
                    "a service can be recorded only after it happened", field="check_out"
                )
            if end <= start:
                raise InvalidDuration(
                    "check_out must be after check_in",
                    field="check_out",
                    zh="签退时间必须晚于签到时间",
                )
            span = int((end - start).total_seconds() // 60)
            minutes = span if minutes is None else minutes
            if not 1 <= minutes <= min(span, MAX_RECORD_MINUTES):
                raise InvalidDuration(
                    "minutes must be between 1 and the %(span)s minutes between check-in and "
                    "check-out",
                    field="minutes",
                    zh="服务时长不能超过签到与签退之间的时间",
                    span=span,
                )
            policy = self.policy(elder.bank_id, tx)
            if end < now - timedelta(days=policy.record_late_days):
                raise LateRecord(
                    "the service ended more than %(days)s days ago; ask the organisation to "
                    "record it",
                    field="check_out",
                    days=policy.record_late_days,
                )
            org_id = elder.org_id
            kind = self._type_by_code(tx, elder.bank_id, service_code)
            if request_id is not None:
                request, _ = self._visible_request(tx, principal, request_id, "request_id")
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
                    principal.user_id or "",
                    device_key_id,
                    record_signing_message(record_digest(fields)),
                    signature,
                )
            except TokenInvalid as exc:
                raise InvalidSignature(str(exc), field="signature") from exc
        zone = ZoneInfo(policy.timezone)
        day_start = datetime.combine(start.astimezone(zone).date(), datetime.min.time(), zone)
        code_keys = code_throttle_keys(None, principal.user_id, elder.id)
        try:
            record = self._insert_record(
                principal, draft, day_start, confirmation_code, code_keys, device_key_id, signature
            )
        except InvalidConfirmationCode:
            self._count_wrong_code(code_keys, now)
            raise
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
    ) -> ServiceRecord:
        """The record's row in one write: overlap, daily cap, request and code checked inside;
        the record as stored, read back in that write."""
        now = self.clock()
        volunteer, elder, kind = draft.volunteer, draft.elder, draft.kind
        start, end, minutes, org_id = draft.start, draft.end, draft.minutes, draft.org_id
        policy, request_id = draft.policy, draft.fields["request"] or None
        digest = record_digest(draft.fields)

        def insert(tx: Tx) -> ServiceRecord | Refused:
            overlap = overlapping_record(tx, volunteer.id, start, end)
            if overlap is not None:
                return Refused(
                    OverlappingRecord(
                        "overlaps record %(id)s (%(start)s – %(end)s)",
                        field="check_in",
                        id=overlap.id,
                        start=utc(overlap.check_in),
                        end=utc(overlap.check_out),
                    )
                )
            logged = minutes_toward_cap(tx, [volunteer.id], day_start).get(volunteer.id, 0)
            if logged + minutes > policy.daily_cap_minutes:
                cap = policy.daily_cap_minutes
                return Refused(
                    DailyCapExceeded(
                        "%(logged)s minutes already logged that day; the cap is %(cap)s",
                        field="minutes",
                        logged=logged,
                        cap=cap,
                    )
                )
            if request_id is not None:
                request = locked_request(tx, request_id)
                if (
                    request.status is not RequestStatus.ASSIGNED
                    or request.volunteer_id != volunteer.id
                ):
                    return Refused(
                        WrongState("the request is not assigned to you", field="request_id")
                    )
                if live_record(tx, request_id) is not None:
                    return Refused(
                        WrongState(
                            "a record for this request was logged already", field="request_id"
                        )
                    )
            record_id = new_id()
            confirmation = None
            if confirmation_code is not None:
                refuse_if_throttled(tx, code_keys, now)
                confirmation = self._take_code(tx, elder.id, confirmation_code, now, record_id)
                if isinstance(confirmation, Refused):
                    return confirmation
                if confirmation == principal.user_id:  # the code was taken: roll it back
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
                    complete_request(tx, request_id)
            return to_record(tx.get(service_records, record_id))

        return self._commit_workflow(insert)

    def get_record(self, principal: Principal, record_id: str) -> ServiceRecord:
        return self._visible_record(principal, record_id)[0]

    def day_load(self, principal: Principal, request_id: str, volunteer_ids: list[str]) -> DayLoad:
        """For staff dispatching a request: each volunteer's minutes on its day in every
        organisation of the bank, counted as the daily cap counts them, plus what they are
        assigned that day. Totals only: no other organisation's request or record is shown."""
        with self.store.snapshot() as tx:
            request, role = self._visible_request(tx, principal, request_id)
            if role not in ("staff", "admin"):
                raise Forbidden("only staff of the elder's organisation dispatch requests")
            zone = ZoneInfo(self.policy(principal.bank_id).timezone)
            day = request.window_start.astimezone(zone).date()
            day_start = datetime.combine(day, datetime.min.time(), zone)
            logged = minutes_toward_cap(tx, volunteer_ids, day_start)
            others = tx.find(
                service_requests,
                service_requests.c.bank_id == principal.bank_id,
                service_requests.c.status == RequestStatus.ASSIGNED.value,
                service_requests.c.volunteer_id.in_(volunteer_ids),
                service_requests.c.id != request.id,
            )
        assigned: dict[str, int] = {}
        busy: set[str] = set()
        for other in map(to_request, others):
            volunteer = other.volunteer_id or ""
            if other.window_start.astimezone(zone).date() == day:
                assigned[volunteer] = assigned.get(volunteer, 0) + other.minutes
            if other.window_start < request.window_end and request.window_start < other.window_end:
                busy.add(volunteer)
        return DayLoad(logged, assigned, busy)

    def list_records(self, principal: Principal, status: str | None) -> list[ServiceRecord]:
        if principal.is_partner:
            raise Forbidden("partner keys cannot read service records")
        with self.store.snapshot() as tx:
            rows = listed(
                tx,
                service_records,
                principal,
                status=status,
                statuses=RecordStatus,
                by=service_records.c.check_in,
                sees_all=principal.is_bank_admin or principal.has(Role.AUDITOR),
            )
        return [to_record(r) for r in rows]
