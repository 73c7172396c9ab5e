"""The ground every care use case stands on: the ledger it appends to (its ``LedgerPort``
interface), who may see which request or record, input checks, and how a ledger refusal
becomes a care error (once, in ``CareBase._append``)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any, Protocol, TypeVar

from accounts.errors import Forbidden, InvalidInput, NotFound, Words
from accounts.model import Member, MemberStatus, Principal, Role
from accounts.service import AccountsService
from accounts.storage import AccountsStore, Tx
from care.errors import (
    CareError,
    InsufficientBalance,
    MemberNotActive,
)
from care.model import (
    RequestStatus,
    ServiceRecord,
    ServiceRequest,
)
from care.storage import (
    service_records,
    service_requests,
    to_record,
    to_request,
)
from database.group import Refused
from ledger import AppendResult, LedgerPort
from ledger.entry import EntryRequest, canonical_json
from ledger.errors import EntryError
from ledger.errors import InsufficientBalance as LedgerInsufficient

R = TypeVar("R")

EARLIEST, LATEST = datetime(2000, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC)
# How a caller must relate to a member to read their minutes (accounts.member_views._access).
READING_ACCESS = frozenset({"self", "proxy", "staff", "admin", "auditor"})


def record_digest(fields: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(fields)).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime, field: str) -> datetime:
    """A time given with its zone, in UTC, within the years a time bank can mean."""
    if value.tzinfo is None:
        raise InvalidInput(
            "%(field)s needs a time zone (e.g. 2026-11-25T09:00:00+08:00)", field=field
        )
    try:
        utc_value = value.astimezone(UTC)
    except OverflowError:
        utc_value = None
    if utc_value is None or not EARLIEST <= utc_value < LATEST:
        raise InvalidInput("%(field)s must be between the years 2000 and 2199", field=field)
    return utc_value


def require_active(member: Member, field: str) -> None:
    """The one rule every use case applies: only approved members take part."""
    if member.status is not MemberStatus.ACTIVE:
        raise MemberNotActive(
            "member %(id)s is %(status)s, not active",
            field=field,
            id=member.id,
            status=Words(member.status),
        )


def opaque(account: str) -> str:
    """The random part of a ledger account: entry ids never carry internal member ids."""
    return account.rsplit(":", 1)[-1]


def require_bank_admin(principal: Principal) -> None:
    if not principal.is_bank_admin:
        raise Forbidden("only a bank administrator may do this")


def positive(minutes: int) -> None:
    if not isinstance(minutes, int) or isinstance(minutes, bool) or not 1 <= minutes <= 10**9:
        raise InvalidInput("minutes must be a positive whole number", field="minutes")


def age(born: date, today: date) -> int:
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


class MemberEvents(Protocol):
    """Where care announces what happened to a member (the webhook outbox,
    ``partners.webhooks.Outbox``): called inside the transaction that makes it so."""

    def member_event(
        self, tx: Tx, member_id: str, event_type: str, data: Mapping[str, Any]
    ) -> None: ...


class CareBase:
    """The base of the care use cases: the stores, the ledger and the clock, and the lookups with
    their access checks that every use case shares."""

    def __init__(
        self,
        store: AccountsStore,
        accounts: AccountsService,
        ledger: LedgerPort,
        clock: Callable[[], datetime] = _now,
        events: MemberEvents | None = None,
    ) -> None:
        self.store = store
        self.accounts = accounts
        self.ledger = ledger
        self.clock = clock
        self.events = events

    def _commit_workflow(self, work: Callable[[Tx], R | Refused]) -> R:
        """``work``'s result once committed: a write of the workflow's own rows (records,
        requests, confirmation codes, the webhook outbox), none of
        ``accounts.storage.CALLER_TABLES``, so the caches of who callers are and how they relate
        to members stay valid across it (each check-in's write used to forget them all).

        It is group-committed with concurrent requests' small writes (``database.group``): one
        commit for many check-ins where each took the writers' turn and an fsync of its own,
        every caller answered only once the commit holding its work is durable. ``work`` must
        depend on the database alone: a batch in which another piece failed runs it again. A
        refusal found before anything is written is returned as ``Refused`` (raised here to
        the caller), so the others' work is not run twice."""
        return self.store.database.group.run(lambda conn: work(Tx(conn)))

    def _who(self, entry_id: str, user_id: str | None) -> str:
        """A person as the public log names them in entry ``entry_id`` (a per-entry pseudonym,
        ``accounts.protection.Protector.pseudonym``)."""
        return self.accounts.protector.pseudonym(entry_id, user_id or "")

    def _request_ref(self, request_id: str) -> str:
        """How the log names a request (``Protector.reference``). A request held before the log
        used references keeps its plain id in every entry of its life: its reserve says which."""
        if self.ledger.entries_by_id([f"reserve:{request_id}"]):
            return request_id
        return self.accounts.protector.reference("request", request_id)

    def _visible_request(
        self, tx: Tx, principal: Principal, request_id: str, field: str | None = None
    ) -> tuple[ServiceRequest, str]:
        """The request and how the caller relates to it; NotFound (naming ``field``, the body's
        input that gave the id) alike when it is missing or out of the caller's sight."""
        row = tx.get(service_requests, request_id) if isinstance(request_id, str) else None
        if row is None or row.bank_id != principal.bank_id or principal.is_partner:
            raise NotFound("no request %(id)s", id=request_id, field=field)
        request = to_request(row)
        if principal.is_bank_admin:
            return request, "admin"
        if request.org_id in principal.orgs():
            return request, "staff"
        if (
            principal.acting_member_id == request.elder_id
            or request.elder_id in principal.proxied_members()
        ):
            return request, "elder"
        acting = principal.acting_member_id
        if acting is not None and acting == request.volunteer_id:
            return request, "volunteer"
        if request.status is RequestStatus.OPEN and principal.has(Role.VOLUNTEER):
            return request, "candidate"
        raise NotFound("no request %(id)s", id=request_id, field=field)

    def _acting_volunteer(self, principal: Principal, what: str, tx: Tx | None = None) -> Member:
        """The caller as an active volunteer: a pending, rejected or disabled one is told so."""
        if principal.member_id is not None and not principal.member_active:
            raise MemberNotActive(
                "your registration is not approved (or was rejected or disabled)",
                field="member",
                zh="您的注册尚未通过审核（或已被拒绝、停用）",
            )
        if principal.acting_member_id is None or not principal.has(Role.VOLUNTEER):
            raise Forbidden("only an approved volunteer %(action)s", action=Words(what))
        volunteer = self.accounts.member(principal.acting_member_id, tx)
        require_active(volunteer, "member")
        return volunteer

    def _bank_member(
        self,
        principal: Principal,
        member_id: str,
        field: str = "volunteer_id",
        tx: Tx | None = None,
    ) -> Member:
        try:
            member = self.accounts.member(member_id, tx) if isinstance(member_id, str) else None
        except NotFound:
            member = None
        if member is None or member.bank_id != principal.bank_id:
            raise NotFound("no member %(id)s", id=member_id, field=field)
        return member

    def _record(self, record_id: str) -> ServiceRecord:
        with self.store.snapshot() as tx:
            row = tx.get(service_records, record_id)
        assert row is not None
        return to_record(row)

    def _visible_record(self, principal: Principal, record_id: str) -> tuple[ServiceRecord, str]:
        with self.store.snapshot() as tx:
            return self._visible_record_in(tx, principal, record_id)

    def _visible_record_in(
        self, tx: Tx, principal: Principal, record_id: str
    ) -> tuple[ServiceRecord, str]:
        """The record and how the caller relates to it; NotFound if they may not know it."""
        row = tx.get(service_records, record_id) if isinstance(record_id, str) else None
        if row is None or row.bank_id != principal.bank_id or principal.is_partner:
            raise NotFound("no record %(id)s", id=record_id)
        record = to_record(row)
        if principal.acting_member_id == record.volunteer_id:
            return record, "volunteer"
        if principal.acting_member_id == record.elder_id:
            return record, "elder"
        if record.elder_id in principal.proxied_members():
            return record, "family"
        if record.org_id in principal.orgs():
            return record, "staff"
        if principal.is_bank_admin:
            return record, "admin"
        if principal.has(Role.AUDITOR):
            return record, "auditor"
        raise NotFound("no record %(id)s", id=record_id)

    def _readable_member(self, principal: Principal, member_id: str) -> Member:
        if principal.is_partner:  # partners read through consent links (partners.links)
            raise NotFound("no member %(id)s", id=member_id)
        member, access = self.accounts.member_access(principal, member_id)
        if access in READING_ACCESS:
            return member
        raise NotFound("no member %(id)s", id=member_id)

    def _remembered_readable_member(self, principal: Principal, member_id: str) -> Member | None:
        """The member ``_readable_member`` would return, if the accounts service remembers
        the caller's access (no I/O); None otherwise, refusals included."""
        if principal.is_partner:
            return None
        known = self.accounts.remembered_access(principal, member_id)
        return known[0] if known is not None and known[1] in READING_ACCESS else None

    def _append(self, request: EntryRequest) -> AppendResult:
        try:
            return self.ledger.append(request)
        except (LedgerInsufficient, EntryError) as exc:
            raise _refusal(exc) from exc

    async def append_entry(self, request: EntryRequest) -> AppendResult:
        """Append an entry built by one of the ``*_entry`` methods, awaited on an event loop
        (no thread waits for the ledger's batch); its refusals are ``_append``'s."""
        try:
            return await self.ledger.append_async(request)
        except (LedgerInsufficient, EntryError) as exc:
            raise _refusal(exc) from exc


def _refusal(exc: LedgerInsufficient | EntryError) -> CareError:
    """The ledger's refusal of an entry, as the caller is told it."""
    if isinstance(exc, LedgerInsufficient):
        return InsufficientBalance(
            "not enough minutes: %(available)s available, %(needed)s needed",
            field="minutes",
            available=exc.balance,
            needed=-exc.change,
        )
    return CareError(exc.template, field=exc.field, **exc.values)
