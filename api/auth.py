"""Who is calling: ``Authorization: Bearer <token>`` for people, the same header with a
``tbk_`` partner API key for partner platforms. Handlers ask for ``principal`` and get one, or
the request ends with a 401 problem before the handler runs."""

from __future__ import annotations

from litestar import Request
from litestar.datastructures import State

from accounts.errors import TokenInvalid
from accounts.model import Principal
from accounts.service import AccountsService


def accounts_service(state: State) -> AccountsService:
    service: AccountsService = state.accounts
    return service


def bearer_token(request: Request[object, object, State]) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenInvalid("send Authorization: Bearer <token>", field="Authorization")
    return token.strip()


PRINCIPAL_STATE_KEY = "timebank.principal"


def provide_principal(request: Request[object, object, State]) -> Principal:
    principal = accounts_service(request.app.state).authenticate(bearer_token(request))
    request.scope["state"][PRINCIPAL_STATE_KEY] = principal  # the audit trail reuses it
    return principal


def client_address(request: Request[object, object, State]) -> str:
    return request.client.host if request.client else "unknown"
