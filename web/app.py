"""The web app's routes, mounted at ``/`` beside the JSON API at ``/v1`` (``api.app`` composes
them). Static files are the committed ones under ``web/static`` (vendored from npm by
``make vendor``); nothing is fetched from anywhere else."""

from __future__ import annotations

import functools
import hashlib
import html
import logging
import mimetypes
from pathlib import Path
from typing import Any

from litestar import Request, Response, Router, get
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.openapi.plugins import OpenAPIRenderPlugin
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler, ExceptionHandlersMap

from accounts.errors import AccountsError
from care.errors import CareError
from web.auditor import AUDITOR_HANDLERS
from web.console import CONSOLE_HANDLERS
from web.console_minutes import MINUTES_HANDLERS
from web.desk import DESK_HANDLERS
from web.desk_paper import PAPER_HANDLERS
from web.desk_people import PEOPLE_HANDLERS
from web.desk_staff import STAFF_HANDLERS
from web.desk_visits import VISITS_HANDLERS
from web.documents import DOCUMENT_HANDLERS
from web.elder import ELDER_HANDLERS
from web.elder_ask import ASK_HANDLERS
from web.elder_visits import VISIT_HANDLERS
from web.exchanges import EXCHANGE_HANDLERS
from web.i18n import gettext_for
from web.links import LINK_HANDLERS
from web.pages import PAGE_HANDLERS, error_page, language_of, render
from web.public import PUBLIC_HANDLERS
from web.signals import SIGNALS_HANDLERS
from web.transfers import TRANSFER_HANDLERS
from web.volunteer import VOLUNTEER_HANDLERS
from web.volunteer_give import GIVE_HANDLERS

STATIC_DIR = Path(__file__).parent / "static"
mimetypes.add_type("application/manifest+json", ".webmanifest")
log = logging.getLogger(__name__)


def internal_page(request: Request[Any, Any, State], exc: Exception) -> Response[Any]:
    log.error("internal error on %s %s: %s", request.method, request.url.path, type(exc).__name__)
    _ = gettext_for(language_of(request))
    return render(
        request,
        "error.html",
        status=500,
        title=_("Internal error"),
        detail=_("Server error: check whether the change was saved before trying again."),
    )


PAGE_ERRORS: ExceptionHandlersMap = {
    AccountsError: error_page,
    CareError: error_page,
    HTTPException: error_page,
    Exception: internal_page,
}


SHELL_VERSION_MARK = "{shell_version}"


def shell_version(static_dir: Path) -> str:
    """A digest of every static file. It names the service worker's cache of the app shell, so
    a changed file changes the worker's bytes: phones fetch the new shell instead of serving
    the copy they cached first for ever."""
    digest = hashlib.sha256()
    for path in sorted(p for p in static_dir.rglob("*") if p.is_file()):
        digest.update(path.relative_to(static_dir).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


@functools.cache
def service_worker_source() -> bytes:
    source = (STATIC_DIR / "sw.js").read_text(encoding="utf-8")
    if SHELL_VERSION_MARK not in source:
        raise RuntimeError(f"web/static/sw.js no longer names its cache {SHELL_VERSION_MARK}")
    return source.replace(SHELL_VERSION_MARK, shell_version(STATIC_DIR)).encode()


@get("/sw.js", include_in_schema=False)
async def service_worker() -> Response[bytes]:
    """At the root, so that it may control every page of the app."""
    return Response(
        service_worker_source(),
        media_type="text/javascript",
        headers={"cache-control": "no-cache"},
    )


def web_routes() -> list[ControllerRouterHandler]:
    pages = Router(
        path="/",
        route_handlers=[
            *PAGE_HANDLERS,
            *VOLUNTEER_HANDLERS,
            *GIVE_HANDLERS,
            *TRANSFER_HANDLERS,
            *DOCUMENT_HANDLERS,
            *PUBLIC_HANDLERS,
            *CONSOLE_HANDLERS,
            *MINUTES_HANDLERS,
            *AUDITOR_HANDLERS,
            *ELDER_HANDLERS,
            *ASK_HANDLERS,
            *VISIT_HANDLERS,
            *DESK_HANDLERS,
            *PEOPLE_HANDLERS,
            *PAPER_HANDLERS,
            *VISITS_HANDLERS,
            *SIGNALS_HANDLERS,
            *STAFF_HANDLERS,
            *LINK_HANDLERS,
            *EXCHANGE_HANDLERS,
            service_worker,
        ],
        exception_handlers=PAGE_ERRORS,
    )
    static = create_static_files_router(
        path="/static",
        directories=[STATIC_DIR],
        include_in_schema=False,
        cache_control=None,
    )
    return [pages, static]


class LocalSwaggerUI(OpenAPIRenderPlugin):
    """Swagger UI for ``/schema`` from the vendored ``swagger-ui-dist`` files: no inline
    script, no CDN, no favicon or validator fetched from elsewhere."""

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        url = html.escape(self.get_openapi_json_route(request), quote=True)
        return (
            "<!doctype html><html lang=en><head><meta charset=utf-8>"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            "<title>Timebank API</title>"
            '<link rel="stylesheet" href="/static/vendor/swagger-ui/swagger-ui.css">'
            '<script src="/static/vendor/swagger-ui/swagger-ui-bundle.js" defer></script>'
            '<script src="/static/schema.js" defer></script></head>'
            f'<body><main id="swagger-ui" data-url="{url}"></main></body></html>'
        ).encode()
