"""Build the Litestar application around one open ``Log`` and the accounts service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from litestar import Litestar, get
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from accounts.protection import Protector, data_key_path, load_or_create_data_key
from accounts.service import AccountsService
from accounts.storage import AccountsStore
from api.accounts_routes import ACCOUNT_CONTROLLERS
from api.log_routes import LogController
from api.problems import EXCEPTION_HANDLERS
from ledger.config import Settings
from ledger.log import Log
from migrations.runner import upgrade


@dataclass
class Services:
    """Everything the app holds open; closed together on shutdown."""

    log: Log
    accounts: AccountsService

    @classmethod
    def open(cls, settings: Settings, log: Log | None = None) -> Services:
        log = log or Log.open(settings)
        protector = Protector(load_or_create_data_key(data_key_path(settings.data_dir)))
        accounts = AccountsService(AccountsStore(settings.database_url), protector, log)
        return cls(log, accounts)

    def close(self, close_log: bool = True) -> None:
        self.accounts.store.dispose()
        if close_log:
            self.log.close()


@get("/healthz", sync_to_thread=True, tags=["ops"])
def healthz(state: State) -> dict[str, Any]:
    """Liveness and the size of the signed tree."""
    log: Log = state.log
    return {"status": "ok", "tree_size": log.size()}


def create_app(settings: Settings | None = None, log: Log | None = None) -> Litestar:
    """The app for ``settings`` (from the environment by default).

    SQLite databases are migrated on start; PostgreSQL ones with ``timebank migrate``.
    A ``log`` passed in (tests) is used as is and left open on shutdown.
    """
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if log is None and settings.is_sqlite:
            settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            upgrade(settings.database_url)
        services = Services.open(settings, log)
        app.state.log = services.log
        app.state.accounts = services.accounts
        try:
            yield
        finally:
            services.close(close_log=log is None)

    return Litestar(
        route_handlers=[healthz, LogController, *ACCOUNT_CONTROLLERS],
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=OpenAPIConfig(
            title="Timebank",
            version="0.1.0",
            description=(
                "Elderly-care time bank: a signed, append-only ledger of volunteer hours. "
                "Errors are RFC 9457 application/problem+json."
            ),
            path="/schema",
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(
                        type="http",
                        scheme="bearer",
                        description="A session token from /v1/auth/login, or a partner key (tbk_…)",
                    )
                }
            ),
        ),
        debug=False,
    )
