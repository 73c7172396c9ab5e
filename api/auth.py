"""Who is calling: ``Authorization: Bearer <token>`` for people, the same header with a
``tbk_`` partner API key for partner platforms, or the web app's session cookie (whose unsafe
requests passed the CSRF check in ``web.security``). Handlers ask for ``principal`` and get one,
or the request ends with a 401 problem before the handler runs."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from datetime import datetime

from litestar import Request
from litestar.concurrency import sync_to_thread
from litestar.datastructures import State

from accounts.errors import PasswordChangeRequired, TokenInvalid
from accounts.model import Principal
from accounts.service import AccountsService
from web.session import session_token


def accounts_service(state: State) -> AccountsService:
    service: AccountsService = state.accounts
    return service


def _authorization(request: Request[object, object, State]) -> str:
    """The ``Authorization`` header, read from the raw headers (cheaper than building the
    header map on every authenticated call). Two are refused: the idempotency layer and the
    balance fast path do not act on such a request, so the handler must not run it either."""
    values = [value for name, value in request.scope["headers"] if name.lower() == b"authorization"]
    if len(values) > 1:
        raise TokenInvalid("send one Authorization header, not several", field="Authorization")
    return values[0].decode("latin-1") if values else ""


def parse_bearer(header: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value; None for anything else."""
    scheme, _, token = header.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def bearer_token(request: Request[object, object, State]) -> str:
    header = _authorization(request)
    if not header and (cookie := session_token(request)):
        return cookie
    token = parse_bearer(header)
    if token is None:
        raise TokenInvalid("send Authorization: Bearer <token>", field="Authorization")
    return token


PRINCIPAL_STATE_KEY = "timebank.principal"
PRINCIPAL_CACHE_SECONDS = 2.0
PRINCIPAL_CACHE_ENTRIES = 10_000


@dataclass(frozen=True)
class _Remembered:
    principal: Principal
    writes: int
    at: datetime


class PrincipalCache:
    """Who a bearer token is, remembered for a moment.

    Authenticating costs four queries and a phone sends its token with every call. An entry is
    forgotten as soon as this process writes to the accounts tables at all (a logout, a revoked
    grant or session, a disabled user, a changed password all do), and after
    ``PRINCIPAL_CACHE_SECONDS`` on the accounts service's clock, which bounds how late a change
    made by another process (the operator CLI, another worker) is seen. Failures are never
    remembered.
    """

    def __init__(self) -> None:
        self._entries: dict[bytes, _Remembered] = {}
        self._lock = threading.Lock()

    def remembered(self, accounts: AccountsService, token: str) -> Principal | None:
        """Who ``token`` is if remembered and still valid, else None: no I/O, safe on an event
        loop (a token that failed is never remembered, so None is all it says of one)."""
        known = self._entries.get(hashlib.sha256(token.encode()).digest())
        if (
            known is not None
            and known.writes == accounts.store.writes
            and 0 <= (accounts.clock() - known.at).total_seconds() < PRINCIPAL_CACHE_SECONDS
        ):
            return known.principal
        return None

    def authenticate(self, accounts: AccountsService, token: str) -> Principal:
        key = hashlib.sha256(token.encode()).digest()
        writes, now = accounts.store.writes, accounts.clock()
        known = self._entries.get(key)
        if (
            known is not None
            and known.writes == writes
            and 0 <= (now - known.at).total_seconds() < PRINCIPAL_CACHE_SECONDS
        ):
            return known.principal
        principal = accounts.authenticate(token)
        with self._lock:
            if len(self._entries) >= PRINCIPAL_CACHE_ENTRIES:
                self._entries.clear()
            self._entries[key] = _Remembered(principal, writes, now)
        return principal


def authenticate(state: State, token: str) -> Principal:
    """The principal for ``token`` (raises ``TokenInvalid``), through the app's cache."""
    cache: PrincipalCache = state.principals
    return cache.authenticate(accounts_service(state), token)


# What a login still on its one-time password may do: see itself, choose its own password,
# enrol its second factor, log out.
WHILE_PASSWORD_CHANGE_DUE = frozenset(
    {"/v1/me", "/v1/auth/password", "/v1/me/totp", "/v1/me/totp/confirm", "/v1/auth/logout"}
)


async def provide_principal(request: Request[object, object, State]) -> Principal:
    """The caller; the idempotency layer may have authenticated this very request already.
    A token the cache remembers is answered on the event loop; any other is looked up in a
    worker thread."""
    token = bearer_token(request)
    known = request.scope["state"].get(PRINCIPAL_STATE_KEY)
    if isinstance(known, Principal):
        principal = known
    else:
        state = request.app.state
        cache: PrincipalCache = state.principals
        remembered = cache.remembered(accounts_service(state), token)
        if remembered is None:
            remembered = await sync_to_thread(authenticate, state, token)
        principal = remembered
    request.scope["state"][PRINCIPAL_STATE_KEY] = principal  # the audit trail reuses it
    if principal.password_change_due and request.url.path not in WHILE_PASSWORD_CHANGE_DUE:
        # The principal holds no role anyway; this says why, and what to do.
        raise PasswordChangeRequired(
            "change your one-time password first (POST /v1/auth/password)", field="password"
        )
    return principal


def client_address(request: Request[object, object, State]) -> str:
    return request.client.host if request.client else "unknown"
