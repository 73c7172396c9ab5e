"""The supervision signals page (综合监管), for bank administrators (from the console) and
auditors: the patterns worth a look in a window of days, each with the records behind it,
never a verdict. The same ``SupervisionSignals.signals`` as ``GET /v1/stats/signals``."""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Annotated, Any

from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.params import QueryParameter

from accounts.errors import AccountsError, InvalidInput
from accounts.model import Principal
from reports.signals import SignalKind, Signals, SupervisionSignals, Thresholds
from web.i18n import N_, SIGNAL_LABELS
from web.pages import refusal, render, to_login
from web.session import accounts_of, viewer

Number = Annotated[str | None, QueryParameter(max_length=12)]

# What each signal is, in words the page shows (the catalog translates them).
KINDS = {
    SignalKind.NEAR_DAILY_CAP: N_("A volunteer near the daily cap day after day"),
    SignalKind.HEAVY_PAIR: N_("One volunteer and one elder far above the organisation's usual"),
    SignalKind.STAFF_CONFIRMS_FOR_ELDERS: N_("One staff member confirming for the elders"),
    SignalKind.LATE_RECORD: N_("Records written long after the service"),
    SignalKind.NEAR_STORED_CAP: N_("Deposits that left a volunteer near the stored-time cap"),
    SignalKind.REGISTRATION_BURST: N_("A day of many registrations"),
}
UNITS = {
    "days": N_("%(measured)s days (threshold %(threshold)s)"),
    "minutes": N_("%(measured)s minutes (threshold %(threshold)s)"),
    "percent": N_("%(measured)s %% (threshold %(threshold)s %%)"),
    "hours": N_("%(measured)s hours late at most (threshold %(threshold)s)"),
    "members": N_("%(measured)s registrations (threshold %(threshold)s)"),
}


def signals_of(request: Request[Any, Any, State]) -> SupervisionSignals:
    service: SupervisionSignals = request.app.state.signals
    return service


def _thresholds(given: dict[str, str | None]) -> Thresholds:
    """The form's numbers over the defaults; a number that is not one is the field's error (a
    negative one is a number: the service's range check names the rule it breaks)."""
    chosen = Thresholds()
    for f in fields(Thresholds):
        text = (given.get(f.name) or "").strip()
        if not text:
            continue
        if not text.removeprefix("-").isdigit():
            raise InvalidInput(N_("%(field)s must be a whole number"), field=f.name)
        chosen = replace(chosen, **{f.name: int(text)})
    return chosen


@get("/signals", sync_to_thread=True, include_in_schema=False)
def signals_page(
    request: Request[Any, Any, State],
    days: Number = None,
    near_cap_percent: Number = None,
    near_cap_days: Number = None,
    pair_factor: Number = None,
    pair_min_minutes: Number = None,
    staff_share_percent: Number = None,
    staff_min_confirmations: Number = None,
    late_hours: Number = None,
    stored_cap_percent: Number = None,
    burst_factor: Number = None,
    burst_min: Number = None,
) -> Response[Any]:
    who = viewer(request)
    if who is None:
        return to_login(request)
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
    context: dict[str, Any] = {
        "labels": SIGNAL_LABELS,
        "kinds": KINDS,
        "units": UNITS,
        "form": given,
    }
    try:
        found = signals_of(request).signals(who, _thresholds(given))
    except AccountsError as exc:
        return refusal(request, exc, "signals.html", who, found=None, **context)
    return render(
        request,
        "signals.html",
        who,
        found=found,
        org_names=_org_names(request, who, found),
        **context,
    )


def _org_names(
    request: Request[Any, Any, State], who: Principal, found: Signals
) -> dict[str | None, str]:
    if not found.signals:
        return {}
    return {o.id: o.name for o in accounts_of(request).list_orgs(who)}


SIGNALS_HANDLERS = [signals_page]
