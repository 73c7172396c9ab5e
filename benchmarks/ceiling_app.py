"""The framework's ceiling: one trivial Litestar route on the same uvicorn as ``timebank serve``.

``benchmarks/http_load.py`` serves this next to the real app, in the same run, so that every HTTP
figure can be read as a fraction of what the stack itself allows on this machine.
"""

from __future__ import annotations

from litestar import Litestar, MediaType, get


@get("/hello", media_type=MediaType.TEXT, sync_to_thread=False)
def hello() -> str:
    return "hello\n"


app = Litestar(route_handlers=[hello], openapi_config=None)
