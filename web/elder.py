"""The elder's pages (长辈版 by default) and her family's: ask for a service, say that the
volunteer came (one button, or a code to read out), stored time and what it paid for, the
requests and cancelling one. Every page is about one elder, named in its path, whom the
caller is or acts for as a family proxy; each action calls the same service method as its
``/v1`` route, so the rules, refusals and audit events (``on_behalf`` included) are the API's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.params import PathParameter, QueryParameter
from litestar.response import Redirect, Template

from accounts.errors import AccountsError, InvalidInput
from accounts.model import Principal, Role
from care.base import weighted
from care.errors import CareError
from care.model import Category, RecordStatus, RequestStatus, ServiceRequest, ServiceType
from web.i18n import N_
from web.once import new_once_key, once
from web.pages import Form, language_of, refusal, render, to_login
from web.session import ON_BEHALF_STATE_KEY, accounts_of, viewer
from web.volunteer import HISTORY_LIMIT, care_of, hours_text, translate

MemberId = Annotated[str, PathParameter(max_length=64)]
ItemId = Annotated[str, PathParameter(max_length=64)]
Code = Annotated[str, PathParameter(max_length=64)]
DAYS_AHEAD = 7
# Parts of the day as (key, words, first hour, end hour) in the bank's time zone. "Any time"
# lets the centre send whoever is free that day.
PARTS = (
    ("morning", N_("Morning (8–12)"), 8, 12),
    ("afternoon", N_("Afternoon (12–18)"), 12, 18),
    ("evening", N_("Evening (18–21)"), 18, 21),
    ("any", N_("Any time that day"), 0, 24),
)
LENGTHS = ((30, N_("Half an hour")), (60, N_("One hour")), (120, N_("Two hours")))
REASONS = (
    ("not-needed", N_("I do not need it any more")),
    ("time", N_("The time does not suit me")),
    ("family", N_("My family will do it")),
    ("health", N_("I am in hospital or unwell")),
    ("other", N_("Another reason")),
)
STATES = {
    RequestStatus.OPEN: N_("Waiting for a volunteer"),
    RequestStatus.ASSIGNED: N_("A volunteer is coming"),
    RequestStatus.COMPLETED: N_("Completed"),
    RequestStatus.CANCELLED: N_("Cancelled"),
}
# One icon a category (web/static/services.svg); emergencies go to the phone, not a form.
ICONS = {c.value: c.value for c in Category if c is not Category.EMERGENCY}
WORDS = (
    N_("Sunday"),
    N_("Monday"),
    N_("Tuesday"),
    N_("Wednesday"),
    N_("Thursday"),
    N_("Friday"),
    N_("Saturday"),
)


@dataclass(frozen=True)
class Elder:
    """The elder a page is about, as the caller may see her."""

    id: str
    name: str
    proxy: bool  # the caller acts for her as family


@dataclass(frozen=True)
class Subject:
    principal: Principal
    elder: Elder
    others: int  # further elders the caller can switch to


def elders_of(request: Request[Any, Any, State], principal: Principal) -> list[Elder]:
    """The caller herself if she is an (active) elder, then everyone she is proxy for."""
    ids: list[tuple[str, bool]] = []
    me = principal.acting_member_id
    if me is not None and principal.has(Role.ELDER):
        ids.append((me, False))
    ids += [(m, True) for m in sorted(principal.proxied_members()) if m != me]
    return [Elder(m, _name(request, principal, m), proxy) for m, proxy in ids]


def _name(request: Request[Any, Any, State], principal: Principal, member_id: str) -> str:
    """Her own name for the elder; the masked name (王*英) for her family."""
    try:
        name = accounts_of(request).get_member(principal, member_id).personal.get("name")
    except AccountsError:
        name = None
    return name if isinstance(name, str) and name else translate(request, "an elder")


def subject_or_page(request: Request[Any, Any, State], member_id: str) -> Subject | Response[Any]:
    """The caller and the elder of the page, or the page that says why not: the login page,
    or 404 for an elder the caller neither is nor acts for (as the API's NotFound)."""
    principal = viewer(request)
    if principal is None:
        return to_login(request)
    if member_id != principal.member_id:
        # As the API's ``elder_id`` in a body: the audit event names whom this was for.
        request.scope["state"][ON_BEHALF_STATE_KEY] = member_id
    elders = elders_of(request, principal)
    elder = next((e for e in elders if e.id == member_id), None)
    if elder is None:
        return render(
            request,
            "error.html",
            principal,
            status=404,
            title=translate(request, "Not found"),
            detail=translate(request, "You do not act for this person."),
        )
    return Subject(principal, elder, len(elders) - 1)


def page(
    request: Request[Any, Any, State], subject: Subject, template: str, **context: Any
) -> Template:
    return render(
        request,
        template,
        subject.principal,
        elder_of_page=subject.elder,
        switch=subject.others > 0,
        base_path=f"/elder/{subject.elder.id}",
        **context,
    )


def refused(
    request: Request[Any, Any, State],
    exc: AccountsError | CareError,
    who: Subject,
    template: str,
    **context: Any,
) -> Template:
    """The form again with the service's refusal, in the page's language."""
    return refusal(
        request,
        exc,
        template,
        who.principal,
        elder_of_page=who.elder,
        switch=who.others > 0,
        base_path=f"/elder/{who.elder.id}",
        **context,
    )


def _zone(request: Request[Any, Any, State], principal: Principal) -> ZoneInfo:
    return ZoneInfo(care_of(request).policy(principal.bank_id).timezone)


def _day_words(request: Request[Any, Any, State], day: date, today: date) -> str:
    zh = language_of(request) == "zh-CN"
    weekday = translate(request, WORDS[(day.weekday() + 1) % 7])
    dated = f"{day.month}月{day.day}日 {weekday}" if zh else f"{weekday} {day.day} {day:%b}"
    if day == today:
        return translate(request, "Today, %(day)s", day=dated)
    if day == today + timedelta(days=1):
        return translate(request, "Tomorrow, %(day)s", day=dated)
    return dated


def when_words(
    request: Request[Any, Any, State], zone: ZoneInfo, start: datetime, end: datetime
) -> str:
    """A window in the bank's time zone, in words where it is one of the parts of a day."""
    a, b = start.astimezone(zone), end.astimezone(zone)
    today = datetime.now(zone).date()
    day = _day_words(request, a.date(), today)
    for _key, words, first, last in PARTS:
        end_day = a.date() + timedelta(days=1) if last == 24 else a.date()
        if (a.time(), b) == (time(first), datetime.combine(end_day, time(last % 24), zone)):
            return f"{day} · {translate(request, words)}"
    return f"{day} {a:%H:%M}–{b:%H:%M}"


def _service_names(
    request: Request[Any, Any, State], principal: Principal
) -> dict[str, ServiceType]:
    return {t.id: t for t in care_of(request).catalogue(principal, include_inactive=True)}


def service_name(request: Request[Any, Any, State], kind: ServiceType | None) -> str:
    if kind is None:
        return "?"
    return kind.name_zh if language_of(request) == "zh-CN" else kind.name_en


# ---------------------------------------------------------------- who and home


@get("/elder", sync_to_thread=True, include_in_schema=False)
def choose(request: Request[Any, Any, State]) -> Response[Any]:
    """Straight to her page for an elder or a family with one elder; a switcher otherwise."""
    principal = viewer(request)
    if principal is None:
        return to_login(request)
    elders = elders_of(request, principal)
    if not elders:
        return render(
            request,
            "error.html",
            principal,
            status=403,
            title=translate(request, "Not allowed"),
            detail=translate(request, "These pages are for elders and their families."),
        )
    if len(elders) == 1:
        return Redirect(f"/elder/{elders[0].id}", status_code=303)
    return render(request, "elder/choose.html", principal, elders=elders)


@get("/elder/{member_id:str}", sync_to_thread=True, include_in_schema=False)
def elder_home(request: Request[Any, Any, State], member_id: MemberId) -> Response[Any]:
    who = subject_or_page(request, member_id)
    if not isinstance(who, Subject):
        return who
    care = care_of(request)
    balance = care.balance(who.principal, member_id)
    waiting = [
        r
        for r in care.list_records(who.principal, RecordStatus.LOGGED.value)
        if r.elder_id == member_id
    ]
    return page(
        request,
        who,
        "elder/home.html",
        available=hours_text(request, balance.available),
        waiting=len(waiting),
    )


# ---------------------------------------------------------------- asking for a service


def _catalogue(request: Request[Any, Any, State], principal: Principal) -> list[ServiceType]:
    return [t for t in care_of(request).catalogue(principal) if t.category.value in ICONS]


@get("/elder/{member_id:str}/ask", sync_to_thread=True, include_in_schema=False)
def ask(request: Request[Any, Any, State], member_id: MemberId) -> Response[Any]:
    who = subject_or_page(request, member_id)
    if not isinstance(who, Subject):
        return who
    services = [
        (t.code, service_name(request, t), ICONS[t.category.value])
        for t in _catalogue(request, who.principal)
    ]
    return page(request, who, "elder/ask.html", services=services)


def _kind(request: Request[Any, Any, State], principal: Principal, code: str) -> ServiceType:
    kind = next((t for t in _catalogue(request, principal) if t.code == code), None)
    if kind is None:
        raise InvalidInput(N_("choose a service from the list"), field="service_code")
    return kind


def _days(request: Request[Any, Any, State], zone: ZoneInfo) -> list[tuple[str, str]]:
    today = datetime.now(zone).date()
    return [
        (day.isoformat(), _day_words(request, day, today))
        for day in (today + timedelta(days=n) for n in range(DAYS_AHEAD))
    ]


def _ask_context(
    request: Request[Any, Any, State], subject: Subject, kind: ServiceType
) -> dict[str, Any]:
    zone = _zone(request, subject.principal)
    return {
        "kind": kind,
        "service": service_name(request, kind),
        "icon": ICONS[kind.category.value],
        "days": _days(request, zone),
        "parts": [(key, words) for key, words, _, _ in PARTS],
        "lengths": LENGTHS,
    }


@get("/elder/{member_id:str}/ask/{code:str}", sync_to_thread=True, include_in_schema=False)
def ask_when(request: Request[Any, Any, State], member_id: MemberId, code: Code) -> Response[Any]:
    who = subject_or_page(request, member_id)
    if not isinstance(who, Subject):
        return who
    kind = _kind(request, who.principal, code)
    return page(request, who, "elder/when.html", form={}, **_ask_context(request, who, kind))


def _window(zone: ZoneInfo, day_text: str, part: str) -> tuple[datetime, datetime]:
    """The chosen day and part of the day as a window, from today to a week ahead."""
    try:
        day = date.fromisoformat(day_text)
    except ValueError as exc:
        raise InvalidInput(N_("choose a day"), field="day") from exc
    today = datetime.now(zone).date()
    if not today <= day < today + timedelta(days=DAYS_AHEAD):
        raise InvalidInput(N_("choose a day"), field="day")
    found = next(((first, last) for key, _, first, last in PARTS if key == part), None)
    if found is None:
        raise InvalidInput(N_("choose a part of the day"), field="part")
    first, last = found
    start = datetime.combine(day, time(first), zone)
    return start, start + timedelta(hours=last - first)


def _length(text: str) -> int:
    if text not in {str(m) for m, _ in LENGTHS}:
        raise InvalidInput(N_("choose how long"), field="minutes")
    return int(text)


@post("/elder/{member_id:str}/ask/{code:str}", sync_to_thread=True, include_in_schema=False)
def ask_post(
    request: Request[Any, Any, State], member_id: MemberId, code: Code, data: Form
) -> Response[Any]:
    """Two steps: the first post shows the request, what it costs and the stored time after;
    the second (``confirmed``) asks (``CareService.create_request``, as ``POST
    /v1/requests``), once for the check step's one-time key however often it is posted."""
    who = subject_or_page(request, member_id)
    if not isinstance(who, Subject):
        return who
    care = care_of(request)
    form = {k: data.get(k, "") for k in ("day", "part", "minutes", "pay")}
    kind = _kind(request, who.principal, code)  # a refusal page of its own (error_page)
    context = _ask_context(request, who, kind)
    try:
        zone = _zone(request, who.principal)
        start, end = _window(zone, form["day"], form["part"])
        minutes = _length(form["minutes"])
        if form["pay"] not in ("yes", "no"):
            raise InvalidInput(N_("say whether to pay with stored time"), field="pay")
        redeem = form["pay"] == "yes"
        if data.get("confirmed") != "1":
            balance = care.balance(who.principal, member_id)
            cost = weighted(minutes, kind.weight_permille)
            return page(
                request,
                who,
                "elder/when.html",
                form=form,
                check={
                    "when": when_words(request, zone, start, end),
                    "length": hours_text(request, minutes),
                    "pay": redeem,
                    "cost": hours_text(request, cost),
                    "now": hours_text(request, balance.available),
                    "after": hours_text(request, balance.available - cost),
                    "short": redeem and balance.available < cost,
                    "once": new_once_key(),
                },
                **context,
            )

        def asked() -> Response[Any]:
            care.create_request(
                who.principal, member_id, kind.code, start, end, minutes, None, redeem
            )
            return Redirect(f"/elder/{member_id}/requests?asked=1", status_code=303)

        return once(request, who.principal, data, asked)
    except (AccountsError, CareError) as exc:
        return refused(request, exc, who, "elder/when.html", form=form, **context)


# ---------------------------------------------------------------- did the volunteer come?


@get("/elder/{member_id:str}/confirm", sync_to_thread=True, include_in_schema=False)
def confirm_page(
    request: Request[Any, Any, State],
    member_id: MemberId,
    done: Annotated[str | None, QueryParameter()] = None,
) -> Response[Any]:
    who = subject_or_page(request, member_id)
    if not isinstance(who, Subject):
        return who
    return page(request, who, "elder/confirm.html", done=done == "1", **_waiting(request, who))


def _waiting(request: Request[Any, Any, State], who: Subject) -> dict[str, Any]:
    care = care_of(request)
    zone = _zone(request, who.principal)
    names = _service_names(request, who.principal)
    records = [
        {
            "id": r.id,
            "service": service_name(request, names.get(r.service_type_id)),
            "when": when_words(request, zone, r.check_in, r.check_out),
            "length": hours_text(request, r.minutes),
        }
        for r in care.list_records(who.principal, RecordStatus.LOGGED.value)
        if r.elder_id == who.elder.id
    ]
    return {"records": records, "once": new_once_key()}


@post(
    "/elder/{member_id:str}/records/{record_id:str}/confirm",
    sync_to_thread=True,
    include_in_schema=False,
)
def confirm(
    request: Request[Any, Any, State], member_id: MemberId, record_id: ItemId, data: Form
) -> Response[Any]:
    """One button: ``CareService.confirm`` without a code, as ``POST /v1/records/{id}/confirm``
    (a family proxy's confirmation names the elder in the audit event's ``on_behalf``). The
    form's one-time key makes a double tap or a resent page confirm once and say so."""
    who = subject_or_page(request, member_id)
    if not isinstance(who, Subject):
        return who

    def confirmed() -> Response[Any]:
        record = care_of(request).confirm(who.principal, record_id, None)
        if record.elder_id != who.principal.member_id:
            request.scope["state"][ON_BEHALF_STATE_KEY] = record.elder_id
        return Redirect(f"/elder/{member_id}/confirm?done=1", status_code=303)

    try:
        return once(request, who.principal, data, confirmed)
    except (AccountsError, CareError) as exc:
        return refused(request, exc, who, "elder/confirm.html", **_waiting(request, who))


@post("/elder/{member_id:str}/code", sync_to_thread=True, include_in_schema=False)
def code(request: Request[Any, Any, State], member_id: MemberId) -> Response[Any]:
    """A code to read to the volunteer (``POST /v1/members/{id}/confirmation-codes``); shown
    once, on the answer to this post."""
    who = subject_or_page(request, member_id)
    if not isinstance(who, Subject):
        return who
    made, expires = care_of(request).create_confirmation_code(who.principal, member_id)
    until = expires.astimezone(_zone(request, who.principal))
    return page(request, who, "elder/code.html", code=made, until=f"{until:%H:%M}")


# ---------------------------------------------------------------- requests and cancelling


@dataclass(frozen=True)
class Asked:
    request: ServiceRequest
    service: str
    when: str
    state: str
    cancellable: bool


@get("/elder/{member_id:str}/requests", sync_to_thread=True, include_in_schema=False)
def requests(
    request: Request[Any, Any, State],
    member_id: MemberId,
    asked: Annotated[str | None, QueryParameter()] = None,
    cancelled: Annotated[str | None, QueryParameter()] = None,
) -> Response[Any]:
    who = subject_or_page(request, member_id)
    if not isinstance(who, Subject):
        return who
    care = care_of(request)
    zone = _zone(request, who.principal)
    names = _service_names(request, who.principal)
    mine = sorted(
        (r for r in care.list_requests(who.principal, None) if r.elder_id == member_id),
        key=lambda r: r.window_start,
        reverse=True,
    )
    items = [
        Asked(
            r,
            service_name(request, names.get(r.service_type_id)),
            when_words(request, zone, r.window_start, r.window_end),
            translate(request, STATES[r.status]),
            r.status in (RequestStatus.OPEN, RequestStatus.ASSIGNED),
        )
        for r in mine[:50]
    ]
    return page(
        request,
        who,
        "elder/requests.html",
        items=items,
        asked=asked == "1",
        cancelled=cancelled == "1",
    )


def _cancel_context(
    request: Request[Any, Any, State], who: Subject, request_id: str
) -> dict[str, Any]:
    care = care_of(request)
    item = care.get_request(who.principal, request_id)
    if item.elder_id != who.elder.id:
        raise InvalidInput(N_("this request is not for this person"), field="request_id")
    names = _service_names(request, who.principal)
    zone = _zone(request, who.principal)
    return {
        "item": item,
        "service": service_name(request, names.get(item.service_type_id)),
        "when": when_words(request, zone, item.window_start, item.window_end),
        "reasons": REASONS,
    }


@get(
    "/elder/{member_id:str}/requests/{request_id:str}/cancel",
    sync_to_thread=True,
    include_in_schema=False,
)
def cancel_page(
    request: Request[Any, Any, State], member_id: MemberId, request_id: ItemId
) -> Response[Any]:
    who = subject_or_page(request, member_id)
    if not isinstance(who, Subject):
        return who
    return page(request, who, "elder/cancel.html", **_cancel_context(request, who, request_id))


@post(
    "/elder/{member_id:str}/requests/{request_id:str}/cancel",
    sync_to_thread=True,
    include_in_schema=False,
)
def cancel(
    request: Request[Any, Any, State], member_id: MemberId, request_id: ItemId, data: Form
) -> Response[Any]:
    """With a reason from the list (``CareService.cancel``, as ``POST
    /v1/requests/{id}/cancel``); the reason is kept in the page's language."""
    who = subject_or_page(request, member_id)
    if not isinstance(who, Subject):
        return who
    context = _cancel_context(request, who, request_id)
    try:
        words = dict(REASONS).get(data.get("reason", ""))
        if words is None:
            raise InvalidInput(N_("choose a reason"), field="reason")
        care_of(request).cancel(who.principal, request_id, translate(request, words))
    except (AccountsError, CareError) as exc:
        return refused(request, exc, who, "elder/cancel.html", **context)
    return Redirect(f"/elder/{member_id}/requests?cancelled=1", status_code=303)


# ---------------------------------------------------------------- stored time


def _local(stamp: str, zone: ZoneInfo) -> str:
    """A log entry's UTC time stamp in the bank's time zone."""
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return f"{moment.astimezone(zone):%Y-%m-%d %H:%M}"


@get("/elder/{member_id:str}/time", sync_to_thread=True, include_in_schema=False)
def stored_time(request: Request[Any, Any, State], member_id: MemberId) -> Response[Any]:
    """Stored time in large text and what it was spent on (``balance``, ``history``)."""
    who = subject_or_page(request, member_id)
    if not isinstance(who, Subject):
        return who
    care = care_of(request)
    balance = care.balance(who.principal, member_id)
    codes = {t.code: t for t in _service_names(request, who.principal).values()}
    zone = _zone(request, who.principal)
    history = [
        {
            "amount": hours_text(request, item.minutes),
            "kind": item.kind,
            "service": service_name(request, codes.get(item.service)) if item.service else None,
            "time": _local(item.time, zone),
        }
        for item in care.history(who.principal, member_id, HISTORY_LIMIT, None)
    ]
    return page(
        request,
        who,
        "elder/time.html",
        available=hours_text(request, balance.available),
        reserved=hours_text(request, balance.reserved) if balance.reserved else None,
        history=history,
    )


ELDER_HANDLERS = [
    choose,
    elder_home,
    ask,
    ask_when,
    ask_post,
    confirm_page,
    confirm,
    code,
    requests,
    cancel_page,
    cancel,
    stored_time,
]
