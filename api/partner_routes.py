"""Consent links and the partner's read API: ``/v1/partner/…`` for partner keys, ``/v1/links``
and ``/v1/members/{id}/links`` for the people who consent. Every rule is in
``partners.links``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, MediaType, Request, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import JSONBody, Parameter, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from accounts.model import Principal
from api.accounts_routes import AUTH, Id
from api.schemas import Input, problems
from partners.exchanges import Exchange, Exchanges
from partners.links import PartnerLink, PartnerLinks
from partners.statements import SignedDocument, SignedDocuments
from web.session import ON_BEHALF_STATE_KEY

P = NamedDependency[Principal]
Handle = Annotated[str, Parameter(min_length=1, max_length=40)]
From = Annotated[
    str | None,
    QueryParameter(name="from", max_length=40, description="first day (UTC), YYYY-MM-DD"),
]
To = Annotated[
    str | None,
    QueryParameter(name="to", max_length=40, description="last day (UTC), YYYY-MM-DD"),
]
NameShownParam = Annotated[
    str, QueryParameter(name="name", description="masked (default), full or nickname")
]
Nickname = Annotated[str | None, QueryParameter(name="nickname", max_length=40)]


def documents(state: State) -> SignedDocuments:
    service: SignedDocuments = state.documents
    return service


def _document(request: Request[Any, Any, Any], signed: SignedDocument) -> dict[str, Any]:
    request.scope["state"][ON_BEHALF_STATE_KEY] = signed.member_id
    return signed.document


def partners(state: State) -> PartnerLinks:
    service: PartnerLinks = state.partners
    return service


class LinkRequestIn(Input):
    scopes: list[str]
    valid_days: Annotated[int, msgspec.Meta(ge=1, le=366)] = 365


class LinkDecisionIn(Input):
    member_id: str | None = None  # a family proxy names the elder; a member may omit it


class LinkOut(msgspec.Struct):
    id: str
    partner: str
    partner_key_id: str
    scopes: list[str]
    valid_days: int
    status: str  # pending, active, expired, lapsed, declined, revoked
    requested_at: datetime
    approve_url: str
    handle: str | None
    member_id: str | None
    decided_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None


def link_out(link: PartnerLink, now: datetime, member_id: bool) -> LinkOut:
    """``member_id`` only for the people on the member's side: a partner sees the handle."""
    return LinkOut(
        link.id,
        link.partner_name,
        link.partner_key_id,
        sorted(link.scopes),
        link.valid_days,
        link.state(now),
        link.requested_at,
        f"/links/{link.id}",
        link.handle,
        link.member_id if member_id else None,
        link.decided_at,
        link.expires_at,
        link.revoked_at,
    )


def exchanges(state: State) -> Exchanges:
    service: Exchanges = state.exchanges
    return service


class ExchangeIn(Input):
    handle: Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
    minutes: int
    reference: str  # the partner's own id of the order: asking again with it is idempotent
    description: str


class ExchangeOut(msgspec.Struct):
    id: str
    partner: str
    handle: str
    reference: str
    description: str
    minutes: int
    status: str  # pending, confirming, confirmed, declined, cancelled, expired
    requested_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    seq: int | None  # the exchange entry's seq in the log, once confirmed
    receipt_url: str | None
    member_id: str | None  # for the people on the member's side only


def exchange_out(exchange: Exchange, now: datetime, member_id: bool) -> ExchangeOut:
    return ExchangeOut(
        exchange.id,
        exchange.partner_name,
        exchange.handle,
        exchange.reference,
        exchange.description,
        exchange.minutes,
        exchange.state(now),
        exchange.requested_at,
        exchange.expires_at,
        exchange.decided_at,
        exchange.seq,
        f"/v1/log/receipt?index={exchange.seq}" if exchange.seq is not None else None,
        exchange.member_id if member_id else None,
    )


class PointsOut(msgspec.Struct):
    handle: str
    available_minutes: int  # may be spent now
    reserved_minutes: int  # held for requests the member asked for
    verified_minutes: int  # all service ever verified into the account (docs/partners.md)
    points: float  # verified minutes in the bank's unit
    points_unit: str  # minutes, hours or points
    star_level: int | None  # 0–5, None when the bank does not show star levels
    star_name: str | None  # 一星 … 五星
    next_star_hours: int | None


class PartnerSideController(Controller):
    path = "/v1/partner"
    tags = ["partners"]
    dependencies = AUTH

    @post(
        "/link-requests",
        status_code=HTTP_201_CREATED,
        sync_to_thread=True,
        responses=problems(400, 401, 403),
    )
    def ask(self, state: State, principal: P, data: JSONBody[LinkRequestIn]) -> LinkOut:
        """A pending consent request; send the person to ``approve_url`` to decide it."""
        service = partners(state)
        link = service.request(principal, data.scopes, data.valid_days)
        return link_out(link, service.clock(), member_id=False)

    @get("/links", sync_to_thread=True, responses=problems(401, 403))
    def mine(self, state: State, principal: P) -> list[LinkOut]:
        """The partner's requests and links, newest first, with each member's handle."""
        service = partners(state)
        now = service.clock()
        return [link_out(link, now, False) for link in service.partner_links(principal)]

    @get(
        "/link-requests/{link_id:str}", sync_to_thread=True, responses=problems(400, 401, 403, 404)
    )
    def read(self, state: State, principal: P, link_id: Id) -> LinkOut:
        """The partner's own request: its status, and the member's handle once approved."""
        service = partners(state)
        return link_out(service.partner_link(principal, link_id), service.clock(), False)

    @get(
        "/members/{handle:str}/points",
        sync_to_thread=True,
        responses=problems(400, 401, 403, 404),
    )
    def points(
        self, state: State, principal: P, handle: Handle, request: Request[Any, Any, Any]
    ) -> PointsOut:
        """Available and held minutes of a linked member (``read_points``); recorded in the
        audit trail as a use of the link."""
        points = partners(state).points(principal, handle)
        request.scope["state"][ON_BEHALF_STATE_KEY] = points.member_id
        shown = points.standing
        return PointsOut(
            points.handle,
            points.available,
            points.reserved,
            shown.verified_minutes,
            float(shown.points),
            shown.points_unit,
            shown.star_level,
            shown.star_name,
            shown.next_star_hours,
        )

    @get(
        "/members/{handle:str}/statement",
        sync_to_thread=True,
        responses=problems(400, 401, 403, 404),
    )
    def statement(
        self,
        state: State,
        principal: P,
        handle: Handle,
        request: Request[Any, Any, Any],
        start: From = None,
        end: To = None,
    ) -> dict[str, Any]:
        """A linked member's signed statement for a period (``read_statement``;
        docs/partners.md#statements-and-certificates); recorded as a use of the link."""
        return _document(request, documents(state).partner_statement(principal, handle, start, end))

    @get(
        "/members/{handle:str}/certificate",
        sync_to_thread=True,
        responses=problems(400, 401, 403, 404),
    )
    def certificate(
        self,
        state: State,
        principal: P,
        handle: Handle,
        request: Request[Any, Any, Any],
        start: From = None,
        end: To = None,
    ) -> dict[str, Any]:
        """A linked member's signed service certificate (志愿服务证明), name masked."""
        service = documents(state)
        return _document(request, service.partner_certificate(principal, handle, start, end))

    @post(
        "/exchanges",
        status_code=HTTP_201_CREATED,
        sync_to_thread=True,
        responses=problems(400, 401, 403, 404, 409),
    )
    def ask_exchange(
        self,
        state: State,
        principal: P,
        data: JSONBody[ExchangeIn],
        request: Request[Any, Any, Any],
    ) -> Response[ExchangeOut]:
        """A pending exchange of a linked member's minutes (``request_exchange``) for the
        service described; 201 when new, 200 with the same exchange when ``reference`` was
        asked before with the same content."""
        service = exchanges(state)
        exchange, created = service.request(
            principal, data.handle, data.minutes, data.reference, data.description
        )
        request.scope["state"][ON_BEHALF_STATE_KEY] = exchange.member_id
        return Response(
            exchange_out(exchange, service.clock(), False),
            status_code=HTTP_201_CREATED if created else HTTP_200_OK,
        )

    @get(
        "/exchanges/{exchange_id:str}", sync_to_thread=True, responses=problems(400, 401, 403, 404)
    )
    def read_exchange(self, state: State, principal: P, exchange_id: Id) -> ExchangeOut:
        """The partner's own exchange: its status, and the entry's seq once confirmed."""
        service = exchanges(state)
        return exchange_out(
            service.partner_exchange(principal, exchange_id), service.clock(), False
        )

    @post(
        "/exchanges/{exchange_id:str}/cancel",
        status_code=HTTP_200_OK,
        sync_to_thread=True,
        responses=problems(400, 401, 403, 404, 409),
    )
    def cancel_exchange(
        self, state: State, principal: P, exchange_id: Id, request: Request[Any, Any, Any]
    ) -> ExchangeOut:
        """Withdraw a pending exchange: nothing is posted."""
        service = exchanges(state)
        exchange = service.cancel(principal, exchange_id)
        request.scope["state"][ON_BEHALF_STATE_KEY] = exchange.member_id
        return exchange_out(exchange, service.clock(), False)


class ExchangeController(Controller):
    path = "/v1"
    tags = ["partners"]
    dependencies = AUTH

    @get(
        "/members/{member_id:str}/exchanges",
        sync_to_thread=True,
        responses=problems(400, 401, 403, 404),
    )
    def of_member(self, state: State, principal: P, member_id: Id) -> list[ExchangeOut]:
        """A member's exchanges, newest first (pending ones to confirm or decline)."""
        service = exchanges(state)
        now = service.clock()
        return [exchange_out(e, now, True) for e in service.exchanges_of(principal, member_id)]

    @get(
        "/exchanges/{exchange_id:str}", sync_to_thread=True, responses=problems(400, 401, 403, 404)
    )
    def exchange(self, state: State, principal: P, exchange_id: Id) -> ExchangeOut:
        service = exchanges(state)
        return exchange_out(service.exchange(principal, exchange_id), service.clock(), True)

    @post(
        "/exchanges/{exchange_id:str}/confirm",
        status_code=HTTP_200_OK,
        sync_to_thread=True,
        responses=problems(400, 401, 403, 404, 409),
    )
    def confirm(
        self, state: State, principal: P, exchange_id: Id, request: Request[Any, Any, Any]
    ) -> ExchangeOut:
        """The member, or a family proxy for an elder: the minutes move to the partner."""
        service = exchanges(state)
        exchange = service.confirm(principal, exchange_id)
        request.scope["state"][ON_BEHALF_STATE_KEY] = exchange.member_id
        return exchange_out(exchange, service.clock(), True)

    @post(
        "/exchanges/{exchange_id:str}/decline",
        status_code=HTTP_200_OK,
        sync_to_thread=True,
        responses=problems(400, 401, 403, 404, 409),
    )
    def decline(
        self, state: State, principal: P, exchange_id: Id, request: Request[Any, Any, Any]
    ) -> ExchangeOut:
        service = exchanges(state)
        exchange = service.decline(principal, exchange_id)
        request.scope["state"][ON_BEHALF_STATE_KEY] = exchange.member_id
        return exchange_out(exchange, service.clock(), True)


class LinkController(Controller):
    path = "/v1"
    tags = ["partners"]
    dependencies = AUTH

    @get("/links/{link_id:str}", sync_to_thread=True, responses=problems(400, 401, 403, 404))
    def link(self, state: State, principal: P, link_id: Id) -> LinkOut:
        """A consent request as the person deciding it sees it (partner, scopes, days)."""
        service = partners(state)
        return link_out(service.pending(principal, link_id), service.clock(), True)

    @post(
        "/links/{link_id:str}/approve",
        status_code=HTTP_200_OK,
        sync_to_thread=True,
        responses=problems(400, 401, 403, 404, 409),
    )
    def approve(
        self,
        state: State,
        principal: P,
        link_id: Id,
        request: Request[Any, Any, Any],
        data: JSONBody[LinkDecisionIn | None] = None,
    ) -> LinkOut:
        """Grant exactly the scopes asked, for the days asked: the member, or a family proxy
        naming the elder in ``member_id``."""
        service = partners(state)
        link = service.approve(principal, link_id, data.member_id if data else None)
        request.scope["state"][ON_BEHALF_STATE_KEY] = link.member_id
        return link_out(link, service.clock(), True)

    @post(
        "/links/{link_id:str}/decline",
        status_code=HTTP_200_OK,
        sync_to_thread=True,
        responses=problems(400, 401, 403, 404, 409),
    )
    def decline(
        self,
        state: State,
        principal: P,
        link_id: Id,
        data: JSONBody[LinkDecisionIn | None] = None,
    ) -> LinkOut:
        service = partners(state)
        link = service.decline(principal, link_id, data.member_id if data else None)
        return link_out(link, service.clock(), True)

    @post(
        "/links/{link_id:str}/revoke",
        status_code=HTTP_200_OK,
        sync_to_thread=True,
        responses=problems(400, 401, 403, 404, 409),
    )
    def revoke(
        self, state: State, principal: P, link_id: Id, request: Request[Any, Any, Any]
    ) -> LinkOut:
        """End a link now: the member, their proxy, their organisation's staff or an admin."""
        service = partners(state)
        link = service.revoke(principal, link_id)
        request.scope["state"][ON_BEHALF_STATE_KEY] = link.member_id
        return link_out(link, service.clock(), True)

    @get(
        "/members/{member_id:str}/links",
        sync_to_thread=True,
        responses=problems(400, 401, 403, 404),
    )
    def links(self, state: State, principal: P, member_id: Id) -> list[LinkOut]:
        """A member's consent links, newest first."""
        service = partners(state)
        now = service.clock()
        return [link_out(link, now, True) for link in service.links_of(principal, member_id)]


class StatementController(Controller):
    path = "/v1"
    tags = ["partners"]
    dependencies = AUTH

    @get(
        "/members/{member_id:str}/statement",
        sync_to_thread=True,
        responses=problems(400, 401, 403, 404),
    )
    def statement(
        self,
        state: State,
        principal: P,
        member_id: Id,
        request: Request[Any, Any, Any],
        start: From = None,
        end: To = None,
    ) -> dict[str, Any]:
        """The member's statement for a period, signed by the bank: each entry with its
        receipt; for the member, their proxy, their organisation's staff and bank admins."""
        return _document(request, documents(state).statement(principal, member_id, start, end))

    @get(
        "/members/{member_id:str}/certificate",
        sync_to_thread=True,
        responses=problems(400, 401, 403, 404),
    )
    def certificate(
        self,
        state: State,
        principal: P,
        member_id: Id,
        request: Request[Any, Any, Any],
        start: From = None,
        end: To = None,
        name: NameShownParam = "masked",
        nickname: Nickname = None,
    ) -> dict[str, Any]:
        """The member's service certificate (志愿服务证明), signed by the bank: the name as
        the member chooses (``masked``, ``full`` — the member or proxy only — or
        ``nickname``), organisation, verified hours, star level."""
        service = documents(state)
        return _document(
            request, service.certificate(principal, member_id, start, end, name, nickname)
        )


class StatementKeyController(Controller):
    path = "/v1/statements"
    tags = ["partners"]

    @get("/key", media_type=MediaType.TEXT, sync_to_thread=False)
    def key(self, state: State) -> str:
        """The bank's statement key (``<origin>/statements+<hex id>+<base64 key>``), which
        signs statements and certificates; check one with ``timebank audit statement``."""
        return documents(state).key + "\n"


PARTNER_CONTROLLERS = [
    PartnerSideController,
    LinkController,
    ExchangeController,
    StatementController,
    StatementKeyController,
]
