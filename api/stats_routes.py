"""``/v1/stats/…``: the figures the people who run and regulate the bank act on. Every rule is
in ``reports``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from litestar import Controller, get
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import Parameter

from accounts.model import Principal
from api.accounts_routes import AUTH
from api.schemas import problems
from reports.coverage import (
    UNVISITED_LIMIT,
    UNVISITED_MAX,
    Coverage,
    OrgCoverage,
    VisitCoverage,
)

P = NamedDependency[Principal]


def coverage_service(state: State) -> VisitCoverage:
    service: VisitCoverage = state.coverage
    return service


class OrgCoverageOut(msgspec.Struct):
    org_id: str | None
    org_name: str
    priority_elders: int
    visited: int
    rate: float | None  # 0–1; null when there is no one to visit


class UnvisitedOut(msgspec.Struct):
    member_id: str
    org_id: str | None
    name: str  # masked
    area: str  # the masked address
    flags: list[str]
    last_visit: datetime | None


class CoverageOut(msgspec.Struct):
    bank_id: str
    month: str
    timezone: str
    start: datetime
    end: datetime
    live: bool
    flags: list[str]
    services: list[str]
    organisations: list[OrgCoverageOut]
    total: OrgCoverageOut
    unvisited: list[UnvisitedOut]  # never visited first, then the oldest last visit
    unvisited_total: int


def _org(o: OrgCoverage) -> OrgCoverageOut:
    rate = None if o.rate is None else round(o.rate, 4)
    return OrgCoverageOut(o.org_id, o.org_name, o.priority_elders, o.visited, rate)


def coverage_out(c: Coverage) -> CoverageOut:
    return CoverageOut(
        c.bank_id,
        c.month,
        c.timezone,
        c.start,
        c.end,
        c.live,
        list(c.flags),
        list(c.services),
        [_org(o) for o in c.organisations],
        _org(c.total),
        [
            UnvisitedOut(u.member_id, u.org_id, u.name, u.area, list(u.flags), u.last_visit)
            for u in c.unvisited
        ],
        c.unvisited_total,
    )


class StatsController(Controller):
    path = "/v1/stats"
    tags = ["statistics"]
    dependencies = AUTH

    @get("/coverage", sync_to_thread=True, responses=problems(400, 401, 403, 404))
    def coverage(
        self,
        state: State,
        principal: P,
        month: Annotated[str | None, Parameter(max_length=7, description="YYYY-MM")] = None,
        org_id: Annotated[str | None, Parameter(max_length=32)] = None,
        limit: Annotated[int, Parameter(ge=1, le=UNVISITED_MAX)] = UNVISITED_LIMIT,
    ) -> CoverageOut:
        """Visit coverage of priority elders for a month (default: this one) in the bank's time
        zone: per organisation and in total, and for staff the elders not yet visited (the
        ``limit`` longest without a visit; ``unvisited_total`` counts them all)."""
        return coverage_out(coverage_service(state).coverage(principal, month, org_id, limit))


STATS_CONTROLLERS = [StatsController]
