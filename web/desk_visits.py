"""The desk's visit coverage page: of this month's priority elders, how many were visited, per
organisation, and who is still to visit, so that staff act before the month ends. The same
``VisitCoverage.coverage`` as ``GET /v1/stats/coverage``."""

from __future__ import annotations

from typing import Annotated, Any
from zoneinfo import ZoneInfo

from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.params import QueryParameter

from accounts.errors import AccountsError
from accounts.model import Principal
from reports.coverage import VisitCoverage
from web.desk import staff_or_refusal
from web.desk_people import FLAG_LABELS
from web.pages import refusal, render

Month = Annotated[str | None, QueryParameter(max_length=7)]


def coverage_of(request: Request[Any, Any, State]) -> VisitCoverage:
    service: VisitCoverage = request.app.state.coverage
    return service


@get("/desk/visits", sync_to_thread=True, include_in_schema=False)
def visits(request: Request[Any, Any, State], month: Month = None) -> Response[Any]:
    who = staff_or_refusal(request)
    if not isinstance(who, Principal):
        return who
    try:
        coverage = coverage_of(request).coverage(who, month or None, None)
    except AccountsError as exc:
        return refusal(request, exc, "desk/visits.html", who, coverage=None, month=month)
    zone = ZoneInfo(coverage.timezone)
    return render(
        request,
        "desk/visits.html",
        who,
        coverage=coverage,
        month=coverage.month,
        flag_labels=FLAG_LABELS,
        last_visits={
            u.member_id: u.last_visit.astimezone(zone).strftime("%Y-%m-%d")
            for u in coverage.unvisited
            if u.last_visit is not None
        },
    )


VISITS_HANDLERS = [visits]
