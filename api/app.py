"""Build the Litestar application around one open ``Log``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, get
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig

from api.log_routes import LogController
from api.problems import EXCEPTION_HANDLERS
from ledger.config import Settings
from ledger.log import Log
from migrations.runner import upgrade


@get("/healthz", sync_to_thread=True, tags=["ops"])
def healthz(state: State) -> dict[str, Any]:
    """Liveness and the size of the signed tree."""
    log: Log = state.log
    return {"status": "ok", "tree_size": log.size()}


def create_app(settings: Settings | None = None, log: Log | None = None) -> Litestar:
    """The app for ``settings`` (from the environment by default).

    SQLite databases are migrated on start; PostgreSQL ones with ``timebank migrate``.
    """
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        owned = log is None
        if owned and settings.is_sqlite:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            upgrade(settings.database_url)
        app.state.log = log or Log.open(settings)
        try:
            yield
        finally:
            if owned:
                app.state.log.close()

    return Litestar(
        route_handlers=[healthz, LogController],
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=OpenAPIConfig(
            title="Timebank",
            version="0.1.0",
            description="Elderly-care time bank: a signed, append-only ledger of volunteer hours.",
            path="/schema",
        ),
        debug=False,
    )
