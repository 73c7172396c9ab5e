"""Consent pages: ``/links/{id}``, where a partner platform sends a person to approve or decline
its request (a family proxy may decide for the elder), and ``/links``, where members and proxies
see their links and revoke them. Each action calls the same ``partners.links`` method as its
``/v1/links`` route, so the rules and refusals are the API's."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.params import PathParameter
from litestar.response import Redirect

from accounts.errors import AccountsError
from accounts.model import Principal
from partners.links import PartnerLink, PartnerLinks
from web.i18n import N_, gettext_for
from web.names import proxied_names
from web.pages import Form, language_of, refusal, render, to_login
from web.session import viewer

LinkId = Annotated[str, PathParameter(max_length=64)]
ZONE = ZoneInfo("Asia/Shanghai")
# What each scope lets the partner do, in the words the page shows.
SCOPE_WORDS = {
    "read_points": N_("See your time balance: the minutes you may spend and those held"),
    "read_statement": N_(
        "Read your statement of verified hours and your service certificate, signed by the "
        "bank (they name your account in the public log, so the platform can find its entries)"
    ),
    "receive_webhooks": N_("Be told when your minutes change"),
    "request_exchange": N_("Ask to spend your minutes on its services (you confirm each one)"),
}
STATUS_WORDS = {
    "pending": N_("Waiting for your decision"),
    "lapsed": N_("Nobody decided within a day; the request has lapsed"),
    "declined": N_("Declined"),
    "active": N_("Active"),
    "expired": N_("Expired"),
    "revoked": N_("Revoked"),
}


def links_of(request: Request[Any, Any, State]) -> PartnerLinks:
    service: PartnerLinks = request.app.state.partners
    return service


def day_of(moment: datetime | None) -> str:
    return moment.astimezone(ZONE).strftime("%Y-%m-%d") if moment else ""


def who_may_decide(
    request: Request[Any, Any, State], principal: Principal
) -> list[tuple[str, str]]:
    """(member id, name) of everyone the caller decides for: themselves and their elders."""
    _ = gettext_for(language_of(request))
    choices = []
    if principal.acting_member_id is not None:
        choices.append((principal.acting_member_id, _("Myself")))
    elders = sorted(principal.proxied_members())
    names = proxied_names(request, principal, elders)
    choices += [(elder, names[elder]) for elder in elders]
    return choices


def _link_context(
    request: Request[Any, Any, State], principal: Principal, link: PartnerLink
) -> dict[str, Any]:
    """What the link page shows, whether it is shown fresh or after a refused decision."""
    return {
        "link": link,
        "state": link.state(links_of(request).clock()),
        "scopes": [SCOPE_WORDS[s] for s in sorted(link.scopes)],
        "statuses": STATUS_WORDS,
        "choices": who_may_decide(request, principal),
        "expires": day_of(link.expires_at),
    }


@get("/links/{link_id:str}", sync_to_thread=True, include_in_schema=False)
def link_page(request: Request[Any, Any, State], link_id: LinkId) -> Response[Any]:
    principal = viewer(request)
    if principal is None:
        return to_login(request)
    link = links_of(request).pending(principal, link_id)
    return render(request, "links/link.html", principal, **_link_context(request, principal, link))


def _decide(
    request: Request[Any, Any, State], link_id: str, data: dict[str, str], approve: bool
) -> Response[Any]:
    principal = viewer(request)
    if principal is None:
        return to_login(request)
    service = links_of(request)
    link = service.pending(principal, link_id)
    member_id = data.get("member_id") or None
    try:
        if approve:
            service.approve(principal, link_id, member_id)
        else:
            service.decline(principal, link_id, member_id)
    except AccountsError as exc:
        return refusal(
            request, exc, "links/link.html", principal, **_link_context(request, principal, link)
        )
    return Redirect("/links", status_code=303)


@post("/links/{link_id:str}/approve", sync_to_thread=True, include_in_schema=False)
def approve(request: Request[Any, Any, State], link_id: LinkId, data: Form) -> Response[Any]:
    return _decide(request, link_id, data, approve=True)


@post("/links/{link_id:str}/decline", sync_to_thread=True, include_in_schema=False)
def decline(request: Request[Any, Any, State], link_id: LinkId, data: Form) -> Response[Any]:
    return _decide(request, link_id, data, approve=False)


def _rows(request: Request[Any, Any, State], principal: Principal) -> list[dict[str, Any]]:
    """Every link of the caller's own member record and of the elders they are proxy for."""
    service = links_of(request)
    now = service.clock()
    rows = []
    for member_id, name in who_may_decide(request, principal):
        for link in service.links_of(principal, member_id):
            rows.append(
                {
                    "link": link,
                    "who": name,
                    "state": link.state(now),
                    "scopes": [SCOPE_WORDS[s] for s in sorted(link.scopes)],
                    "expires": day_of(link.expires_at),
                }
            )
    return rows


@get("/links", sync_to_thread=True, include_in_schema=False)
def my_links(request: Request[Any, Any, State]) -> Response[Any]:
    principal = viewer(request)
    if principal is None:
        return to_login(request)
    return render(
        request,
        "links/links.html",
        principal,
        rows=_rows(request, principal),
        statuses=STATUS_WORDS,
    )


@post("/links/{link_id:str}/revoke", sync_to_thread=True, include_in_schema=False)
def revoke(request: Request[Any, Any, State], link_id: LinkId) -> Response[Any]:
    principal = viewer(request)
    if principal is None:
        return to_login(request)
    try:
        links_of(request).revoke(principal, link_id)
    except AccountsError as exc:
        return refusal(
            request,
            exc,
            "links/links.html",
            principal,
            rows=_rows(request, principal),
            statuses=STATUS_WORDS,
        )
    return Redirect("/links", status_code=303)


LINK_HANDLERS = [link_page, approve, decline, my_links, revoke]
