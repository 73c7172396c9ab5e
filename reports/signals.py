"""Supervision signals (综合监管): patterns in a bank's records that its administrators and
auditors should look at, each with the records behind it. A signal is never a verdict: a
volunteer near the daily cap day after day may simply be devoted; the records let a person judge.

Signals over a window of days ending at ``until`` (default: now), in the bank's time zone
(docs/statistics.md defines each one exactly):

* ``near_daily_cap``: a volunteer's logged minutes reached ``near_cap_percent`` % of the daily
  cap on at least ``near_cap_days`` days;
* ``heavy_pair``: one volunteer–elder pair's minutes are at least ``pair_factor`` × the median
  pair of their organisation, and at least ``pair_min_minutes``;
* ``staff_confirms_for_elders``: one staff member confirmed, on elders' behalf
  (``staff_for_elder``), at least ``staff_share_percent`` % of the organisation's confirmations,
  and at least ``staff_min_confirmations`` of them;
* ``late_record``: a volunteer's records written ``late_hours`` or more after the service ended;
* ``near_stored_cap``: a deposit that left the volunteer at ``stored_cap_percent`` % of the
  stored-time cap or more;
* ``registration_burst``: a day on which an organisation registered at least ``burst_factor`` ×
  its median day and at least ``burst_min`` members.

Thresholds are settings of each call (``Thresholds``; defaults below). Bank administrators see
the members' masked names; auditors see the same signals by id only.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, timedelta
from statistics import median_low
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from accounts.errors import Forbidden, InvalidInput
from accounts.model import Principal, Role
from accounts.service import AccountsService
from accounts.storage import AccountsStore
from care.model import ConfirmedAs, Policy
from reports.repo import (
    deposits_verified,
    member_orgs,
    members_registered,
    records_confirmed,
    records_logged,
    records_logged_between,
    usernames,
)


class SignalKind(enum.StrEnum):
    NEAR_DAILY_CAP = "near_daily_cap"
    HEAVY_PAIR = "heavy_pair"
    STAFF_CONFIRMS_FOR_ELDERS = "staff_confirms_for_elders"
    LATE_RECORD = "late_record"
    NEAR_STORED_CAP = "near_stored_cap"
    REGISTRATION_BURST = "registration_burst"


LIMITS = {  # each threshold's allowed range
    "days": (1, 366),
    "near_cap_percent": (1, 100),
    "near_cap_days": (1, 366),
    "pair_factor": (1, 1000),
    "pair_min_minutes": (0, 10**7),
    "staff_share_percent": (1, 100),
    "staff_min_confirmations": (1, 10**6),
    "late_hours": (1, 24 * 366),
    "stored_cap_percent": (1, 100),
    "burst_factor": (1, 1000),
    "burst_min": (1, 10**6),
}


@dataclass(frozen=True)
class Thresholds:
    """When a pattern becomes a signal. Every value a whole number, checked by ``problems``."""

    days: int = 30
    near_cap_percent: int = 90
    near_cap_days: int = 5
    pair_factor: int = 3
    pair_min_minutes: int = 600
    staff_share_percent: int = 50
    staff_min_confirmations: int = 10
    late_hours: int = 72
    stored_cap_percent: int = 95
    burst_factor: int = 3
    burst_min: int = 10

    def problems(self) -> list[InvalidInput]:
        """Every value out of its range, each as the refusal naming its field: all of them,
        not the first."""
        found = []
        for f in fields(self):
            low, high = LIMITS[f.name]
            value = getattr(self, f.name)
            if not low <= value <= high:
                found.append(
                    InvalidInput(
                        "%(field)s must be %(low)s-%(high)s", field=f.name, low=low, high=high
                    )
                )
        return found


@dataclass(frozen=True)
class Signal:
    kind: SignalKind
    org_id: str | None
    subjects: tuple[str, ...]  # member ids (a pair: volunteer, elder), a staff user id, or a day
    names: tuple[str, ...]  # the subjects as a bank administrator sees them; () for auditors
    measured: int  # the figure that crossed the threshold, in ``unit``
    threshold: int
    unit: str  # days, minutes, percent, hours, members
    records: tuple[str, ...]  # the service records behind it (members, for registrations)


@dataclass(frozen=True)
class Signals:
    bank_id: str
    timezone: str
    start: datetime  # UTC
    end: datetime  # UTC, exclusive
    thresholds: Thresholds
    signals: tuple[Signal, ...]


class BalancesAfter(Protocol):
    """The ledger, as far as the signals need it."""

    def balances_after(self, points: list[tuple[str, int]]) -> dict[tuple[str, int], int]: ...


class SupervisionSignals:
    """Finds the signals of a bank for its administrators and auditors."""

    def __init__(
        self,
        store: AccountsStore,
        accounts: AccountsService,
        ledger: BalancesAfter,
        policy: Callable[[str], Policy],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store, self.accounts, self.ledger = store, accounts, ledger
        self.policy, self.clock = policy, clock

    def signals(
        self, principal: Principal, thresholds: Thresholds, until: datetime | None = None
    ) -> Signals:
        if principal.is_partner or not (principal.is_bank_admin or principal.has(Role.AUDITOR)):
            raise Forbidden("supervision signals are for bank administrators and auditors")
        problems = thresholds.problems()
        if problems:
            raise problems[0]  # a problem names one field: the first
        end = until or self.clock()
        if end.tzinfo is None:
            raise InvalidInput("until needs a time zone", field="until")
        end = end.astimezone(UTC)
        start = end - timedelta(days=thresholds.days)
        policy = self.policy(principal.bank_id)
        zone = ZoneInfo(policy.timezone)
        t = thresholds
        with self.store.snapshot() as tx:
            logged = records_logged(tx, principal.bank_id, start, end)
            confirmed = records_confirmed(tx, principal.bank_id, start, end)
            written = records_logged_between(tx, principal.bank_id, start, end)
            deposits = deposits_verified(tx, principal.bank_id, start, end)
            registered = members_registered(tx, principal.bank_id, start, end)
            volunteers = {r.volunteer_id for r in (*logged, *written, *deposits)}
            orgs = member_orgs(tx, volunteers)
            staff = usernames(tx, {r.confirmed_by for r in confirmed if r.confirmed_by})
        found = [
            *_near_daily_cap(logged, zone, policy.daily_cap_minutes, t, orgs),
            *_heavy_pairs(logged, t),
            *_staff_confirms(confirmed, t),
            *_late_records(written, t, orgs),
            *self._near_stored_cap(deposits, policy.stored_cap_minutes, t, orgs),
            *_registration_bursts(registered, zone, start, end, t),
        ]
        named = self._named(principal, found, staff)
        return Signals(principal.bank_id, policy.timezone, start, end, thresholds, named)

    def _near_stored_cap(
        self, deposits: list[Any], cap: int, t: Thresholds, orgs: dict[str, str | None]
    ) -> list[Signal]:
        near = -(-cap * t.stored_cap_percent // 100)  # whole minutes, rounded up
        after = self.ledger.balances_after([(r.ledger_account, r.deposit_seq) for r in deposits])
        by_volunteer: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for r in deposits:
            balance = after[(r.ledger_account, r.deposit_seq)]
            if balance >= near:
                by_volunteer[r.volunteer_id].append((balance, r.id))
        return [
            Signal(
                SignalKind.NEAR_STORED_CAP,
                orgs.get(volunteer),
                (volunteer,),
                (),
                max(b for b, _ in hits),
                near,
                "minutes",
                tuple(record for _, record in hits),
            )
            for volunteer, hits in sorted(by_volunteer.items())
        ]

    def _named(
        self, principal: Principal, found: list[Signal], staff: dict[str, str]
    ) -> tuple[Signal, ...]:
        ordered = sorted(found, key=lambda s: (s.kind, s.org_id or "", s.subjects))
        if not principal.is_bank_admin:
            return tuple(ordered)
        people = {
            m
            for s in ordered
            if s.kind not in (SignalKind.STAFF_CONFIRMS_FOR_ELDERS, SignalKind.REGISTRATION_BURST)
            for m in s.subjects
        }
        masked = self.accounts.masked_names(principal, sorted(people))
        named = []
        for s in ordered:
            if s.kind is SignalKind.STAFF_CONFIRMS_FOR_ELDERS:
                names = tuple(staff.get(u, "") for u in s.subjects)
            elif s.kind is SignalKind.REGISTRATION_BURST:
                names = s.subjects
            else:
                names = tuple(masked.get(m, ("", ""))[0] for m in s.subjects)
            named.append(
                Signal(
                    s.kind, s.org_id, s.subjects, names, s.measured, s.threshold, s.unit, s.records
                )
            )
        return tuple(named)


def _local_day(at: datetime, zone: ZoneInfo) -> date:
    aware = at if at.tzinfo else at.replace(tzinfo=UTC)  # SQLite hands back naive UTC
    return aware.astimezone(zone).date()


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _near_daily_cap(
    logged: list[Any], zone: ZoneInfo, cap: int, t: Thresholds, orgs: dict[str, str | None]
) -> list[Signal]:
    near = -(-cap * t.near_cap_percent // 100)
    days: dict[str, dict[date, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for r in logged:
        days[r.volunteer_id][_local_day(r.check_in, zone)].append(r)
    found = []
    for volunteer, by_day in sorted(days.items()):
        full = sorted(d for d, rows in by_day.items() if sum(r.minutes for r in rows) >= near)
        if len(full) >= t.near_cap_days:
            records = tuple(r.id for d in full for r in by_day[d])
            found.append(
                Signal(
                    SignalKind.NEAR_DAILY_CAP,
                    orgs.get(volunteer),
                    (volunteer,),
                    (),
                    len(full),
                    t.near_cap_days,
                    "days",
                    records,
                )
            )
    return found


def _heavy_pairs(logged: list[Any], t: Thresholds) -> list[Signal]:
    pairs: dict[str, dict[tuple[str, str], list[Any]]] = defaultdict(lambda: defaultdict(list))
    for r in logged:
        pairs[r.org_id][(r.volunteer_id, r.elder_id)].append(r)
    found = []
    for org, of_org in sorted(pairs.items()):
        if len(of_org) < 3:  # a median of one or two pairs says nothing
            continue
        totals = {pair: sum(r.minutes for r in rows) for pair, rows in of_org.items()}
        bar = max(t.pair_factor * median_low(totals.values()), t.pair_min_minutes)
        for pair, minutes in sorted(totals.items()):
            if minutes >= bar:
                found.append(
                    Signal(
                        SignalKind.HEAVY_PAIR,
                        org,
                        pair,
                        (),
                        minutes,
                        bar,
                        "minutes",
                        tuple(r.id for r in of_org[pair]),
                    )
                )
    return found


def _staff_confirms(confirmed: list[Any], t: Thresholds) -> list[Signal]:
    of_org: dict[str, list[Any]] = defaultdict(list)
    for r in confirmed:
        of_org[r.org_id].append(r)
    found = []
    for org, rows in sorted(of_org.items()):
        by_staff: dict[str, list[str]] = defaultdict(list)
        for r in rows:
            if r.confirmed_as == ConfirmedAs.STAFF_FOR_ELDER.value and r.confirmed_by:
                by_staff[r.confirmed_by].append(r.id)
        for user, records in sorted(by_staff.items()):
            share = len(records) * 100 // len(rows)
            if len(records) >= t.staff_min_confirmations and share >= t.staff_share_percent:
                found.append(
                    Signal(
                        SignalKind.STAFF_CONFIRMS_FOR_ELDERS,
                        org,
                        (user,),
                        (),
                        share,
                        t.staff_share_percent,
                        "percent",
                        tuple(records),
                    )
                )
    return found


def _late_records(written: list[Any], t: Thresholds, orgs: dict[str, str | None]) -> list[Signal]:
    late: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for r in written:
        hours = int((_aware(r.created_at) - _aware(r.check_out)).total_seconds() // 3600)
        if hours >= t.late_hours:
            late[r.volunteer_id].append((hours, r.id))
    return [
        Signal(
            SignalKind.LATE_RECORD,
            orgs.get(volunteer),
            (volunteer,),
            (),
            max(h for h, _ in hits),
            t.late_hours,
            "hours",
            tuple(record for _, record in hits),
        )
        for volunteer, hits in sorted(late.items())
    ]


def _registration_bursts(
    registered: list[Any], zone: ZoneInfo, start: datetime, end: datetime, t: Thresholds
) -> list[Signal]:
    first, last = _local_day(start, zone), _local_day(end - timedelta(microseconds=1), zone)
    every_day = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    by_org: dict[str | None, dict[date, list[str]]] = defaultdict(lambda: defaultdict(list))
    for r in registered:
        by_org[r.org_id][_local_day(r.created_at, zone)].append(r.id)
    found = []
    for org, by_day in sorted(by_org.items(), key=lambda item: item[0] or ""):
        usual = median_low([len(by_day.get(d, ())) for d in every_day])
        bar = max(t.burst_factor * max(usual, 1), t.burst_min)
        for day in sorted(by_day):
            if len(by_day[day]) >= bar:
                found.append(
                    Signal(
                        SignalKind.REGISTRATION_BURST,
                        org,
                        (day.isoformat(),),
                        (),
                        len(by_day[day]),
                        bar,
                        "members",
                        tuple(by_day[day]),
                    )
                )
    return found


def thresholds_from(values: Iterable[tuple[str, int | None]]) -> Thresholds:
    """Thresholds with the given values in place of the defaults (None: the default)."""
    given = {name: value for name, value in values if value is not None}
    return Thresholds(**given)
