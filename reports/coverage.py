"""Visit coverage (特殊困难老年人月探访率): of the priority elders of a month, how many had a
verified visit in it, per organisation and for the bank, and who has not been visited yet.

Definitions (docs/statistics.md):

* the month is a calendar month in the bank's time zone (policy ``timezone``);
* a *priority elder* of the month is an active elder (approved before the month ended) with a
  priority flag in force at some moment of the month, of the flags the policy's
  ``coverage_flags`` names (empty: any flag); an elder flagged mid-month counts, and so does one
  whose flag was cleared mid-month;
* *visited*: at least one verified service record whose check-in falls in the month, of the
  services the policy's ``visit_services`` names (empty: any); a rejected record, or one whose
  deposit was reversed, is not a visit;
* an elder counts in the organisation they belong to now.

A month is *live* until ``record_late_days`` after it ended: records of its last days may still
be logged and verified, so its figures may still rise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from accounts.errors import Forbidden, InvalidInput, NotFound
from accounts.model import Principal, Role
from accounts.service import AccountsService
from accounts.storage import AccountsStore
from care.model import Policy
from reports.repo import (
    FrozenMonth,
    freeze_month,
    frozen_month,
    last_visits,
    organisation_names,
    priority_elders,
    visited_elders,
)


@dataclass(frozen=True)
class OrgCoverage:
    org_id: str | None  # None: elders of no organisation
    org_name: str
    priority_elders: int
    visited: int

    @property
    def rate(self) -> float | None:
        """Visited over priority elders, 0–1; None when there is no one to visit."""
        return self.visited / self.priority_elders if self.priority_elders else None


@dataclass(frozen=True)
class Unvisited:
    """A priority elder not yet visited this month, as staff may see them (masked)."""

    member_id: str
    org_id: str | None
    name: str
    area: str
    flags: tuple[str, ...]
    last_visit: datetime | None


@dataclass(frozen=True)
class Coverage:
    bank_id: str
    month: str  # YYYY-MM
    timezone: str
    start: datetime  # UTC
    end: datetime  # UTC, exclusive
    live: bool
    flags: tuple[str, ...]  # the flags counted; () = any
    services: tuple[str, ...]  # the services counted as a visit; () = any
    organisations: tuple[OrgCoverage, ...]
    total: OrgCoverage  # over the organisations shown
    unvisited: tuple[Unvisited, ...]  # the longest without a visit first; none for auditors
    unvisited_total: int  # priority elders not visited (all of them, listed or not)


def month_bounds(month: str, zone: str) -> tuple[datetime, datetime]:
    """``YYYY-MM`` in ``zone`` → its [start, end) in UTC."""
    try:
        first = datetime.strptime(month, "%Y-%m").date()
    except (TypeError, ValueError) as exc:
        raise InvalidInput("month must be YYYY-MM", field="month") from exc
    if not 2000 <= first.year <= 2199:
        raise InvalidInput("month must be in the years 2000-2199", field="month")
    following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    local = ZoneInfo(zone)
    start = datetime(first.year, first.month, 1, tzinfo=local)
    end = datetime(following.year, following.month, 1, tzinfo=local)
    return start.astimezone(UTC), end.astimezone(UTC)


UNVISITED_LIMIT, UNVISITED_MAX = 200, 1000
COVERAGE_REFUSAL = "visit coverage is for staff, bank admins and auditors"


class VisitCoverage:
    """Computes coverage for bank admins (every organisation), organisation staff (theirs) and
    auditors (counts only)."""

    def __init__(
        self,
        store: AccountsStore,
        accounts: AccountsService,
        policy: Callable[[str], Policy],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store, self.accounts, self.policy, self.clock = store, accounts, policy, clock

    def coverage(
        self,
        principal: Principal,
        month: str | None,
        org_id: str | None,
        limit: int | None = UNVISITED_LIMIT,
    ) -> Coverage:
        """``limit``: how many of the elders not yet visited to list (never visited first, then
        the oldest last visit), 1 to ``UNVISITED_MAX``; None, for an export: all of them."""
        if limit is not None and not 1 <= limit <= UNVISITED_MAX:
            raise InvalidInput(
                "%(field)s must be %(low)s-%(high)s", field="limit", low=1, high=UNVISITED_MAX
            )
        scope = organisations_seen(self.accounts, principal, org_id, COVERAGE_REFUSAL)
        policy = self.policy(principal.bank_id)
        now = self.clock()
        month = month or now.astimezone(ZoneInfo(policy.timezone)).strftime("%Y-%m")
        start, end = month_bounds(month, policy.timezone)
        if start > now:
            raise InvalidInput("month is in the future", field="month")
        live = now < end + timedelta(days=policy.record_late_days)
        lists = self._lists(principal)
        if live:
            flags, services = policy.coverage_flag_names, policy.visit_service_codes
            with self.store.snapshot() as tx:
                elders = priority_elders(tx, principal.bank_id, start, end, flags)
                if scope is not None:
                    elders = {m: v for m, v in elders.items() if v[0] in scope}
                visited = visited_elders(tx, principal.bank_id, start, end, services) & set(elders)
                names = organisation_names(tx, principal.bank_id)
                missing = sorted(set(elders) - visited)
                lasts = last_visits(tx, missing, end, services) if lists else {}
        else:
            month_of = self._frozen(principal.bank_id, month, start, end, policy, now)
            flags, services = month_of.flags, month_of.services
            elders = {
                m: (e.org_id, set(e.flags))
                for m, e in month_of.elders.items()
                if scope is None or e.org_id in scope
            }
            visited = {m for m in elders if month_of.elders[m].visited}
            missing = sorted(set(elders) - visited)
            lasts = {m: at for m in missing if (at := month_of.elders[m].last_visit) is not None}
            with self.store.snapshot() as tx:
                names = organisation_names(tx, principal.bank_id)
        shown = sorted(scope) if scope is not None else sorted(names)  # every one, even at 0
        per_org: dict[str | None, list[int]] = {o: [0, 0] for o in shown}
        for member_id, (org, _) in elders.items():
            counts = per_org.setdefault(org, [0, 0])
            counts[0] += 1
            counts[1] += member_id in visited
        rows = tuple(
            sorted(
                (
                    OrgCoverage(org, names.get(org, "") if org else "", total, seen)
                    for org, (total, seen) in per_org.items()
                ),
                key=lambda row: (row.org_id is None, row.org_name, row.org_id or ""),
            )
        )
        total = OrgCoverage(None, "", len(elders), len(visited))
        unvisited: tuple[Unvisited, ...] = ()
        if lists:
            first = sorted(missing, key=lambda m: (m in lasts, lasts.get(m) or end, m))[:limit]
            masked = self.accounts.masked_names(principal, first)
            unvisited = tuple(
                Unvisited(
                    m,
                    elders[m][0],
                    *masked.get(m, ("", "")),
                    tuple(sorted(elders[m][1])),
                    lasts.get(m),
                )
                for m in first
            )
        return Coverage(
            principal.bank_id,
            month,
            policy.timezone,
            start,
            end,
            live,
            tuple(sorted(flags)),
            tuple(sorted(services)),
            rows,
            total,
            unvisited,
            len(missing),
        )

    def _frozen(
        self,
        bank_id: str,
        month: str,
        start: datetime,
        end: datetime,
        policy: Policy,
        now: datetime,
    ) -> FrozenMonth:
        """The final ``month`` as frozen the first time it was asked for after it became final
        (frozen now, for the whole bank, with the policy's choices in force now, if not yet).
        Two requests freezing at once: one insert wins, both read what it wrote."""
        found = self._read_frozen(bank_id, month)
        if found is not None:
            return found
        flags, services = policy.coverage_flag_names, policy.visit_service_codes
        with self.store.snapshot() as tx:
            elders = priority_elders(tx, bank_id, start, end, flags)
            visited = visited_elders(tx, bank_id, start, end, services) & set(elders)
            lasts = last_visits(tx, sorted(set(elders) - visited), end, services)
        freeze_month(self.store, bank_id, month, flags, services, now, elders, visited, lasts)
        frozen = self._read_frozen(bank_id, month)
        assert frozen is not None
        return frozen

    def _read_frozen(self, bank_id: str, month: str) -> FrozenMonth | None:
        with self.store.snapshot() as tx:
            return frozen_month(tx, bank_id, month)

    @staticmethod
    def _lists(principal: Principal) -> bool:
        return principal.is_bank_admin or bool(principal.orgs())


def organisations_seen(
    accounts: AccountsService, principal: Principal, org_id: str | None, refusal: str
) -> set[str] | None:
    """The organisations whose statistics the caller sees (None: all of the bank), narrowed to
    ``org_id``: bank admins and auditors any, staff theirs; ``refusal`` for everyone else.
    The bank's organisations are read without a personal login (``list_orgs`` asks for one):
    the operator's ``timebank report coverage --org`` reads as an auditor with none."""
    if principal.is_partner:
        raise Forbidden(refusal)
    if principal.is_bank_admin or principal.has(Role.AUDITOR):
        if org_id is None:
            return None
        with accounts.store.snapshot() as tx:
            known = organisation_names(tx, principal.bank_id)
        if org_id not in known:
            raise NotFound("no organisation %(id)s", id=org_id)
        return {org_id}
    mine = principal.orgs()
    if not mine:
        raise Forbidden(refusal)
    if org_id is None:
        return mine
    if org_id not in mine:
        raise Forbidden("statistics of another organisation", field="org_id")
    return {org_id}
