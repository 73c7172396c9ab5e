"""``Idempotency-Key`` on every state-changing POST under ``/v1`` (phones retry on weak networks).

A POST may carry ``Idempotency-Key: <1-200 printable ASCII characters>``. The key is scoped to
the caller (the user behind the bearer token, the partner key, or ``anonymous`` when there is
no ``Authorization`` header) and to the method and path. The middleware:

1. records the key with a keyed hash of (method, path, query, canonical body) as *in progress*;
2. runs the handler on the buffered request and buffers its response;
3. stores a response with status < 500 (status, ``Content-Type``, ``Location``, body — sealed
   with the data key, since bodies carry personal data and one-time secrets), or releases the
   key on a 5xx or a crash so the client can retry; then sends the response.

A retry with the same key and body gets the stored response with ``Idempotent-Replayed: true``
and the handler does not run; the same key with another body gets 422; a retry while the first
is still running gets 409. In-progress rows older than ten minutes are abandoned (taken over);
keys expire after 24 hours and are purged lazily. ``/v1/auth/login`` and ``/v1/auth/logout*``
ignore the header: a login hands out a fresh secret that must not be replayed.

Releasing a key after a failure, or taking over an abandoned one, can run a handler twice for
one key. That is safe for the ledger: entry ids are derived by the services, so a second append
of the same entry is a replay or an ``IdConflict``, never a second posting.

The keys, fingerprints and the sealed store are ``idempotency.store``; this module is the
ASGI middleware and the OpenAPI components. See ``docs/idempotency.md``.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import anyio
import anyio.to_thread
from litestar.enums import ParamType, ScopeType
from litestar.handlers import HTTPRouteHandler
from litestar.middleware import ASGIMiddleware
from litestar.openapi.spec import OpenAPIHeader, OpenAPIType, Schema
from litestar.openapi.spec import Parameter as OpenAPIParameter
from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send
from litestar.types.asgi_types import HTTPRequestEvent

from accounts.errors import AccountsError
from accounts.model import Principal
from accounts.service import AccountsService
from api.auth import PRINCIPAL_STATE_KEY, PrincipalCache, authenticate
from api.problems import (
    KEY_IN_PROGRESS,
    KEY_MALFORMED_TITLE,
    KEY_REUSED,
    PROBLEM_JSON,
    TOO_LARGE,
    problem,
    refusal_words,
)
from database.group import Pending
from idempotency.store import (
    KEY_HEADER,
    MAX_KEY_LENGTH,
    Claim,
    IdempotencyStore,
    MalformedKey,
    StoredResponse,
    key_id,
    parse_key,
    request_fingerprint,
)
from web.security import session_cookie_token

REPLAYED_HEADER = "Idempotent-Replayed"


PURGE_EVERY_SECONDS = 60.0


PREFIX = "/v1/"


NOT_IDEMPOTENT = ("/v1/auth/login", "/v1/auth/logout")  # prefixes: logout covers logout-all


STORED_HEADERS = frozenset({b"content-type", b"location"})


NO_BODY_STATUSES = frozenset({204, 304})


log = logging.getLogger(__name__)


# For the OpenAPI document (components).
OPENAPI_KEY_PARAMETER = OpenAPIParameter(
    name=KEY_HEADER,
    param_in=ParamType.HEADER,
    required=False,
    description=(
        "Optional on POSTs under /v1 (not /v1/auth/login or /v1/auth/logout*): a retry with "
        "the same key and body replays the stored response with Idempotent-Replayed: true; "
        "another body gets 422, a retry while the first runs gets 409. Kept 24 hours."
    ),
    schema=Schema(
        type=OpenAPIType.STRING, min_length=1, max_length=MAX_KEY_LENGTH, pattern="^[ -~]+$"
    ),
)


OPENAPI_REPLAYED_HEADER = OpenAPIHeader(
    description="`true` when the response is a replay of a stored response to the same key",
    schema=Schema(type=OpenAPIType.STRING, enum=["true"]),
)


def _path(scope: Scope) -> str:
    return scope["path"].rstrip("/") or "/"


def applies_to(method: str, path: str) -> bool:
    """Whether ``Idempotency-Key`` is honoured on this request."""
    if method.upper() != "POST" or not path.startswith(PREFIX):
        return False
    return not any(path == p or path.startswith(p + "-") for p in NOT_IDEMPOTENT)


def _bearer(scope: Scope) -> str | None:
    """The request's bearer token (its session cookie's in a browser); ``""`` without either;
    None for an ``Authorization`` that is not one bearer token."""
    values = [v for k, v in scope["headers"] if k.lower() == b"authorization"]
    if not values:
        cookie = session_cookie_token(scope["headers"])
        return "" if cookie is None else cookie
    scheme, _, token = values[0].decode("latin-1").partition(" ")
    if len(values) != 1 or scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _caller_of(scope: Scope, principal: Principal) -> str:
    """``user:<id>`` or ``partner:<key id>``; the principal is left in the request's state
    for the handler: one authentication a request."""
    scope.setdefault("state", {})[PRINCIPAL_STATE_KEY] = principal
    if principal.partner_key_id is not None:
        return f"partner:{principal.partner_key_id}"
    return f"user:{principal.user_id}"


def _caller(scope: Scope) -> str | None:
    """``user:<id>``, ``partner:<key id>``, ``anonymous`` without a token, None for a token
    that does not authenticate (such requests are passed through, never stored). A token not
    in memory is looked up: call it in a worker thread."""
    token = _bearer(scope)
    if not token:
        return None if token is None else "anonymous"
    try:
        principal = authenticate(scope["litestar_app"].state, token)
    except AccountsError:
        return None
    return _caller_of(scope, principal)


def _remembered_caller(scope: Scope) -> str | None:
    """``_caller`` without I/O, safe on the event loop: None when it would have to look the
    token up (or the header is not one bearer token)."""
    token = _bearer(scope)
    if not token:
        return None if token is None else "anonymous"
    state = scope["litestar_app"].state
    cache: PrincipalCache = state.principals
    principal = cache.remembered(state.accounts, token)
    return None if principal is None else _caller_of(scope, principal)


def _submit_claim(
    caller: str | None,
    scope: Scope,
    store: IdempotencyStore,
    method: str,
    path: str,
    key: str,
    body: bytes,
) -> tuple[str, str, Pending[Claim]] | None:
    """The key's row id, the request's fingerprint and its claim, submitted to the group
    commit; None when the caller's token does not authenticate (nothing is claimed or stored
    for such requests). ``caller`` None: look it up (in a worker thread)."""
    caller = caller or _caller(scope)
    if caller is None:
        return None
    row_id = key_id(caller, method, path, key)
    query = scope.get("query_string", b"")
    fingerprint = request_fingerprint(store.protector, method, path, query, body)
    return row_id, fingerprint, store.claim_later(row_id, fingerprint)


async def _claim(
    scope: Scope, store: IdempotencyStore, method: str, path: str, key: str, body: bytes
) -> tuple[str, Claim] | None:
    """The key's row id and its claim, durable when this returns; None when the caller's
    token does not authenticate. A caller this process remembers is known on the event loop,
    and its claim submitted there; any other is looked up, and the claim submitted, in one
    trip to a worker thread. The claim's batch is awaited on the loop, parking no thread."""
    asked = (scope, store, method, path, key, body)
    known = _remembered_caller(scope)
    if known is not None:
        submitted = _submit_claim(known, *asked)
    else:
        submitted = await anyio.to_thread.run_sync(_submit_claim, None, *asked)
    if submitted is None:
        return None
    row_id, fingerprint, pending = submitted
    return row_id, await store.settle_claim(pending, row_id, fingerprint)


async def send_problem(
    send: Send,
    status: int,
    slug: str,
    title: str,
    detail: str,
    field: str | None = KEY_HEADER,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    content = problem(status, slug, title, detail, field).content
    body = json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode()
    headers = [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(body)).encode()),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _send_stored(send: Send, stored: StoredResponse, replayed: bool) -> None:
    headers = list(stored.headers)
    if stored.status not in NO_BODY_STATUSES:
        headers.append((b"content-length", str(len(stored.body)).encode()))
    if replayed:
        headers.append((REPLAYED_HEADER.lower().encode(), b"true"))
    await send({"type": "http.response.start", "status": stored.status, "headers": headers})
    await send({"type": "http.response.body", "body": stored.body, "more_body": False})


class IdempotencyMiddleware(ASGIMiddleware):
    """Registered on the app; acts only on POSTs under ``/v1`` that carry the header."""

    scopes = (ScopeType.HTTP,)

    def __init__(self) -> None:
        self._next_purge = 0.0  # monotonic time; purging is best effort, once a minute

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        method = str(scope.get("method", ""))
        if method.upper() != "POST":  # reads pass at once (applies_to is only ever a POST)
            await next_app(scope, receive, send)
            return
        path = _path(scope)
        values = [v for k, v in scope["headers"] if k.lower() == b"idempotency-key"]
        if not values or not applies_to(method, path):
            await next_app(scope, receive, send)
            return
        try:
            key = parse_key(values)
        except MalformedKey as exc:
            title, detail = refusal_words(scope, KEY_MALFORMED_TITLE, exc.template, **exc.values)
            await send_problem(send, 400, "invalid-parameter", title, detail)
            return
        handler = scope["route_handler"]
        assert isinstance(handler, HTTPRouteHandler)
        limit = handler.resolve_request_max_body_size()
        body = await read_body(receive, limit)
        if body is None:
            return  # the client went away before sending its body
        if isinstance(body, int):
            title, detail = refusal_words(scope, *TOO_LARGE, limit=body)
            await send_problem(send, 413, "http-413", title, detail, "body")
            return
        replay_receive = replaying(body, receive)
        accounts: AccountsService = scope["litestar_app"].state.accounts
        store = IdempotencyStore(accounts.store.database, accounts.protector, accounts.clock())
        await self._purge_if_due(store)
        # Who calls and the key's claim: on the loop when this process remembers the caller,
        # else in one trip to a worker thread; the claim's batch is awaited on the loop.
        claimed = await _claim(scope, store, method, path, key, body)
        if claimed is None:  # the handler answers 401, or runs unprotected on an open route
            await next_app(scope, replay_receive, send)
            return
        row_id, claim = claimed
        if claim.outcome == "replay":
            assert claim.stored is not None
            await _send_stored(send, claim.stored, replayed=True)
            return
        if claim.outcome == "in_progress":
            title, detail = refusal_words(scope, *KEY_IN_PROGRESS)
            slug = "idempotency-key-in-progress"
            await send_problem(send, 409, slug, title, detail, extra=[(b"retry-after", b"1")])
            return
        if claim.outcome == "reused":
            title, detail = refusal_words(scope, *KEY_REUSED)
            await send_problem(send, 422, "idempotency-key-reused", title, detail)
            return
        await self._run(scope, replay_receive, send, next_app, store, row_id, claim.lease)

    async def _run(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        next_app: ASGIApp,
        store: IdempotencyStore,
        row_id: str,
        lease: str,
    ) -> None:
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        try:
            await next_app(scope, receive, capture)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await _quietly(store.release, row_id, lease)
            raise
        if not start:
            await _quietly(store.release, row_id, lease)
            raise RuntimeError("the handler sent no response")
        status = int(start["status"])
        headers: list[tuple[bytes, bytes]] = list(start.get("headers", []))
        response = StoredResponse(status, headers, b"".join(chunks))
        pending: Pending[Any] | None = None
        if status < 500:
            kept = [(k, v) for k, v in headers if k.lower() in STORED_HEADERS]
            stored = StoredResponse(status, kept, response.body)
            try:
                # On the event loop: sealing a few hundred bytes and queueing the completion
                # neither blocks nor touches the database (the group commit's leader does).
                pending = store.complete_later(row_id, lease, stored)
            except Exception as exc:
                log.error("idempotency storage failed in complete: %s", type(exc).__name__)
                await _quietly(store.release, row_id, lease)
        else:
            await _quietly(store.release, row_id, lease)
        try:
            # The audit layer writes its event as the response starts: in the same batch of
            # the group commit as the key's completion, submitted just above.
            await send({"type": "http.response.start", "status": status, "headers": headers})
        finally:
            # The client has the whole response only once the completion is durable.
            with anyio.CancelScope(shield=True):
                if pending is not None and not await _durable(pending):
                    await _quietly(store.release, row_id, lease)
        await send({"type": "http.response.body", "body": response.body, "more_body": False})

    async def _purge_if_due(self, store: IdempotencyStore) -> None:
        if time.monotonic() < self._next_purge:
            return
        self._next_purge = time.monotonic() + PURGE_EVERY_SECONDS
        await _quietly(store.purge)


async def _quietly(fn: Any, *args: Any) -> bool:
    """Run a storage call in a thread; log (by type only) and swallow its failure."""
    try:
        await anyio.to_thread.run_sync(fn, *args)
    except Exception as exc:
        log.error("idempotency storage failed in %s: %s", fn.__name__, type(exc).__name__)
        return False
    return True


async def _durable(pending: Pending[Any]) -> bool:
    """Whether the completion committed. Usually its batch is the audit event's, committed
    before this is asked: then the answer is at hand."""
    try:
        await pending.wait_async()
    except Exception as exc:
        log.error("idempotency storage failed in wait: %s", type(exc).__name__)
        return False
    return True


async def read_body(receive: Receive, limit: int | None) -> bytes | int | None:
    """The whole request body; its size limit (an int) if over it; None on a disconnect."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        if message["type"] != "http.request":
            continue
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit is not None and size > limit:
            return limit
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands over the buffered body once, then the client's messages."""
    delivered = False

    async def replay() -> ReceiveMessage:
        nonlocal delivered
        if delivered:
            return await receive()
        delivered = True
        message: HTTPRequestEvent = {"type": "http.request", "body": body, "more_body": False}
        return message

    return replay
