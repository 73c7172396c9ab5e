"""The volunteer's page for giving minutes: to a confirmed relative (a gift) or to the pool for
elders in need (a donation), in two steps — what will happen and the balance after, then done,
once (the one-time key of the first step names the entry)."""

from __future__ import annotations

import secrets
from typing import Any

from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.response import Redirect, Template

from accounts.errors import AccountsError, InvalidInput
from accounts.model import Principal, RelativeStatus
from care.errors import CareError
from web.i18n import N_
from web.pages import Form, refusal, render
from web.session import accounts_of
from web.volunteer import care_of, hours_text, translate, volunteer_or_page


def minutes_asked(data: dict[str, str]) -> int:
    try:
        h = int(data.get("hours") or 0)
        m = int(data.get("minutes") or 0)
    except ValueError as exc:
        raise InvalidInput(N_("hours and minutes are whole numbers"), field="minutes") from exc
    total = h * 60 + m
    if h < 0 or m < 0 or total <= 0:
        raise InvalidInput(N_("give at least one minute"), field="minutes")
    return total


def _relatives(request: Request[Any, Any, State], principal: Principal) -> list[tuple[str, str]]:
    me = principal.acting_member_id or ""
    links = accounts_of(request).list_relatives(principal, me)
    return [
        (other, f"{translate(request, link.relation.value)} …{other[-4:]}")
        for link in links
        if link.status is RelativeStatus.CONFIRMED
        for other in [link.relative_id if link.member_id == me else link.member_id]
    ]


@get("/volunteer/give", sync_to_thread=True, include_in_schema=False)
def give_page(request: Request[Any, Any, State]) -> Response[Any]:
    who = volunteer_or_page(request)
    if not isinstance(who, Principal):
        return who
    return _give(request, who)


def _give(request: Request[Any, Any, State], principal: Principal, **context: Any) -> Template:
    balance = care_of(request).balance(principal, principal.acting_member_id or "")
    return render(
        request,
        "volunteer/give.html",
        principal,
        relatives=_relatives(request, principal),
        available=hours_text(request, balance.available),
        **context,
    )


@post("/volunteer/give", sync_to_thread=True, include_in_schema=False)
def give(request: Request[Any, Any, State], data: Form) -> Response[Any]:
    """Two steps: the first post shows what will happen and the balance after; the second,
    carrying the same one-time key, does it (a repeated post gives nothing twice)."""
    who = volunteer_or_page(request)
    if not isinstance(who, Principal):
        return who
    care = care_of(request)
    me = who.acting_member_id or ""
    to = data.get("to", "pool")
    try:
        minutes = minutes_asked(data)
        if to != "pool" and to not in dict(_relatives(request, who)):
            raise InvalidInput(N_("choose one of your confirmed relatives"), field="to")
        if data.get("confirmed") != "1":
            balance = care.balance(who, me)
            if minutes > balance.available:  # said now, not after "yes, give it"
                raise InvalidInput(N_("that is more than your stored time"), field="minutes")
            return _give(
                request,
                who,
                confirm={
                    "to": to,
                    "to_text": dict(_relatives(request, who)).get(to)
                    or translate(request, "the pool for elders in need"),
                    "hours": data.get("hours") or "0",
                    "minutes": data.get("minutes") or "0",
                    "amount": hours_text(request, minutes),
                    "after": hours_text(request, balance.available - minutes),
                    "key": secrets.token_hex(16),
                },
            )
        key = data.get("key", "")
        if not key.isalnum() or len(key) > 64:
            raise InvalidInput(N_("the confirmation expired; start again"), field="key")
        if to == "pool":
            care.donate(who, me, minutes, f"web-{key}")
        else:
            care.gift(who, me, to, minutes, f"web-{key}")
    except (AccountsError, CareError) as exc:
        return refusal(
            request,
            exc,
            "volunteer/give.html",
            who,
            relatives=_relatives(request, who),
            available=hours_text(request, care.balance(who, me).available),
            typed={k: data.get(k, "") for k in ("to", "hours", "minutes")},  # as they were
        )
    return Redirect("/volunteer/hours", status_code=303)


GIVE_HANDLERS = [give_page, give]
