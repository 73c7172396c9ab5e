"""The elder's pages (长辈版 by default) and her family's: ask for a service, say that the
volunteer came (one button, or a code to read out), stored time and what it paid for, the
requests and cancelling one. Every page is about one elder, named in its path, whom the
caller is or acts for as a family proxy; each action calls the same service method as its
``/v1`` route, so the rules, refusals and audit events (``on_behalf`` included) are the API's.

This module holds what the pages share and the elder's home; asking is ``web.elder_ask``, the
rest (confirming, requests, stored time) ``web.elder_visits``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.params import PathParameter
from litestar.response import Redirect, Template

from accounts.errors import AccountsError
from accounts.model import Principal, Role
from care.errors import CareError
from care.model import Category, RecordStatus, RequestStatus, ServiceType
from web.i18n import N_
from web.names import proxied_names
from web.pages import language_of, refusal, render, to_login
from web.session import ON_BEHALF_STATE_KEY, accounts_of, viewer
from web.volunteer import care_of, hours_text, translate

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
    elders: list[Elder] = []
    me = principal.acting_member_id
    if me is not None and principal.has(Role.ELDER):
        elders.append(Elder(me, _name(request, principal, me), False))
    proxied = [m for m in sorted(principal.proxied_members()) if m != me]
    names = proxied_names(request, principal, proxied)
    return elders + [Elder(m, names[m], True) for m in proxied]


def _name(request: Request[Any, Any, State], principal: Principal, member_id: str) -> str:
    """Her own name, for the elder herself (her family's names are ``web.names``')."""
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
        about=subject.elder.id,
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
        about=who.elder.id,
        elder_of_page=who.elder,
        switch=who.others > 0,
        base_path=f"/elder/{who.elder.id}",
        **context,
    )


def zone_of(request: Request[Any, Any, State], principal: Principal) -> ZoneInfo:
    return ZoneInfo(care_of(request).policy(principal.bank_id).timezone)


def day_words(request: Request[Any, Any, State], day: date, today: date) -> str:
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
    day = day_words(request, a.date(), today)
    for _key, words, first, last in PARTS:
        end_day = a.date() + timedelta(days=1) if last == 24 else a.date()
        if (a.time(), b) == (time(first), datetime.combine(end_day, time(last % 24), zone)):
            return f"{day} · {translate(request, words)}"
    return f"{day} {a:%H:%M}–{b:%H:%M}"


def time_words(request: Request[Any, Any, State], minutes: int) -> str:
    """A length without its sign and, under an hour, without "0 h" ("-0 h 30 min" read oddly)."""
    if abs(minutes) < 60:
        return translate(request, "%(n)s minutes", n=abs(minutes))
    return hours_text(request, abs(minutes))


def service_names(
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


ELDER_HANDLERS = [choose, elder_home]
