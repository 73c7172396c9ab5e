"""Calling the app as uvicorn does, and telling which requests reached Litestar's own entry
point: for the fast paths answered in front of it (``api.front_app.TimebankApp``)."""

from __future__ import annotations

from typing import Any, cast

import anyio
import pytest
from litestar import Litestar
from litestar.types import Message, Scope


def asgi_get(
    app: Litestar,
    path: str,
    headers: list[tuple[bytes, bytes]],
    *,
    route_only: bool,
    method: str = "GET",
    host: bytes = b"testserver",
    body: bytes = b"",
) -> list[Message]:
    """What the app sends for a GET (or ``method`` with ``body``) of ``path``, through its own
    entry point or only through Litestar's (the route, past any fast path in front of it). The
    headers go as uvicorn hands them over: a repeated one stays two."""
    target, _, query = path.partition("?")
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": target,
        "raw_path": target.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", host), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    async def call() -> None:
        entry = Litestar.__call__ if route_only else type(app).__call__
        await entry(app, cast("Scope", scope), receive, send)

    anyio.run(call)
    return sent


def count_routed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths that will reach Litestar's own entry point (not answered in front of it)."""
    seen: list[str] = []
    through = Litestar.__call__

    async def counting(self: Litestar, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            seen.append(scope["path"])
        await through(self, scope, receive, send)

    monkeypatch.setattr(Litestar, "__call__", counting)
    return seen
