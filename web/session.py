"""Browser logins: the same server-side sessions as bearer tokens, held in an HttpOnly cookie.

Logging out, ``logout-all`` and a staff member revoking a session all end the cookie's session,
because the cookie carries nothing but the session token whose hash the session store keeps.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from litestar import Request, Response
from litestar.datastructures import Cookie, State

from accounts.errors import AuthenticationError
from accounts.model import Principal
from accounts.service import AccountsService, LoginResult
from web.security import SESSION_COOKIE

# A handler that learns whom the caller acted for (not in the body) tells the audit trail here
# (``api.audit_log`` reads it; the API's handlers and the web app's pages both set it).
ON_BEHALF_STATE_KEY = "timebank.on_behalf"


def accounts_of(request: Request[Any, Any, State]) -> AccountsService:
    service: AccountsService = request.app.state.accounts
    return service


def session_token(request: Request[Any, Any, Any]) -> str | None:
    token = request.cookies.get(SESSION_COOKIE)
    return token or None


def viewer(request: Request[Any, Any, State]) -> Principal | None:
    """Who is looking at the page, or None (not logged in, expired or revoked)."""
    token = session_token(request)
    if token is None:
        return None
    try:
        return accounts_of(request).authenticate(token)
    except AuthenticationError:
        return None


def session_cookie(request: Request[Any, Any, Any], login: LoginResult) -> Cookie:
    lifetime = int((login.expires_at - datetime.now(UTC)).total_seconds())
    return Cookie(
        key=SESSION_COOKIE,
        value=login.token,
        path="/",
        max_age=max(lifetime, 0),
        httponly=True,
        secure=request.url.scheme == "https",
        samesite="lax",
    )


def clear_session(response: Response[Any]) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/")
