"""The exchanges page: ``/exchanges``, where a member (or a family proxy, for the elder) sees
what partner platforms asked to spend from their minutes and confirms or declines each pending
one. Each action calls the same ``partners.exchanges`` method as its ``/v1/exchanges`` route, so
the rules and refusals are the API's."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.params import PathParameter
from litestar.response import Redirect

from accounts.errors import AccountsError
from accounts.model import Principal
from care.errors import CareError
from partners.exchanges import Exchanges
from web.i18n import N_
from web.links import day_of, who_may_decide
from web.pages import refusal, render, to_login
from web.session import viewer

ExchangeId = Annotated[str, PathParameter(max_length=64)]
STATUS_WORDS = {
    "pending": N_("Waiting for your decision"),
    "confirming": N_("Being confirmed"),
    "confirmed": N_("Confirmed: the minutes were spent"),
    "declined": N_("Declined"),
    "cancelled": N_("Cancelled by the platform"),
    "expired": N_("Expired"),
}


def exchanges_of(request: Request[Any, Any, State]) -> Exchanges:
    service: Exchanges = request.app.state.exchanges
    return service


def _rows(request: Request[Any, Any, State], principal: Principal) -> list[dict[str, Any]]:
    """The exchanges of the caller's own member record and of the elders they are proxy for."""
    service = exchanges_of(request)
    now = service.clock()
    rows = []
    for member_id, name in who_may_decide(request, principal):
        for exchange in service.exchanges_of(principal, member_id):
            rows.append(
                {
                    "exchange": exchange,
                    "who": name,
                    "state": exchange.state(now),
                    "expires": day_of(exchange.expires_at),
                }
            )
    return rows


def _page(request: Request[Any, Any, State], principal: Principal) -> dict[str, Any]:
    return {"rows": _rows(request, principal), "statuses": STATUS_WORDS}


@get("/exchanges", sync_to_thread=True, include_in_schema=False)
def my_exchanges(request: Request[Any, Any, State]) -> Response[Any]:
    principal = viewer(request)
    if principal is None:
        return to_login(request)
    return render(request, "links/exchanges.html", principal, **_page(request, principal))


def _decide(request: Request[Any, Any, State], exchange_id: str, confirm: bool) -> Response[Any]:
    principal = viewer(request)
    if principal is None:
        return to_login(request)
    service = exchanges_of(request)
    try:
        if confirm:
            service.confirm(principal, exchange_id)
        else:
            service.decline(principal, exchange_id)
    except (AccountsError, CareError) as exc:
        return refusal(request, exc, "links/exchanges.html", principal, **_page(request, principal))
    return Redirect("/exchanges", status_code=303)


@post("/exchanges/{exchange_id:str}/confirm", sync_to_thread=True, include_in_schema=False)
def confirm(request: Request[Any, Any, State], exchange_id: ExchangeId) -> Response[Any]:
    return _decide(request, exchange_id, confirm=True)


@post("/exchanges/{exchange_id:str}/decline", sync_to_thread=True, include_in_schema=False)
def decline(request: Request[Any, Any, State], exchange_id: ExchangeId) -> Response[Any]:
    return _decide(request, exchange_id, confirm=False)


EXCHANGE_HANDLERS = [my_exchanges, confirm, decline]
