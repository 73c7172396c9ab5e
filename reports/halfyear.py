"""Half-yearly reports (每半年发布): computed for a half year in the bank's time zone, published
by a bank administrator as a document whose SHA-256 a ``report`` entry anchors in the log,
together with the checkpoint (tree size) its public part was computed at.

The document is canonical JSON (RFC 8785, ``ledger.entry.canonical_json``):

* ``public``: figures computed from the log's entries alone up to that checkpoint
  (``reports.public``); anyone recomputes them (``timebank audit report``);
* ``attested``: figures that need the bank's private data (members by role, visit coverage by
  month); aggregate counts the bank attests to, not recomputable from the log.

Every figure is defined in docs/statistics.md.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from accounts.errors import Conflict, Forbidden, InvalidInput, NotFound
from accounts.model import Grant, Principal, Role
from accounts.storage import AccountsStore
from care.model import Policy
from ledger.entry import EntryRequest, canonical_json
from ledger.errors import LedgerError
from ledger.kinds import ReportAnchor
from ledger.log import Log
from ledger.note import Checkpoint, Note
from reports.coverage import VisitCoverage
from reports.public import BadHalf, half_bounds, log_time
from reports.repo import (
    insert_report,
    mark_published,
    members_by_role,
    report_by_id,
    report_of_half,
    reports_published,
    serving_members,
)
from reports.summed import BARE_KINDS, OWN_MOVES, SummedFigures, edges_of

FORMAT = "timebank-halfyear-report/v1"
PAGE = 1000


@dataclass(frozen=True)
class Computed:
    document: dict[str, Any]
    data: bytes  # canonical JSON of ``document``
    sha256: str  # hex

    @classmethod
    def of(cls, document: dict[str, Any]) -> Computed:
        data = canonical_json(document)
        return cls(document, data, hashlib.sha256(data).hexdigest())


@dataclass(frozen=True)
class Published:
    id: str
    bank_id: str
    half: str
    sha256: str
    tree_size: int
    seq: int | None
    entry_id: str
    published_at: datetime
    data: bytes  # the document's canonical bytes, exactly as hashed


def report_entry(bank: str, half: str, sha256: str, tree_size: int) -> EntryRequest:
    """The ``report`` entry anchoring a document: no postings."""
    return ReportAnchor(bank, half, FORMAT, sha256, tree_size).to_request()


def iter_leaves(log: Log, size: int) -> Iterator[bytes]:
    """The log's leaves [0, size)."""
    start = 0
    while start < size:
        page = log.leaves(start, min(size, start + PAGE))
        for leaf in page:
            yield leaf.data
        start += len(page)


def public_figures(
    log: Log, bank: str, start: datetime, end: datetime, size: int
) -> dict[str, Any]:
    """The public part over entries [0, size) from the log's SQL sums, reading only the leaves
    of entries without postings (``reports.summed``); the same figures as feeding every leaf
    to ``reports.public.PublicFigures``."""
    edges = edges_of(SummedFigures(bank, start, end))
    totals = log.bank_totals(
        bank, size, log_time(start), log_time(end), edges, BARE_KINDS, OWN_MOVES
    )
    return SummedFigures.from_totals(bank, start, end, totals).figures()


class HalfYearReports:
    def __init__(
        self,
        store: AccountsStore,
        log: Log,
        policy: Callable[[str], Policy],
        coverage: VisitCoverage,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store, self.log, self.policy, self.coverage = store, log, policy, coverage
        self.clock = clock

    # ------------------------------------------------------------ computing

    def compute(self, principal: Principal, half: str) -> Computed:
        """The report of ``half`` for the caller's bank, at the log's latest checkpoint (bank
        administrators and auditors)."""
        if not (principal.is_bank_admin or principal.has(Role.AUDITOR)):
            raise Forbidden("half-yearly reports are computed by bank administrators and auditors")
        bank = principal.bank_id
        zone = self.policy(bank).timezone
        try:
            start, end = half_bounds(half, zone)
        except BadHalf as exc:
            raise InvalidInput(str(exc), field="half") from exc
        now = self.clock()
        if now < end:
            raise InvalidInput("%(half)s has not ended yet", field="half", half=half)
        size = self.log.size()
        note = self.log.checkpoint_at(size) if size else None
        if note is None:
            raise InvalidInput("the log has no signed checkpoint yet", field="half")
        checkpoint = Checkpoint.parse_body(Note.parse(note).text)
        public = public_figures(self.log, bank, start, end, size)
        document = {
            "format": FORMAT,
            "bank": bank,
            "half": half,
            "timezone": zone,
            "start": log_time(start),
            "end": log_time(end),
            "computed_at": log_time(now),
            "checkpoint": {
                "size": checkpoint.size,
                "root": Note.parse(note).text.split("\n")[2],
                "note": note,
            },
            "public": public,
            "attested": self._attested(bank, start, end),
        }
        return Computed.of(document)

    def _attested(self, bank: str, start: datetime, end: datetime) -> dict[str, Any]:
        auditor = Principal(user_id=None, bank_id=bank, grants=(Grant(Role.AUDITOR, bank),))
        months = []
        local = start.astimezone(self._zone(bank))
        year, month = local.year, local.month
        for _ in range(6):
            label = f"{year:04d}-{month:02d}"
            found = self.coverage.coverage(auditor, label, None, 1)
            months.append(
                {
                    "month": label,
                    "priority_elders": found.total.priority_elders,
                    "visited": found.total.visited,
                }
            )
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        with self.store.snapshot() as tx:
            members = members_by_role(tx, bank, start, end)
            serving = serving_members(tx, bank, start, end)
        return {
            "members": {**members, "serving": serving},
            "coverage": months,
        }

    def _zone(self, bank: str) -> ZoneInfo:
        return ZoneInfo(self.policy(bank).timezone)

    # ------------------------------------------------------------ publishing

    def publish(self, principal: Principal, half: str) -> Published:
        """Compute, store and anchor the report of ``half``; a half published already is a
        Conflict. A publication interrupted after storing its document is finished by the next
        call (the entry's content is the same, so appending it again is idempotent)."""
        if not principal.is_bank_admin:
            raise Forbidden("half-yearly reports are published by bank administrators")
        bank = principal.bank_id
        with self.store.snapshot() as tx:
            row = report_of_half(tx, bank, half)
        if row is None:
            computed = self.compute(principal, half)
            report_id = secrets.token_hex(8)
            tree_size = computed.document["checkpoint"]["size"]
            entry = report_entry(bank, half, computed.sha256, tree_size)
            with self.store.transaction() as tx:
                stored = insert_report(
                    tx,
                    id=report_id,
                    bank_id=bank,
                    half=half,
                    sha256=computed.sha256,
                    tree_size=tree_size,
                    document=computed.data,
                    status="pending",
                    entry_id=entry.id,
                    seq=None,
                    published_by=principal.user_id or "",
                    published_at=self.clock(),
                )
            if not stored:
                raise Conflict("%(half)s is being published already", field="half", half=half)
            with self.store.snapshot() as tx:
                row = report_of_half(tx, bank, half)
        elif row.status == "published":
            raise Conflict(
                "%(half)s is published already (report %(id)s)", field="half", half=half, id=row.id
            )
        assert row is not None
        entry = report_entry(bank, half, row.sha256, int(row.tree_size))
        try:
            result = self.log.append(entry)
        except LedgerError as exc:
            raise Conflict(
                "the log refused the report entry: %(reason)s", field="half", reason=str(exc)
            ) from exc
        with self.store.transaction() as tx:
            mark_published(tx, row.id, result.seq)
        return self.get(row.id)

    # ------------------------------------------------------------ reading (public)

    def list(self) -> list[Published]:
        with self.store.snapshot() as tx:
            return [_published(r) for r in reports_published(tx)]

    def get(self, report_id: str) -> Published:
        with self.store.snapshot() as tx:
            row = report_by_id(tx, report_id)
        if row is None:
            raise NotFound("no published report %(id)s", id=report_id)
        return _published(row)


def _published(row: Any) -> Published:
    at = row.published_at
    return Published(
        row.id,
        row.bank_id,
        row.half,
        row.sha256,
        int(row.tree_size),
        None if row.seq is None else int(row.seq),
        row.entry_id,
        at if at.tzinfo else at.replace(tzinfo=UTC),
        bytes(row.document),
    )
