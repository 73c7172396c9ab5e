"""The auditor's page: the audit trail with filters (the same ``AuditTrail.events`` query and
the same refusal as ``GET /v1/audit/events``), the latest ``timebank audit verify --record``
run on this server, and links to export the trail and the log."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.params import QueryParameter
from litestar.response import Redirect, Stream

from accounts.errors import Forbidden
from accounts.model import Principal, Role
from audit import last_run
from audit.trail import AuditEvent, AuditTrail, time_bound
from web.i18n import N_, gettext_for
from web.pages import language_of, render, to_login
from web.session import viewer

Text = Annotated[str | None, QueryParameter(max_length=200)]
AfterSeq = Annotated[int | None, QueryParameter(ge=-1, le=2**53 - 1)]
PAGE = 50
EXPORT_PAGE = 1000


def trail_of(request: Request[Any, Any, State]) -> AuditTrail:
    trail: AuditTrail = request.app.state.audit
    return trail


def auditor_or_login(request: Request[Any, Any, State]) -> Principal | Redirect:
    principal = viewer(request)
    if principal is None:
        return to_login(request)
    if not principal.has(Role.AUDITOR):
        raise Forbidden("the audit trail is for auditors")  # as GET /v1/audit/events
    return principal


def event_json(event: AuditEvent) -> dict[str, Any]:
    """An event as ``GET /v1/audit/events`` serves it (with its hash)."""
    return {**event.to_json(), "hash": base64.b64encode(event.hash()).decode()}


def _filters(**given: str | None) -> dict[str, str]:
    return {k: v.strip() for k, v in given.items() if v is not None and v.strip()}


def _query(filters: dict[str, str]) -> tuple[dict[str, str], str | None]:
    """The filters for ``AuditTrail.events`` (time bounds as events write their times), and
    the first time bound that is not a day or a UTC time (None when all are)."""
    query = dict(filters)
    for name in ("since", "until"):
        if name in query:
            bound = time_bound(query[name])
            if bound is None:
                return query, name
            query[name] = bound
    return query, None


@get("/audit", sync_to_thread=True, include_in_schema=False)
def audit_page(
    request: Request[Any, Any, State],
    since: Text = None,
    until: Text = None,
    actor: Text = None,
    action: Text = None,
    object_id: Text = None,
    after_seq: AfterSeq = None,
) -> Response[Any]:
    who = auditor_or_login(request)
    if not isinstance(who, Principal):
        return who
    filters = _filters(since=since, until=until, actor=actor, action=action, object_id=object_id)
    query, wrong = _query(filters)
    if wrong is not None:  # said next to the field, not read as "no events"
        return render(
            request,
            "audit/events.html",
            who,
            status=400,
            error=gettext_for(language_of(request))(
                N_("Give a day (2026-12-01) or a UTC time (2026-12-01T08:00:00Z)")
            ),
            error_field=wrong,
            events=[],
            filters=filters,
            next_after=None,
            query="",
            last=None,
            request_base=str(request.base_url).rstrip("/"),
        )
    events = trail_of(request).events(
        bank_id=who.bank_id, after_seq=after_seq, limit=PAGE + 1, **query
    )
    more = len(events) > PAGE
    events = events[:PAGE]
    data_dir: Path | None = getattr(request.app.state, "data_dir", None)
    return render(
        request,
        "audit/events.html",
        who,
        events=events,
        filters=filters,
        next_after=events[-1].seq if more and events else None,
        query=urlencode(filters),
        last=last_run.load(data_dir) if data_dir is not None else None,
        request_base=str(request.base_url).rstrip("/"),
    )


@get("/audit/events.jsonl", sync_to_thread=True, include_in_schema=False)
def export_events(
    request: Request[Any, Any, State],
    since: Text = None,
    until: Text = None,
    actor: Text = None,
    action: Text = None,
    object_id: Text = None,
) -> Response[Any]:
    """Every event matching the filters, one JSON object a line, as the API serves them
    (the format of ``audit-events.jsonl`` in an export bundle)."""
    who = auditor_or_login(request)
    if not isinstance(who, Principal):
        return who
    filters = _filters(since=since, until=until, actor=actor, action=action, object_id=object_id)
    query, wrong = _query(filters)
    if wrong is not None:
        refusal = N_("Give a day (2026-12-01) or a UTC time (2026-12-01T08:00:00Z)")
        message = gettext_for(language_of(request))(refusal)
        return Response(message + "\n", status_code=400, media_type="text/plain")
    trail = trail_of(request)

    def lines() -> Iterator[bytes]:
        after = None
        while True:
            page = trail.events(bank_id=who.bank_id, after_seq=after, limit=EXPORT_PAGE, **query)
            for event in page:
                yield (json.dumps(event_json(event), ensure_ascii=False) + "\n").encode()
            if len(page) < EXPORT_PAGE:
                return
            after = page[-1].seq

    return Stream(
        lines(),
        media_type="application/jsonl",
        headers={
            "content-disposition": 'attachment; filename="audit-events.jsonl"',
            "cache-control": "no-store",
        },
    )


AUDITOR_HANDLERS = [audit_page, export_events]
