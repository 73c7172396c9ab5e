"""Records every state-changing request and every full read of personal data in the audit
trail: who, what (action and object ids), when, from where, and the outcome — refusals and
failed logins included. Ids only: bodies are read for a few id fields, never stored."""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import parse_qs

from anyio import to_thread
from litestar.enums import ScopeType
from litestar.handlers import HTTPRouteHandler
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from accounts.errors import AccountsError
from accounts.model import Principal
from accounts.service import AccountsService
from api.auth import PRINCIPAL_STATE_KEY, authenticate
from api.idempotency import read_body, replaying, send_problem
from api.problems import NESTED_TOO_DEEP, NOT_UNICODE, TOO_LARGE, refusal_words
from api.schemas import lone_surrogate_in
from audit.trail import AuditEvent, AuditTrail
from database.group import Pending
from web.security import session_cookie_token
from web.session import ON_BEHALF_STATE_KEY

log = logging.getLogger(__name__)
MAX_BODY = 64 * 1024
MAX_JSON_DEPTH = 32  # our bodies nest 3 deep; the JSON decoders recurse per level
ON_BEHALF_FIELDS = ("elder_id", "from_member_id", "member_id")
STATEMENT_PATHS = ("/statement", "/certificate", "/statement.pdf", "/certificate.pdf")
WEB_DOCUMENT_PAGES = frozenset({"/volunteer/certificate"})  # each page issues a signed document


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return ""


def _is_audited(scope: Scope) -> bool:
    method = scope.get("method", "")
    path = str(scope.get("path", ""))
    # The log's public face, and the witness its peers submit checkpoints to: a peer submits
    # after each of its appends, and an event per submission would be sealed into our log, which
    # we submit to the peer in turn, and so on for ever. Split views are recorded by the witness.
    if path.startswith(("/v1/log/", "/v1/federation/witness/", "/static/", "/schema")):
        return False
    if method == "GET" and path.rstrip("/") in SEARCH_PATHS:
        return _asks(scope.get("query_string", b""), "search", blank=False)  # by phone or ID
    if not path.startswith("/v1/"):  # the web app's forms change the same things
        return method == "POST" or (method == "GET" and _is_document_page(path))
    if method in ("POST", "PUT", "PATCH", "DELETE"):
        return True
    if method == "GET" and path.startswith("/v1/partner/members/"):
        return True  # a partner reading a member through a consent link: every use is recorded
    if method == "GET" and path.startswith("/v1/exports/"):
        return True  # every export leaves the building: recorded, refused or not
    if method == "GET" and path.startswith("/v1/members/") and path.endswith(STATEMENT_PATHS):
        return True  # every signed statement or certificate issued is recorded
    return method == "GET" and _asks(scope.get("query_string", b""), "reveal_reason")


# Member lists that find a person by an exact phone or ID number: each search is recorded, so
# that guessing a masked number (``137****9876``) one search at a time shows in the trail.
SEARCH_PATHS = ("/v1/members", "/desk/people")


def _is_document_page(path: str) -> bool:
    """A web page that issues a signed statement or certificate (each one is recorded)."""
    return path in WEB_DOCUMENT_PAGES or (
        path.startswith("/documents/") and path.endswith(STATEMENT_PATHS)
    )


def _asks(query: bytes, name: str, *, blank: bool = True) -> bool:
    """Whether the query carries ``name`` (with a value, unless ``blank``), in any spelling
    the app decodes (``reveal%5Freason`` included): what the handler will see, not the raw
    text."""
    if not query:  # most reads: nothing to parse
        return False
    return name in parse_qs(query.decode("latin-1"), keep_blank_values=blank)


def _actor(
    accounts: AccountsService, scope: Scope, body: dict[str, Any]
) -> tuple[str, str, str | None, str | None]:
    """(actor id, role, bank, member id of the actor) from the credentials sent."""
    header = _header(scope, b"authorization")
    if not header and (cookie := session_cookie_token(scope["headers"])):
        header = f"Bearer {cookie}"
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        known = scope.get("state", {}).get(PRINCIPAL_STATE_KEY)
        try:
            principal: Principal = (
                known
                if isinstance(known, Principal)
                else authenticate(scope["app"].state, token.strip())
            )
        except AccountsError:
            return "invalid-credentials", "none", None, None
        if principal.is_partner:
            return f"partner:{principal.partner_key_id}", "partner", principal.bank_id, None
        roles = ",".join(sorted({str(g.role) for g in principal.grants})) or "member"
        return principal.user_id or "", roles, principal.bank_id, principal.member_id
    username = body.get("username") if isinstance(body.get("username"), str) else None
    if username:
        user = accounts.user_by_username(username)
        if user is not None:
            return user.id, "login", user.bank_id, None
    return "anonymous", "none", None, None


def _body_limit(scope: Scope) -> int:
    handler = scope.get("route_handler")
    limit = (
        handler.resolve_request_max_body_size() if isinstance(handler, HTTPRouteHandler) else None
    )
    return int(limit) if limit else MAX_BODY


def _declared_too_large(scope: Scope) -> tuple[int, str, str, str, str] | None:
    """A Content-Length over the limit is refused before a byte of the body is read."""
    declared = _header(scope, b"content-length")
    limit = _body_limit(scope)
    if declared.isdigit() and int(declared) > limit:
        return 413, "http-413", *refusal_words(scope, *TOO_LARGE, limit=limit), "body"
    return None


def _not_unicode(scope: Scope, body: bytes) -> str | None:
    """The field of a JSON body holding a lone surrogate (``api.schemas.lone_surrogate_in``):
    refused before anything reads it, the trail's event and the key's fingerprint included."""
    if _header(scope, b"content-type").startswith("application/x-www-form-urlencoded"):
        return None  # a form's percent-escapes are decoded leniently, never into surrogates
    return lone_surrogate_in(body)


def _nested_deeper_than(body: bytes, limit: int) -> bool:
    """Whether JSON ``body`` opens more than ``limit`` arrays/objects inside each other
    (strings skipped), without decoding it: decoders recurse once per level."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth, in_string, escaped = 0, False, False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return False


def _export_objects(query: bytes) -> list[str]:
    """What an export was of, for its audit event: the month, the organisation, and the
    recipient the file was sealed to (the key's first 11 characters, as ``X-Sealed-To``)."""
    given = parse_qs(query.decode("latin-1"))
    found = [f"{name}:{given[name][0][:32]}" for name in ("month", "org_id") if name in given]
    if "recipient_key" in given:
        key = given["recipient_key"][0].replace("+", "-").replace("/", "_")
        found.append(f"sealed-to:{key[:11]}")
    return found


class AuditMiddleware(ASGIMiddleware):
    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        if not _is_audited(scope):
            await next_app(scope, receive, send)
            return
        refusal = _declared_too_large(scope)
        body: bytes | int | None = None
        if refusal is None:
            # Read at most the limit: a larger body is refused without being held in memory.
            body = await read_body(receive, _body_limit(scope))
            if body is None:
                return  # the client went away before sending its body
            if isinstance(body, int):
                words = refusal_words(scope, *TOO_LARGE, limit=body)
                refusal = (413, "http-413", *words, "body")
            elif _nested_deeper_than(body, MAX_JSON_DEPTH):
                words = refusal_words(scope, *NESTED_TOO_DEEP, limit=MAX_JSON_DEPTH)
                refusal = (400, "invalid-parameter", *words, "body")
            elif (at := _not_unicode(scope, body)) is not None:
                words = refusal_words(scope, *NOT_UNICODE, field=at)
                refusal = (400, "invalid-parameter", *words, at)
        if refusal is not None:
            status, slug, title, detail, field = refusal
            await self._record(scope, b"", status)
            await send_problem(send, status, slug, title, detail, field)
            return
        assert isinstance(body, bytes)
        raw = body

        recorded = False

        async def capture(message: Message) -> None:
            nonlocal recorded
            if message["type"] == "http.response.start" and not recorded:
                # The event is durable before the client sees the outcome.
                recorded = True
                await self._record(scope, raw, int(message["status"]))
            await send(message)

        try:
            await next_app(scope, replaying(raw, receive), capture)
        finally:
            if not recorded:  # the handler failed before any response started
                await self._record(scope, raw, 500)

    @classmethod
    async def _record(cls, scope: Scope, raw: bytes, status: int) -> None:
        """The request's event, durable when this returns: built and submitted in a worker
        thread when who acted must be looked up, else on the loop; its batch awaited on the
        loop, parking no thread."""
        if isinstance(scope.get("state", {}).get(PRINCIPAL_STATE_KEY), Principal):
            pending = cls._submit(scope, raw, status)  # no I/O: the request's principal is known
        else:
            pending = await to_thread.run_sync(cls._submit, scope, raw, status)
        try:
            await pending.wait_async()
        except Exception as exc:  # the trail must never lose silently: log the failure type
            log.error("audit event could not be recorded: %s", type(exc).__name__)
            raise

    @staticmethod
    def _submit(scope: Scope, raw: bytes, status: int) -> Pending[AuditEvent]:
        state = scope["app"].state
        trail: AuditTrail = state.audit
        accounts: AccountsService = state.accounts
        try:
            if _header(scope, b"content-type").startswith("application/x-www-form-urlencoded"):
                form = parse_qs(raw.decode("utf-8", "replace")) if len(raw) <= MAX_BODY else {}
                body = {k: v[0] for k, v in form.items() if k != "password"}
            else:
                body = json.loads(raw) if raw and len(raw) <= MAX_BODY else {}
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        try:
            actor, role, bank, member = _actor(accounts, scope, body)
            told = scope.get("state", {}).get(ON_BEHALF_STATE_KEY)
            on_behalf = (
                told
                if isinstance(told, str)
                else next(
                    (str(body[f]) for f in ON_BEHALF_FIELDS if isinstance(body.get(f), str)), None
                )
            )
            objects = [str(v) for v in scope.get("path_params", {}).values()]
            if str(scope.get("path", "")).startswith("/v1/exports/"):
                objects += _export_objects(scope.get("query_string", b""))
            client = scope.get("client") or ("unknown", 0)
            return trail.record_later(
                actor=actor,
                role=role,
                bank_id=bank,
                on_behalf=on_behalf if on_behalf != member else None,
                action=f"{scope.get('method', '')} {scope.get('path_template') or scope['path']}",
                objects=objects,
                client=str(client[0]),
                device_key=body.get("device_key_id")
                if isinstance(body.get("device_key_id"), str)
                else None,
                status=status,
            )
        except Exception as exc:  # the trail must never lose silently: log the failure type
            log.error("audit event could not be recorded: %s", type(exc).__name__)
            raise
