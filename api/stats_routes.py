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
from reports.signals import Signal, Signals, SupervisionSignals, Thresholds, thresholds_from

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


def signals_service(state: State) -> SupervisionSignals:
    service: SupervisionSignals = state.signals
    return service


class ThresholdsOut(msgspec.Struct):
    days: int
    near_cap_percent: int
    near_cap_days: int
    pair_factor: int
    pair_min_minutes: int
    staff_share_percent: int
    staff_min_confirmations: int
    late_hours: int
    stored_cap_percent: int
    burst_factor: int
    burst_min: int


class SignalOut(msgspec.Struct):
    kind: str
    org_id: str | None
    subjects: list[str]  # member ids, a pair (volunteer, elder), a staff user id, or a day
    names: list[str]  # masked, for bank administrators; empty for auditors
    measured: int
    threshold: int
    unit: str
    records: list[str]


class SignalsOut(msgspec.Struct):
    bank_id: str
    timezone: str
    start: datetime
    end: datetime
    thresholds: ThresholdsOut
    signals: list[SignalOut]


def _signal(s: Signal) -> SignalOut:
    return SignalOut(
        s.kind.value,
        s.org_id,
        list(s.subjects),
        list(s.names),
        s.measured,
        s.threshold,
        s.unit,
        list(s.records),
    )


def signals_out(found: Signals) -> SignalsOut:
    return SignalsOut(
        found.bank_id,
        found.timezone,
        found.start,
        found.end,
        _thresholds_struct(found.thresholds),
        [_signal(s) for s in found.signals],
    )


def _thresholds_struct(t: Thresholds) -> ThresholdsOut:
    return ThresholdsOut(**{name: getattr(t, name) for name in ThresholdsOut.__struct_fields__})


Whole = Annotated[int | None, Parameter(ge=0, le=10**7)]


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

    @get("/signals", sync_to_thread=True, responses=problems(400, 401, 403))
    def signals(
        self,
        state: State,
        principal: P,
        until: Annotated[
            datetime | None, Parameter(description="the window's end (default: now)")
        ] = None,
        days: Whole = None,
        near_cap_percent: Whole = None,
        near_cap_days: Whole = None,
        pair_factor: Whole = None,
        pair_min_minutes: Whole = None,
        staff_share_percent: Whole = None,
        staff_min_confirmations: Whole = None,
        late_hours: Whole = None,
        stored_cap_percent: Whole = None,
        burst_factor: Whole = None,
        burst_min: Whole = None,
    ) -> SignalsOut:
        """Supervision signals of the last ``days`` up to ``until`` (default: now), each with
        the records behind it: never a verdict. Every threshold has a default
        (docs/statistics.md); bank administrators see masked names, auditors ids only."""
        given = {
            "days": days,
            "near_cap_percent": near_cap_percent,
            "near_cap_days": near_cap_days,
            "pair_factor": pair_factor,
            "pair_min_minutes": pair_min_minutes,
            "staff_share_percent": staff_share_percent,
            "staff_min_confirmations": staff_min_confirmations,
            "late_hours": late_hours,
            "stored_cap_percent": stored_cap_percent,
            "burst_factor": burst_factor,
            "burst_min": burst_min,
        }
        thresholds = thresholds_from(given.items())
        return signals_out(signals_service(state).signals(principal, thresholds, until))


STATS_CONTROLLERS = [StatsController]
