"""``/v1/stats/…``: the figures the people who run and regulate the bank act on. Every rule is
in ``reports``."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.enums import MediaType
from litestar.params import JSONBody, Parameter
from litestar.status_codes import HTTP_201_CREATED

from accounts.errors import InvalidInput
from accounts.model import Principal
from api.accounts_routes import AUTH, Id
from api.export_routes import ExportsController
from api.schemas import Input, problems
from reports.coverage import (
    UNVISITED_LIMIT,
    UNVISITED_MAX,
    Coverage,
    OrgCoverage,
    VisitCoverage,
)
from reports.halfyear import HalfYearReports, Published
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


def _instant(text: str, field: str) -> datetime:
    """An ISO 8601 time as written (``2026-04-01T00:00:00+08:00``), never a bare number."""
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidInput("%(field)s must be an ISO 8601 time", field=field) from exc


# A threshold's range is the rule's (``reports.signals.LIMITS``), checked there so that a value
# out of it is refused as the signals page refuses it: "days must be 1-366", in the caller's
# language, not as the framework's "expected int >= 0".
Whole = Annotated[int | None, Parameter(description="a whole number (docs/statistics.md)")]


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
            str | None,
            Parameter(
                max_length=40,
                description="the window's end, ISO 8601 with its zone (default: now)",
            ),
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
        end = _instant(until, "until") if until is not None else None
        return signals_out(signals_service(state).signals(principal, thresholds, end))


def reports_service(state: State) -> HalfYearReports:
    service: HalfYearReports = state.reports
    return service


class PublishIn(Input):
    half: Annotated[str, msgspec.Meta(max_length=16)]  # YYYY-H1 or YYYY-H2


class ReportOut(msgspec.Struct):
    id: str
    bank_id: str
    half: str
    sha256: str  # hex SHA-256 of the document's canonical bytes (GET …/document)
    tree_size: int  # the checkpoint the public part was computed at
    entry_id: str  # the log's report entry
    seq: int | None
    published_at: datetime
    document: dict[str, Any]


def report_out(report: Published) -> ReportOut:
    return ReportOut(
        report.id,
        report.bank_id,
        report.half,
        report.sha256,
        report.tree_size,
        report.entry_id,
        report.seq,
        report.published_at,
        json.loads(report.data),
    )


class ReportsController(Controller):
    """Half-yearly reports: published by a bank administrator, public to everyone."""

    path = "/v1/reports"
    tags = ["statistics"]

    @post(
        "/",
        dependencies=AUTH,
        status_code=HTTP_201_CREATED,
        sync_to_thread=True,
        responses=problems(400, 401, 403, 409),
    )
    def publish(self, state: State, principal: P, data: JSONBody[PublishIn]) -> ReportOut:
        """Compute the report of a half year that has ended (``YYYY-H1``: January–June in the
        bank's time zone) at the log's latest checkpoint, store it and anchor its SHA-256 in
        the log with a ``report`` entry (bank administrators; a half published already is a
        409)."""
        return report_out(reports_service(state).publish(principal, data.half))

    @get("/", sync_to_thread=True)
    def list_reports(self, state: State) -> list[ReportOut]:
        """Every published report (public: aggregate figures, no personal data)."""
        return [report_out(r) for r in reports_service(state).list()]

    @get("/{report_id:str}", sync_to_thread=True, responses=problems(400, 404))
    def get_report(self, state: State, report_id: Id) -> ReportOut:
        """One published report, with its document."""
        return report_out(reports_service(state).get(report_id))

    @get(
        "/{report_id:str}/document",
        sync_to_thread=True,
        media_type=MediaType.JSON,
        responses=problems(400, 404),
    )
    def document(self, state: State, report_id: Id) -> Response[bytes]:
        """The document's canonical bytes exactly as hashed into the log: the file
        ``timebank audit report`` checks."""
        report = reports_service(state).get(report_id)
        return Response(report.data, media_type=MediaType.JSON)


STATS_CONTROLLERS = [StatsController, ExportsController, ReportsController]
