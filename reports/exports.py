"""What the statistics export, to whom (the file formats are ``reports.csvfile`` and
``reports.xlsxfile``: each export comes as either, with the same columns and rows):

* ``coverage``: a month's visit coverage per organisation and in total — counts only, plain CSV,
  for whoever sees the coverage (bank admins, staff for theirs, auditors);
* ``unvisited``: the month's priority elders not yet visited (masked name, area, flags, last
  visit) — personal data, so only sealed to a recipient's key, for staff and bank admins;
* ``records``: a month's service records (when, how long, which service, organisation, state,
  deposit) — no one named, plain CSV streamed page by page; with a recipient's key the
  volunteer's and the elder's masked names are added and the file is sealed.

Column headers are keys (``Column.key``) the caller's layer translates; values are the bank's
own (times in the bank's time zone, service names in Chinese as the catalogue has them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal
from zoneinfo import ZoneInfo

from nacl.public import PublicKey

from accounts.errors import Forbidden
from accounts.model import Principal
from accounts.service import AccountsService
from accounts.storage import AccountsStore
from care.model import Policy
from reports.coverage import (
    COVERAGE_REFUSAL,
    VisitCoverage,
    month_bounds,
    organisations_seen,
)
from reports.csvfile import Cell, csv_lines, key_fingerprint, sealed
from reports.repo import organisation_names, records_page
from reports.xlsxfile import MEDIA_TYPE as XLSX_MEDIA_TYPE
from reports.xlsxfile import xlsx_chunks

Form = Literal["csv", "xlsx"]
MEDIA_TYPES: dict[Form, str] = {"csv": "text/csv", "xlsx": XLSX_MEDIA_TYPE}

PAGE = 1000  # records read per query while streaming

COVERAGE_COLUMNS = ("organisation", "priority_elders", "visited", "rate")
UNVISITED_COLUMNS = ("member_id", "organisation", "name", "area", "flags", "last_visit")
RECORD_COLUMNS = (
    "record_id",
    "organisation",
    "service_code",
    "service",
    "check_in",
    "check_out",
    "minutes",
    "status",
    "confirmed_as",
    "verified_at",
    "deposit_seq",
    "deposit_minutes",
)
NAMED_RECORD_COLUMNS = (*RECORD_COLUMNS, "volunteer", "elder")


@dataclass(frozen=True)
class Export:
    """A file to hand over: its name, its media type, and its bytes as chunks."""

    filename: str
    media_type: str
    chunks: Iterator[bytes]
    sealed_to: str | None  # the recipient key's fingerprint, when sealed


class Exports:
    def __init__(
        self,
        store: AccountsStore,
        accounts: AccountsService,
        coverage: VisitCoverage,
        policy: Callable[[str], Policy],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store, self.accounts, self.coverage = store, accounts, coverage
        self.policy, self.clock = policy, clock

    def coverage_export(
        self,
        principal: Principal,
        month: str | None,
        org_id: str | None,
        header: list[str],
        form: Form = "csv",
    ) -> Export:
        c = self.coverage.coverage(principal, month, org_id, limit=1)
        rows: list[list[Cell]] = [
            [o.org_name, o.priority_elders, o.visited, _rate(o.rate)] for o in c.organisations
        ]
        rows.append(["", c.total.priority_elders, c.total.visited, _rate(c.total.rate)])
        name = f"探访覆盖率-visit-coverage-{c.month}.{form}"
        document = _document(form, header, rows, c.month)
        return Export(name, MEDIA_TYPES[form], iter([document]), None)

    def unvisited_export(
        self,
        principal: Principal,
        month: str | None,
        org_id: str | None,
        key: PublicKey,
        header: list[str],
        form: Form = "csv",
    ) -> Export:
        if not (principal.is_bank_admin or principal.orgs()):
            raise Forbidden("the elders to visit are for staff and bank admins")
        c = self.coverage.coverage(principal, month, org_id, limit=None)
        with self.store.snapshot() as tx:
            names = organisation_names(tx, principal.bank_id)
        zone = ZoneInfo(c.timezone)
        rows: list[list[Cell]] = [
            [
                u.member_id,
                names.get(u.org_id or "", ""),
                u.name,
                u.area,
                " ".join(u.flags),
                u.last_visit.astimezone(zone) if u.last_visit else None,
            ]
            for u in c.unvisited
        ]
        document = _document(form, header, rows, c.month)
        name = f"待探访老人-unvisited-{c.month}.{form}.sealed"
        return _sealed(name, key, document)

    def records_export(
        self,
        principal: Principal,
        month: str | None,
        org_id: str | None,
        key: PublicKey | None,
        header: list[str],
        form: Form = "csv",
        words: dict[str, str] | None = None,
    ) -> Export:
        """``words`` say each status and way of confirming (``verified``, ``staff_for_elder``)
        in the reader's language, as ``header`` names the columns; a value without one stays
        as the API writes it."""
        orgs = organisations_seen(self.accounts, principal, org_id, COVERAGE_REFUSAL)
        if key is not None and not (principal.is_bank_admin or principal.orgs()):
            raise Forbidden("names in an export are for staff and bank admins")
        policy = self.policy(principal.bank_id)
        zone = ZoneInfo(policy.timezone)
        month = month or self.clock().astimezone(zone).strftime("%Y-%m")
        start, end = month_bounds(month, policy.timezone)
        with self.store.snapshot() as tx:
            names = organisation_names(tx, principal.bank_id)
        rows = self._record_rows(
            principal, start, end, orgs, names, zone, named=key is not None, words=words or {}
        )
        name = f"服务记录-service-records-{month}.{form}"
        if key is None:
            return Export(name, MEDIA_TYPES[form], _chunks(form, header, rows, month), None)
        return _sealed(f"{name}.sealed", key, _document(form, header, rows, month))

    def _record_rows(
        self,
        principal: Principal,
        start: datetime,
        end: datetime,
        orgs: set[str] | None,
        names: dict[str, str],
        zone: ZoneInfo,
        named: bool,
        words: dict[str, str],
    ) -> Iterator[list[Cell]]:
        """Page after page, each read in its own snapshot: a month of a large bank never sits
        in memory, and no transaction stays open while the client reads slowly."""
        after: tuple[datetime, str] | None = None
        while True:
            with self.store.snapshot() as tx:
                page = records_page(tx, principal.bank_id, start, end, orgs, after, PAGE)
            if not page:
                return
            people = (
                self.accounts.masked_names(
                    principal, sorted({p for r in page for p in (r.volunteer_id, r.elder_id)})
                )
                if named
                else {}
            )
            for r in page:
                row: list[Cell] = [
                    r.id,
                    names.get(r.org_id, ""),
                    r.code,
                    r.name_zh,
                    _local(r.check_in, zone),
                    _local(r.check_out, zone),
                    r.minutes,
                    words.get(r.status, r.status),
                    words.get(r.confirmed_as, r.confirmed_as) if r.confirmed_as else r.confirmed_as,
                    _local(r.verified_at, zone),
                    r.deposit_seq,
                    r.deposit_minutes,
                ]
                if named:
                    row += [
                        people.get(r.volunteer_id, ("", ""))[0],
                        people.get(r.elder_id, ("", ""))[0],
                    ]
                yield row
            last = page[-1]
            after = (last.check_in, last.id)


def _chunks(
    form: Form, header: list[str], rows: Iterable[list[Cell]], title: str
) -> Iterator[bytes]:
    """The file, made as its rows come (a CSV line by line, a workbook on a temporary file)."""
    return csv_lines(header, rows) if form == "csv" else xlsx_chunks(header, rows, title)


def _document(form: Form, header: list[str], rows: Iterable[list[Cell]], title: str) -> bytes:
    return b"".join(_chunks(form, header, rows, title))


def _rate(rate: float | None) -> float | None:
    return None if rate is None else round(rate, 4)


def _local(at: datetime | None, zone: ZoneInfo) -> datetime | None:
    if at is None:
        return None
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(zone)


def _sealed(name: str, key: PublicKey, document: bytes) -> Export:
    return Export(
        name, "application/octet-stream", iter([sealed(key, document)]), key_fingerprint(key)
    )
