"""``/v1/webhook-endpoints`` and ``/v1/webhook-messages``: a bank admin registers where a partner
key's signed events go, switches an endpoint off and on, reads its messages and replays a dead
letter. Every rule is in ``partners.webhooks``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from litestar import Controller, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from accounts.model import Principal
from api.accounts_routes import AUTH, Id
from api.schemas import Input, problems
from partners.webhooks import Endpoint, Message, Outbox

P = NamedDependency[Principal]


def outbox(state: State) -> Outbox:
    service: Outbox = state.outbox
    return service


class EndpointIn(Input):
    partner_key_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    url: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
    scheme: str = "v1a"  # v1a (Ed25519, as the spec prefers) or v1 (HMAC-SHA256)
    events: list[str] | None = None  # None: every event but checkpoint.published


class EndpointOut(msgspec.Struct):
    id: str
    partner_key_id: str
    url: str
    scheme: str
    public_key: str | None  # whpk_…: how the partner verifies v1a signatures
    enabled: bool
    disabled_reason: str | None
    created_at: datetime
    events: list[str] | None  # None: every event but checkpoint.published
    secret: str | None = None  # whsec_…, for v1: shown once, when the endpoint is made


def endpoint_out(endpoint: Endpoint, secret: str | None = None) -> EndpointOut:
    return EndpointOut(
        endpoint.id,
        endpoint.partner_key_id,
        endpoint.url,
        endpoint.scheme,
        endpoint.public_key,
        endpoint.enabled,
        endpoint.disabled_reason,
        endpoint.created_at,
        list(endpoint.events) if endpoint.events is not None else None,
        secret,
    )


class MessageOut(msgspec.Struct):
    id: str
    endpoint_id: str
    event_type: str
    status: str  # pending, delivered, dead
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


def message_out(m: Message) -> MessageOut:
    return MessageOut(
        m.id,
        m.endpoint_id,
        m.event_type,
        m.status,
        m.attempts,
        m.next_attempt_at,
        m.last_error,
        m.created_at,
        m.delivered_at,
    )


class WebhookEndpointController(Controller):
    path = "/v1/webhook-endpoints"
    tags = ["partners"]
    dependencies = AUTH

    @get("/", sync_to_thread=True, responses=problems(401, 403))
    def endpoints(self, state: State, principal: P) -> list[EndpointOut]:
        """The bank's webhook endpoints (bank admins)."""
        return [endpoint_out(e) for e in outbox(state).endpoints(principal)]

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        sync_to_thread=True,
        responses=problems(400, 401, 403, 404),
    )
    def create(self, state: State, principal: P, data: JSONBody[EndpointIn]) -> EndpointOut:
        """Send a partner key's events to ``url`` (https, an allowed host), signed by
        ``scheme``; a v1 secret is shown once."""
        endpoint, secret = outbox(state).add_endpoint(
            principal, data.partner_key_id, data.url, data.scheme, data.events
        )
        return endpoint_out(endpoint, secret)

    @post(
        "/{endpoint_id:str}/disable",
        status_code=HTTP_200_OK,
        sync_to_thread=True,
        responses=problems(400, 401, 403, 404),
    )
    def disable(self, state: State, principal: P, endpoint_id: Id) -> EndpointOut:
        """Stop sending to the endpoint: its queued messages become dead letters."""
        return endpoint_out(outbox(state).set_enabled(principal, endpoint_id, False))

    @post(
        "/{endpoint_id:str}/enable",
        status_code=HTTP_200_OK,
        sync_to_thread=True,
        responses=problems(400, 401, 403, 404),
    )
    def enable(self, state: State, principal: P, endpoint_id: Id) -> EndpointOut:
        """Send to the endpoint again (after a 410 Gone, once the partner fixed it)."""
        return endpoint_out(outbox(state).set_enabled(principal, endpoint_id, True))

    @get("/{endpoint_id:str}/messages", sync_to_thread=True, responses=problems(400, 401, 403, 404))
    def messages(self, state: State, principal: P, endpoint_id: Id) -> list[MessageOut]:
        """The endpoint's latest 100 messages, newest first."""
        return [message_out(m) for m in outbox(state).messages(principal, endpoint_id)]


class WebhookMessageController(Controller):
    path = "/v1/webhook-messages"
    tags = ["partners"]
    dependencies = AUTH

    @post(
        "/{msg_id:str}/replay",
        status_code=HTTP_200_OK,
        sync_to_thread=True,
        responses=problems(400, 401, 403, 404, 409),
    )
    def replay(self, state: State, principal: P, msg_id: Id) -> MessageOut:
        """Queue a dead letter again, from its first attempt."""
        return message_out(outbox(state).replay(principal, msg_id))


WEBHOOK_CONTROLLERS = [WebhookEndpointController, WebhookMessageController]
