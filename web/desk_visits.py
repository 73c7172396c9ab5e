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
from reports.charts import Bar, rate_bars
from reports.coverage import Coverage, VisitCoverage
from web.desk import staff_or_refusal, translate
from web.i18n import FLAG_LABELS, N_
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
        chart=_chart(request, coverage),
        percent=percent,
        month=coverage.month,
        flag_labels=FLAG_LABELS,
        last_visits={
            u.member_id: u.last_visit.astimezone(zone).strftime("%Y-%m-%d")
            for u in coverage.unvisited
            if u.last_visit is not None
        },
    )


def percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f} %"


def _chart(request: Request[Any, Any, State], coverage: Coverage) -> str:
    """The table's rates as bars, the total last; the line at the end is 100 %."""
    rows = [*coverage.organisations, coverage.total]
    bars = [
        Bar(
            row.org_name
            or translate(request, N_("Total") if row is coverage.total else N_("No organisation")),
            row.rate,
            percent(row.rate),
        )
        for row in rows
    ]
    return rate_bars(
        translate(request, N_("Priority elders visited in %(month)s"), month=coverage.month),
        translate(
            request,
            N_(
                "The share of priority elders visited, per organisation and in total; the line "
                "at the end marks 100 %, the national target. The same figures are in the table."
            ),
        ),
        bars,
    )


VISITS_HANDLERS = [visits]
