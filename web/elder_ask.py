"""The elder's pages, asking for a service: the catalogue as big buttons, then a day, a part of
the day and whether to pay with stored time, shown before confirming (``web.elder``)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.params import QueryParameter
from litestar.response import Redirect

from accounts.errors import AccountsError, InvalidInput
from accounts.model import Principal
from care.errors import CareError
from care.model import ServiceType
from ledger.kinds import weighted
from web.elder import (
    DAYS_AHEAD,
    ICONS,
    LENGTHS,
    PARTS,
    Code,
    MemberId,
    Subject,
    day_words,
    page,
    refused,
    service_name,
    subject_or_page,
    time_words,
    when_words,
    zone_of,
)
from web.i18n import N_
from web.once import new_once_key, once
from web.pages import Form
from web.volunteer import care_of, hours_text, translate


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


CHOICES = ("day", "part", "minutes", "pay")
Choice = Annotated[str, QueryParameter(max_length=16)]


def _now(request: Request[Any, Any, State], zone: ZoneInfo) -> datetime:
    """The service's clock in the bank's time zone: the parts of today that are over."""
    return care_of(request).clock().astimezone(zone)


def _ended(now: datetime, day: date, last: int) -> bool:
    """Whether the part of ``day`` that ends at hour ``last`` is over: nobody could come."""
    return datetime.combine(day, time(0), now.tzinfo) + timedelta(hours=last) <= now


def _days(request: Request[Any, Any, State], today: date) -> list[tuple[str, str]]:
    return [
        (day.isoformat(), day_words(request, day, today))
        for day in (today + timedelta(days=n) for n in range(DAYS_AHEAD))
    ]


def _ask_context(
    request: Request[Any, Any, State], subject: Subject, kind: ServiceType
) -> dict[str, Any]:
    """The choices; a part of today that is over is marked so, and is not the first choice."""
    now = _now(request, zone_of(request, subject.principal))
    parts = [(key, words, _ended(now, now.date(), last)) for key, words, _, last in PARTS]
    return {
        "kind": kind,
        "service": service_name(request, kind),
        "icon": ICONS[kind.category.value],
        "today": now.date().isoformat(),
        "days": _days(request, now.date()),
        "parts": parts,
        "first_part": next(key for key, _, over in parts if not over),
        "lengths": LENGTHS,
    }


def _choices_path(request: Request[Any, Any, State], form: dict[str, str]) -> str:
    """This form's address with her choices, for "change it" and the header's buttons."""
    return f"{request.url.path}?{urlencode(form)}"


@get("/elder/{member_id:str}/ask/{code:str}", sync_to_thread=True, include_in_schema=False)
def ask_when(request: Request[Any, Any, State], member_id: MemberId, code: Code) -> Response[Any]:
    who = subject_or_page(request, member_id)
    if not isinstance(who, Subject):
        return who
    kind = _kind(request, who.principal, code)
    # Back from the check step ("No, change it") or after a header button: her choices again.
    form = {k: request.query_params.get(k, "") for k in CHOICES}
    return page(request, who, "elder/when.html", form=form, **_ask_context(request, who, kind))


def _window(now: datetime, day_text: str, part: str) -> tuple[datetime, datetime]:
    """The chosen day and part of the day as a window, from today to a week ahead, and not
    over: the desk may record a visit already made, an elder asks for one to come."""
    try:
        day = date.fromisoformat(day_text)
    except ValueError as exc:
        raise InvalidInput(N_("choose a day"), field="day") from exc
    if not now.date() <= day < now.date() + timedelta(days=DAYS_AHEAD):
        raise InvalidInput(N_("choose a day"), field="day")
    found = next(((first, last) for key, _, first, last in PARTS if key == part), None)
    if found is None:
        raise InvalidInput(N_("choose a part of the day"), field="part")
    first, last = found
    if _ended(now, day, last):
        raise InvalidInput(
            N_("this part of today is over: choose a later part of the day or another day"),
            field="part",
        )
    start = datetime.combine(day, time(first), now.tzinfo)
    return start, start + timedelta(hours=last - first)


def _length(text: str) -> int:
    if text not in {str(m) for m, _ in LENGTHS}:
        raise InvalidInput(N_("choose how long"), field="minutes")
    return int(text)


def _choices(now: datetime, form: dict[str, str]) -> tuple[datetime, datetime, int, bool]:
    """The window, minutes and whether to pay of the form's answers, or the refusal of one."""
    start, end = _window(now, form["day"], form["part"])
    minutes = _length(form["minutes"])
    if form["pay"] not in ("yes", "no"):
        raise InvalidInput(N_("say whether to pay with stored time"), field="pay")
    return start, end, minutes, form["pay"] == "yes"


@post("/elder/{member_id:str}/ask/{code:str}", sync_to_thread=True, include_in_schema=False)
def ask_post(
    request: Request[Any, Any, State], member_id: MemberId, code: Code, data: Form
) -> Response[Any]:
    """Two steps: the first post leads to the check step (a page of its own, so Back, a header
    button or logging in again come back to it with her choices, never to a resent form); the
    second (``confirmed``) asks (``CareService.create_request``, as ``POST /v1/requests``),
    once for the check step's one-time key however often it is posted."""
    who = subject_or_page(request, member_id)
    if not isinstance(who, Subject):
        return who
    care = care_of(request)
    form = {k: data.get(k, "") for k in CHOICES}
    kind = _kind(request, who.principal, code)  # a refusal page of its own (error_page)
    try:
        zone = zone_of(request, who.principal)
        start, end, minutes, redeem = _choices(_now(request, zone), form)
        if data.get("confirmed") != "1":
            return Redirect(
                f"/elder/{member_id}/ask/{code}/check?{urlencode(form)}", status_code=303
            )

        def asked() -> Response[Any]:
            care.create_request(
                who.principal, member_id, kind.code, start, end, minutes, None, redeem
            )
            return Redirect(f"/elder/{member_id}/requests?asked=1", status_code=303)

        return once(request, who.principal, data, asked)
    except (AccountsError, CareError) as exc:
        context = _ask_context(request, who, kind)
        # The header's buttons and "change it" come back to her choices, not the empty form.
        context["return_to"] = context["change"] = _choices_path(request, form)
        return refused(request, exc, who, "elder/when.html", form=form, **context)


@get("/elder/{member_id:str}/ask/{code:str}/check", sync_to_thread=True, include_in_schema=False)
def ask_check(
    request: Request[Any, Any, State],
    member_id: MemberId,
    code: Code,
    day: Choice = "",
    part: Choice = "",
    minutes: Choice = "",
    pay: Choice = "",
) -> Response[Any]:
    """The check step: when, how long, the cost and the stored time now and afterwards."""
    who = subject_or_page(request, member_id)
    if not isinstance(who, Subject):
        return who
    form = {"day": day, "part": part, "minutes": minutes, "pay": pay}
    kind = _kind(request, who.principal, code)
    context = _ask_context(request, who, kind)
    context["change"] = f"/elder/{member_id}/ask/{code}?{urlencode(form)}"
    try:
        zone = zone_of(request, who.principal)
        start, end, length, redeem = _choices(_now(request, zone), form)
    except AccountsError as exc:  # a part of the day gone by since, or a changed address
        return refused(request, exc, who, "elder/when.html", form=form, **context)
    balance = care_of(request).balance(who.principal, member_id)
    cost = weighted(length, kind.weight_permille)
    short = redeem and balance.available < cost
    after = balance.available - cost
    check = {
        "when": when_words(request, zone, start, end),
        "length": hours_text(request, length),
        "pay": redeem,
        "cost": hours_text(request, cost),
        "now": hours_text(request, balance.available),
        "after": translate(request, "%(t)s short", t=time_words(request, after))
        if short
        else hours_text(request, after),
        "short": short,
        "once": new_once_key(),
    }
    return page(request, who, "elder/when.html", form=form, check=check, **context)


# ---------------------------------------------------------------- did the volunteer come?


ASK_HANDLERS = [ask, ask_when, ask_post, ask_check]
