"""The organisation's desk: the dispatch board (线下派单) and the records to act on (confirm
for an elder without a phone, verify with a TOTP step-up, reject). Each form calls the same
service method as its ``/v1`` route, so the rules, refusals and audit events are the API's;
the people pages are in ``web.desk_people`` and the printed paper in ``web.desk_paper``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.params import PathParameter, QueryParameter
from litestar.response import Redirect, Template

from accounts.errors import AccountsError, Forbidden, InvalidInput
from accounts.model import MemberStatus, Principal, Role
from care.errors import CareError
from care.model import (
    RecordStatus,
    RequestStatus,
    ServiceRecord,
    ServiceRequest,
    ServiceType,
    Shortfall,
)
from care.service import CareService
from web.i18n import N_, gettext_for
from web.pages import Form, is_whole_day, language_of, refusal, render, safe_next, to_login
from web.session import ON_BEHALF_STATE_KEY, accounts_of, session_cookie, viewer

ItemId = Annotated[str, PathParameter(max_length=64)]
# Words the desk shows from the services' values; the catalog translates them.
WORDS = (
    N_("open"),
    N_("assigned"),
    N_("completed"),
    N_("cancelled"),
    N_("elder"),
    N_("family"),
    N_("staff_for_elder"),
    N_("code"),
)
# The service's own refusal of dispatch to anyone but staff: the board says the same.
NOT_STAFF = N_("only staff of the elder's organisation dispatch requests")


def care_of(request: Request[Any, Any, State]) -> CareService:
    service: CareService = request.app.state.care
    return service


def staff_or_refusal(request: Request[Any, Any, State]) -> Principal | Response[Any]:
    """The caller as staff of an organisation (or a bank admin), else the login page or the
    refusal the API gives for dispatching (403)."""
    principal = viewer(request)
    if principal is None:
        return to_login(request)
    if principal.orgs() or principal.is_bank_admin:
        return principal
    raise Forbidden(NOT_STAFF)


def translate(request: Request[Any, Any, Any], message: str, **values: Any) -> str:
    return gettext_for(language_of(request))(message, **values)


class Names:
    """Masked names and areas of members as this caller may see them, looked up once."""

    def __init__(self, request: Request[Any, Any, State], principal: Principal) -> None:
        self.request, self.principal = request, principal
        self.seen: dict[str, tuple[str, str]] = {}

    def _look(self, member_id: str) -> tuple[str, str]:
        if member_id not in self.seen:
            try:
                view = accounts_of(self.request).get_member(self.principal, member_id)
                name = str(view.personal.get("name") or f"…{member_id[-4:]}")
                area = str(view.personal.get("address") or "")
            except AccountsError:
                name, area = f"…{member_id[-4:]}", ""
            self.seen[member_id] = (name, area)
        return self.seen[member_id]

    def name(self, member_id: str | None) -> str:
        return self._look(member_id)[0] if member_id else ""

    def area(self, member_id: str) -> str:
        return self._look(member_id)[1]


def types_of(care: CareService, principal: Principal) -> dict[str, ServiceType]:
    return {t.id: t for t in care.catalogue(principal, include_inactive=True)}


def service_name(request: Request[Any, Any, Any], kind: ServiceType | None) -> str:
    if kind is None:
        return "?"
    return kind.name_zh if language_of(request) == "zh-CN" else kind.name_en


def window_text(request: Request[Any, Any, Any], start: datetime, end: datetime, zone: str) -> str:
    local = ZoneInfo(zone)
    a, b = start.astimezone(local), end.astimezone(local)
    chinese = language_of(request) == "zh-CN"
    day = f"{a.year}年{a.month}月{a.day}日" if chinese else f"{a:%d %b %Y}"
    if is_whole_day(a, b):  # an elder's "any time that day", not 00:00–00:00
        return f"{day} · {gettext_for(language_of(request))('Any time that day')}"
    return f"{day} {a:%H:%M}–{b:%H:%M}"


def day_text(request: Request[Any, Any, Any], day: date) -> str:
    if language_of(request) == "zh-CN":
        return f"{day.year}年{day.month}月{day.day}日"
    return f"{day:%A %d %B %Y}"


# ---------------------------------------------------------------- the desk's start


@get("/desk", sync_to_thread=True, include_in_schema=False)
def desk_home(request: Request[Any, Any, State]) -> Response[Any]:
    who = staff_or_refusal(request)
    if not isinstance(who, Principal):
        return who
    care = care_of(request)
    open_ = care.list_requests(who, RequestStatus.OPEN.value)
    logged = care.list_records(who, RecordStatus.LOGGED.value)
    confirmed = care.list_records(who, RecordStatus.CONFIRMED.value)
    pending = [
        v
        for v in accounts_of(request).list_members(who, None, 200, 0)
        if v.member.status is MemberStatus.PENDING
    ]
    return render(
        request,
        "desk/home.html",
        who,
        counts={
            "open": sum(1 for r in open_ if r.org_id in who.orgs() or who.is_bank_admin),
            "logged": len(logged),
            "confirmed": len(confirmed),
            "pending": len(pending),
        },
        coverage=request.app.state.coverage.coverage(who, None, None).total,
    )


# ---------------------------------------------------------------- dispatch board


@dataclass(frozen=True)
class Row:
    request: ServiceRequest
    service: str
    when: str
    elder: str
    area: str
    volunteer: str
    short: Shortfall | None  # her stored time does not pay for it: nobody can take it now


def _row(
    request: Request[Any, Any, State],
    item: ServiceRequest,
    types: dict[str, ServiceType],
    zone: str,
    names: Names,
    short: Shortfall | None,
) -> Row:
    return Row(
        item,
        service_name(request, types.get(item.service_type_id)),
        window_text(request, item.window_start, item.window_end, zone),
        names.name(item.elder_id),
        names.area(item.elder_id),
        names.name(item.volunteer_id),
        short,
    )


@get("/desk/dispatch", sync_to_thread=True, include_in_schema=False)
def dispatch_board(
    request: Request[Any, Any, State], done: Annotated[str | None, QueryParameter()] = None
) -> Response[Any]:
    who = staff_or_refusal(request)
    if not isinstance(who, Principal):
        return who
    return render(request, "desk/dispatch.html", who, done=done, **_board(request, who))


def _board(request: Request[Any, Any, State], principal: Principal) -> dict[str, Any]:
    """Open and assigned requests of the caller's organisations, by local day, then service."""
    care = care_of(request)
    types = types_of(care, principal)
    zone = care.policy(principal.bank_id).timezone
    names = Names(request, principal)
    mine = principal.orgs()
    items = [
        r
        for status in (RequestStatus.OPEN, RequestStatus.ASSIGNED)
        for r in care.list_requests(principal, status.value)
        if r.org_id in mine or principal.is_bank_admin
    ]
    local = ZoneInfo(zone)
    items.sort(
        key=lambda r: (r.window_start.astimezone(local).date(), r.service_type_id, r.window_start)
    )
    stuck = care.shortfalls(items)
    days: dict[date, list[Row]] = {}
    for item in items:
        days.setdefault(item.window_start.astimezone(local).date(), []).append(
            _row(request, item, types, zone, names, stuck.get(item.id))
        )
    return {"days": [(day_text(request, d), rows) for d, rows in days.items()]}


@dataclass(frozen=True)
class Suggestion:
    member_id: str
    name: str
    phone_tail: str  # last digits of the masked phone: tells apart volunteers masked alike
    area: str
    free: bool
    load: int  # minutes on the request's day in the whole bank: logged, and assigned


def suggestions(
    request: Request[Any, Any, State], principal: Principal, item: ServiceRequest
) -> tuple[list[Suggestion], int]:
    """Volunteers of the caller's organisations, free in the request's window first, then the
    least loaded on its day, with the bank's daily cap beside them. The load is the bank's
    (``CareService.day_load``): minutes the daily cap counts, in every organisation, and
    requests assigned to them that day, so a volunteer busy elsewhere is not sent past it."""
    care = care_of(request)
    volunteers = [
        v
        for v in accounts_of(request).list_members(principal, None, 200, 0)
        if v.member.is_volunteer
        and v.member.status is MemberStatus.ACTIVE
        and v.member.id != item.elder_id
    ]
    load = care.day_load(principal, item.id, [v.member.id for v in volunteers])
    found = [
        Suggestion(
            v.member.id,
            str(v.personal.get("name") or f"…{v.member.id[-4:]}"),
            str(v.personal.get("phone") or "")[-4:],
            str(v.personal.get("address") or ""),
            v.member.id not in load.busy,
            load.logged.get(v.member.id, 0) + load.assigned.get(v.member.id, 0),
        )
        for v in volunteers
    ]
    found.sort(key=lambda s: (not s.free, s.load, s.name))
    return found, care.policy(principal.bank_id).daily_cap_minutes


@get("/desk/dispatch/{request_id:str}", sync_to_thread=True, include_in_schema=False)
def dispatch_one(request: Request[Any, Any, State], request_id: ItemId) -> Response[Any]:
    who = staff_or_refusal(request)
    if not isinstance(who, Principal):
        return who
    return _dispatch_page(request, who, request_id)


def _dispatch_page(
    request: Request[Any, Any, State], principal: Principal, request_id: str
) -> Template:
    return render(
        request, "desk/assign.html", principal, **_dispatch_context(request, principal, request_id)
    )


def _dispatch_context(
    request: Request[Any, Any, State], principal: Principal, request_id: str
) -> dict[str, Any]:
    care = care_of(request)
    item = care.get_request(principal, request_id)
    zone = care.policy(principal.bank_id).timezone
    short = care.shortfalls([item]).get(item.id)
    names = Names(request, principal)
    row = _row(request, item, types_of(care, principal), zone, names, short)
    found, cap = suggestions(request, principal, item)
    return {"row": row, "suggestions": found, "cap": cap}


@post("/desk/dispatch/{request_id:str}/assign", sync_to_thread=True, include_in_schema=False)
def assign(request: Request[Any, Any, State], request_id: ItemId, data: Form) -> Response[Any]:
    """Assign, or reassign: an assigned request is given back first (``withdraw``, as staff do
    through the API), then assigned to the chosen volunteer."""
    who = staff_or_refusal(request)
    if not isinstance(who, Principal):
        return who
    care = care_of(request)
    try:
        volunteer_id = data.get("volunteer_id", "")
        if not volunteer_id:
            raise InvalidInput(N_("choose a volunteer"), field="volunteer_id")
        current = care.get_request(who, request_id)
        if current.status is RequestStatus.ASSIGNED:
            if current.volunteer_id == volunteer_id:
                return Redirect("/desk/dispatch?done=assigned", status_code=303)
            care.withdraw(who, request_id)
        care.assign(who, request_id, volunteer_id)
    except (AccountsError, CareError) as exc:
        return refusal(
            request, exc, "desk/assign.html", who, **_dispatch_context(request, who, request_id)
        )
    return Redirect("/desk/dispatch?done=assigned", status_code=303)


@post("/desk/dispatch/{request_id:str}/cancel", sync_to_thread=True, include_in_schema=False)
def cancel(request: Request[Any, Any, State], request_id: ItemId, data: Form) -> Response[Any]:
    who = staff_or_refusal(request)
    if not isinstance(who, Principal):
        return who
    try:
        care_of(request).cancel(who, request_id, data.get("reason", "").strip())
    except (AccountsError, CareError) as exc:
        return refusal(
            request, exc, "desk/assign.html", who, **_dispatch_context(request, who, request_id)
        )
    return Redirect("/desk/dispatch?done=cancelled", status_code=303)


# ---------------------------------------------------------------- records to act on


@dataclass(frozen=True)
class RecordRow:
    record: ServiceRecord
    service: str
    when: str
    elder: str
    volunteer: str
    mine: bool  # confirmed by this very caller: someone else verifies


def _records(request: Request[Any, Any, State], principal: Principal) -> dict[str, Any]:
    care = care_of(request)
    types = types_of(care, principal)
    zone = care.policy(principal.bank_id).timezone
    names = Names(request, principal)
    mine = principal.orgs()

    def rows(status: RecordStatus) -> list[RecordRow]:
        return [
            RecordRow(
                r,
                service_name(request, types.get(r.service_type_id)),
                window_text(request, r.check_in, r.check_out, zone),
                names.name(r.elder_id),
                names.name(r.volunteer_id),
                r.confirmed_by == principal.user_id,
            )
            for r in care.list_records(principal, status.value)
            if r.org_id in mine
        ]

    user, _ = accounts_of(request).me(principal)
    return {
        "logged": rows(RecordStatus.LOGGED),
        "confirmed": rows(RecordStatus.CONFIRMED),
        "stepped_up": principal.second_factor,
        # Without a second factor the step-up can only fail: say whom to ask instead.
        "totp_enrolled": bool(user and user.totp_enabled),
        "org_admin": bool(principal.orgs(Role.ORG_ADMIN)),
    }


@get("/desk/records", sync_to_thread=True, include_in_schema=False)
def records(
    request: Request[Any, Any, State], done: Annotated[str | None, QueryParameter()] = None
) -> Response[Any]:
    who = staff_or_refusal(request)
    if not isinstance(who, Principal):
        return who
    return render(request, "desk/records.html", who, done=done, **_records(request, who))


def _record_refusal(
    request: Request[Any, Any, State],
    principal: Principal,
    exc: AccountsError | CareError,
    record_id: str,
) -> Template:
    return refusal(
        request,
        exc,
        "desk/records.html",
        principal,
        error_record=record_id,
        **_records(request, principal),
    )


@post("/desk/records/{record_id:str}/confirm", sync_to_thread=True, include_in_schema=False)
def confirm_for_elder(request: Request[Any, Any, State], record_id: ItemId) -> Response[Any]:
    """Staff confirm for an elder without a phone: recorded as ``staff_for_elder``, and the
    audit event names the elder as the one acted for (as ``POST /v1/records/{id}/confirm``)."""
    who = staff_or_refusal(request)
    if not isinstance(who, Principal):
        return who
    try:
        record = care_of(request).confirm(who, record_id, None)
    except (AccountsError, CareError) as exc:
        return _record_refusal(request, who, exc, record_id)
    if record.elder_id != who.member_id:
        request.scope["state"][ON_BEHALF_STATE_KEY] = record.elder_id
    return Redirect("/desk/records?done=confirmed", status_code=303)


@post("/desk/records/{record_id:str}/verify", sync_to_thread=True, include_in_schema=False)
def verify(request: Request[Any, Any, State], record_id: ItemId) -> Response[Any]:
    who = staff_or_refusal(request)
    if not isinstance(who, Principal):
        return who
    try:
        care_of(request).verify(who, record_id)
    except (AccountsError, CareError) as exc:
        return _record_refusal(request, who, exc, record_id)
    return Redirect("/desk/records?done=verified", status_code=303)


@post("/desk/records/{record_id:str}/reject", sync_to_thread=True, include_in_schema=False)
def reject(request: Request[Any, Any, State], record_id: ItemId, data: Form) -> Response[Any]:
    who = staff_or_refusal(request)
    if not isinstance(who, Principal):
        return who
    try:
        care_of(request).reject(who, record_id, data.get("reason", "").strip())
    except (AccountsError, CareError) as exc:
        return _record_refusal(request, who, exc, record_id)
    return Redirect("/desk/records?done=rejected", status_code=303)


@post("/desk/step-up", sync_to_thread=True, include_in_schema=False)
def step_up(request: Request[Any, Any, State], data: Form) -> Response[Any]:
    """The TOTP step-up for verifying: the same login as ``POST /v1/auth/login`` with the
    one-time code opens a session that carries the second factor; the old one is ended."""
    who = staff_or_refusal(request)
    if not isinstance(who, Principal):
        return who
    accounts = accounts_of(request)
    user, _ = accounts.me(who)
    target = safe_next(request, data.get("next") or "/desk/records")
    try:
        if user is None:
            raise Forbidden(NOT_STAFF)
        code = data.get("totp", "").strip()
        if not code:
            raise InvalidInput(N_("enter the 6-digit code from your authenticator"), field="totp")
        result = accounts.login(
            user.username,
            data.get("password", ""),
            code,
            request.client.host if request.client else "unknown",
        )
    except AccountsError as exc:
        return refusal(
            request,
            exc,
            "desk/records.html",
            who,
            step_up_error=True,
            **_records(request, who),
        )
    accounts.logout(who)
    response = Redirect(target, status_code=303)
    response.cookies.append(session_cookie(request, result))
    return response


DESK_HANDLERS = [
    desk_home,
    dispatch_board,
    dispatch_one,
    assign,
    cancel,
    records,
    confirm_for_elder,
    verify,
    reject,
    step_up,
]
