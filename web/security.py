"""Browser-facing protections: a strict Content-Security-Policy on every response, and CSRF
checks on every unsafe request that a browser could send with the session cookie.

API clients that authenticate with ``Authorization: Bearer`` and carry no session cookie are not
exposed to CSRF (a browser never attaches that header cross-site), so ``/v1`` requests without the
cookie pass; everything else (every form, and the pages' own calls to ``/v1``) needs the token.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import Any

from litestar import Request
from litestar.config.csrf import CSRFConfig
from litestar.datastructures import Cookie, MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.middleware.csrf import CSRFMiddleware, generate_csrf_token
from litestar.types import ASGIApp, HTTPSendMessage, Message, Receive, Scope, Send
from litestar.utils.scope.state import ScopeState

from accounts.protection import load_or_create_data_key

SESSION_COOKIE = "tb_session"
CSRF_COOKIE = "tb_csrf"
CSRF_HEADER = "x-csrftoken"

_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; manifest-src 'self'; worker-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# Swagger UI sets style attributes from its scripts; its scripts are still only our own files.
_CSP_SCHEMA = _CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")
_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "permissions-policy": "camera=(self), geolocation=(), microphone=()",
}


def security_headers(path: str) -> tuple[tuple[bytes, bytes], ...]:
    """The headers every response to ``path`` carries, in the order they are added."""
    policy = _CSP_SCHEMA if path.startswith("/schema") else _CSP
    return tuple(
        (name.encode("latin-1"), value.encode("latin-1"))
        for name, value in {"content-security-policy": policy, **_HEADERS}.items()
    )


_API_HEADERS = security_headers("/")
_SCHEMA_HEADERS = security_headers("/schema")
_SECURITY_NAMES = frozenset(name for name, _ in _API_HEADERS)


def add_security_headers(
    headers: list[tuple[bytes, bytes]], ours: Iterable[tuple[bytes, bytes]]
) -> None:
    """Set each of ``ours`` in ``headers`` (in place), as ``MutableScopeHeaders`` would: a header
    the response already has keeps its place with our value, its duplicates dropped; the others
    are appended in order. One pass over the headers instead of one per name."""
    if not any(name.lower() in _SECURITY_NAMES for name, _ in headers):
        headers.extend(ours)
        return
    wanted = dict(ours)
    kept: list[tuple[bytes, bytes]] = []
    placed: set[bytes] = set()
    for name, value in headers:
        lower = name.lower()
        if lower not in wanted:
            kept.append((name, value))
        elif lower not in placed:
            placed.add(lower)
            kept.append((lower, wanted[lower]))
    kept.extend((name, value) for name, value in wanted.items() if name not in placed)
    headers[:] = kept


class SecurityHeadersMiddleware:
    """Adds the CSP and friends to every HTTP response (pages, static files, API, schema)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        ours = _SCHEMA_HEADERS if scope["path"].startswith("/schema") else _API_HEADERS

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers")
                if not isinstance(headers, list):
                    headers = message["headers"] = list(headers or ())
                add_security_headers(headers, ours)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def session_cookie_token(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The session token of the web app's cookie in raw ASGI headers (for middleware)."""
    for name, value in headers:
        if name.lower() == b"cookie":
            cookie: SimpleCookie = SimpleCookie()
            try:
                cookie.load(value.decode("latin-1"))
            except CookieError:  # a malformed cookie header carries no session either
                continue
            if SESSION_COOKIE in cookie and cookie[SESSION_COOKIE].value:
                return cookie[SESSION_COOKIE].value
    return None


CSRF_COOKIE_AGE = 365 * 24 * 3600


class BrowserCSRFMiddleware(CSRFMiddleware):
    """Litestar's double-submit CSRF check, skipped only for cookie-less ``/v1`` calls. Its
    cookie lasts a year rather than until the browser closes: a form kept open (a phone's
    browser is "closed" whenever the system reclaims it) still posts within its session."""

    def _set_cookie_if_needed(self, message: HTTPSendMessage, token: str) -> None:
        cookie = Cookie(
            key=self.config.cookie_name,
            value=token,
            path=self.config.cookie_path,
            max_age=CSRF_COOKIE_AGE,
            secure=self.config.cookie_secure,
            httponly=self.config.cookie_httponly,
            samesite=self.config.cookie_samesite,
            domain=self.config.cookie_domain,
        )
        MutableScopeHeaders.from_message(message).add("set-cookie", cookie.to_header(header=""))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP and scope["path"] == "/healthz":
            await self.app(scope, receive, send)  # a probe gets no cookie
            return
        if (
            scope["type"] == ScopeType.HTTP
            and scope["path"].startswith(("/v1/", "/schema"))
            and session_cookie_token(scope["headers"]) is None
        ):
            await self.app(scope, receive, send)
            return
        if scope["type"] == ScopeType.HTTP and scope["method"] in self.config.safe_methods:
            # As the base class does for safe methods, without parsing a body a GET may carry.
            request: Request[Any, Any, Any] = scope["litestar_app"].request_class(scope=scope)
            cookie = request.cookies.get(self.config.cookie_name)
            token = cookie or generate_csrf_token(secret=self.config.secret)
            ScopeState.from_scope(scope).csrf_token = token
            await self.app(scope, receive, self.create_send_wrapper(send, token, cookie))
            return
        await super().__call__(scope, receive, send)


def csrf_config(data_dir: Path) -> CSRFConfig:
    """The CSRF secret lives beside the data key (``web.key``), so tokens survive restarts."""
    key = load_or_create_data_key(data_dir / "web.key")
    secret = base64.b64encode(hashlib.sha256(b"timebank csrf\0" + key).digest()).decode()
    return CSRFConfig(
        secret=secret,
        cookie_name=CSRF_COOKIE,
        header_name=CSRF_HEADER,
        cookie_samesite="lax",
        cookie_httponly=True,  # pages hand the token to their scripts in a <meta> tag
    )
