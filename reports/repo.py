"""The statistics' statements: read-only, over the accounts and care tables, in one snapshot."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, Select, and_, func, insert, or_, select
from sqlalchemy.exc import IntegrityError

from accounts.storage import AccountsStore, Tx, member_flags, members, organisations, users
from care.storage import service_records, service_types
from reports.storage import coverage_elders, coverage_months, published_reports


def priority_elders(
    tx: Tx, bank_id: str, start: datetime, end: datetime, flags: Iterable[str]
) -> dict[str, tuple[str | None, set[str]]]:
    """Active elders with a priority flag in force at some moment of [start, end): member id →
    (their organisation, the flags). ``flags`` empty: any flag."""
    wanted = sorted(flags)
    stmt = (
        select(members.c.id, members.c.org_id, member_flags.c.flag)
        .join(member_flags, member_flags.c.member_id == members.c.id)
        .where(
            members.c.bank_id == bank_id,
            members.c.is_elder.is_(True),
            members.c.status == "active",
            func.coalesce(members.c.approved_at, members.c.created_at) < end,
            member_flags.c.set_at < end,
            or_(member_flags.c.cleared_at.is_(None), member_flags.c.cleared_at >= start),
        )
    )
    if wanted:
        stmt = stmt.where(member_flags.c.flag.in_(wanted))
    found: dict[str, tuple[str | None, set[str]]] = {}
    for member_id, org_id, flag in tx.conn.execute(stmt):
        found.setdefault(member_id, (org_id, set()))[1].add(flag)
    return found


def visited_elders(
    tx: Tx, bank_id: str, start: datetime, end: datetime, services: Iterable[str]
) -> set[str]:
    """Elders with a verified service record (of ``services``' codes; empty: any) whose check-in
    falls in [start, end). A reversed deposit's record is no longer verified."""
    stmt = (
        select(service_records.c.elder_id)
        .distinct()
        .where(
            service_records.c.bank_id == bank_id,
            service_records.c.status == "verified",
            service_records.c.check_in >= start,
            service_records.c.check_in < end,
        )
    )
    return {row[0] for row in tx.conn.execute(_of_services(stmt, services))}


def last_visits(
    tx: Tx, elder_ids: Iterable[str], before: datetime, services: Iterable[str]
) -> dict[str, datetime]:
    """Each elder's latest verified visit that began before ``before`` (in UTC)."""
    ids, codes = sorted(elder_ids), list(services)
    found: dict[str, datetime] = {}
    for at in range(0, len(ids), 5000):  # within every database's limit of bound values
        stmt = (
            select(service_records.c.elder_id, func.max(service_records.c.check_in))
            .where(
                service_records.c.elder_id.in_(ids[at : at + 5000]),
                service_records.c.status == "verified",
                service_records.c.check_in < before,
            )
            .group_by(service_records.c.elder_id)
        )
        for elder, last in tx.conn.execute(_of_services(stmt, codes)):
            if last is not None:  # SQLite hands back naive UTC
                found[elder] = last if last.tzinfo else last.replace(tzinfo=UTC)
    return found


def organisation_names(tx: Tx, bank_id: str) -> dict[str, str]:
    rows = tx.conn.execute(
        select(organisations.c.id, organisations.c.name).where(organisations.c.bank_id == bank_id)
    )
    return {org_id: name for org_id, name in rows}


def _of_services(stmt: Select[Any], services: Iterable[str]) -> Select[Any]:
    """``stmt`` over service records, narrowed to ``services``' codes (empty: all of them)."""
    codes = sorted(services)
    if not codes:
        return stmt
    return stmt.join(service_types, service_types.c.id == service_records.c.service_type_id).where(
        service_types.c.code.in_(codes)
    )


def records_logged(tx: Tx, bank_id: str, start: datetime, end: datetime) -> list[Row[Any]]:
    """Service records (not rejected) whose check-in falls in [start, end): what volunteers
    logged, verified or not yet."""
    c = service_records.c
    stmt = select(
        c.id, c.org_id, c.volunteer_id, c.elder_id, c.check_in, c.check_out, c.minutes, c.created_at
    ).where(c.bank_id == bank_id, c.status != "rejected", c.check_in >= start, c.check_in < end)
    return list(tx.conn.execute(stmt.order_by(c.check_in, c.id)))


def records_confirmed(tx: Tx, bank_id: str, start: datetime, end: datetime) -> list[Row[Any]]:
    """Records confirmed in [start, end), with who confirmed them and as what."""
    c = service_records.c
    stmt = select(c.id, c.org_id, c.confirmed_by, c.confirmed_as).where(
        c.bank_id == bank_id, c.confirmed_at >= start, c.confirmed_at < end
    )
    return list(tx.conn.execute(stmt.order_by(c.confirmed_at, c.id)))


def records_logged_between(tx: Tx, bank_id: str, start: datetime, end: datetime) -> list[Row[Any]]:
    """Records written into Timebank in [start, end), whenever the service was."""
    c = service_records.c
    stmt = select(c.id, c.org_id, c.volunteer_id, c.check_out, c.created_at).where(
        c.bank_id == bank_id, c.created_at >= start, c.created_at < end
    )
    return list(tx.conn.execute(stmt.order_by(c.created_at, c.id)))


def deposits_verified(tx: Tx, bank_id: str, start: datetime, end: datetime) -> list[Row[Any]]:
    """Records verified in [start, end) whose deposit is in the log, with the volunteer's
    ledger account."""
    c = service_records.c
    stmt = (
        select(c.id, c.org_id, c.volunteer_id, c.deposit_seq, members.c.ledger_account)
        .join(members, members.c.id == c.volunteer_id)
        .where(
            c.bank_id == bank_id,
            c.verified_at >= start,
            c.verified_at < end,
            c.deposit_seq.is_not(None),
        )
    )
    return list(tx.conn.execute(stmt.order_by(c.deposit_seq)))


def members_registered(tx: Tx, bank_id: str, start: datetime, end: datetime) -> list[Row[Any]]:
    """Members created in [start, end), whatever became of them."""
    c = members.c
    stmt = select(c.id, c.org_id, c.created_at).where(
        c.bank_id == bank_id, c.created_at >= start, c.created_at < end
    )
    return list(tx.conn.execute(stmt.order_by(c.created_at, c.id)))


def member_orgs(tx: Tx, member_ids: Iterable[str]) -> dict[str, str | None]:
    ids = sorted(set(member_ids))
    found: dict[str, str | None] = {}
    for at in range(0, len(ids), 5000):
        rows = tx.conn.execute(
            select(members.c.id, members.c.org_id).where(members.c.id.in_(ids[at : at + 5000]))
        )
        found.update({member_id: org_id for member_id, org_id in rows})
    return found


def usernames(tx: Tx, user_ids: Iterable[str]) -> dict[str, str]:
    ids = sorted(set(user_ids))
    rows = tx.conn.execute(select(users.c.id, users.c.username).where(users.c.id.in_(ids)))
    return {user_id: name for user_id, name in rows}


def records_page(
    tx: Tx,
    bank_id: str,
    start: datetime,
    end: datetime,
    orgs: set[str] | None,
    after: tuple[datetime, str] | None,
    size: int,
) -> list[Row[Any]]:
    """The next ``size`` service records with check-in in [start, end) of ``orgs`` (None: all),
    in (check-in, id) order after ``after``: one page of an export."""
    c = service_records.c
    stmt = (
        select(
            c.id,
            c.org_id,
            c.volunteer_id,
            c.elder_id,
            c.check_in,
            c.check_out,
            c.minutes,
            c.status,
            c.confirmed_as,
            c.verified_at,
            c.deposit_seq,
            c.deposit_minutes,
            service_types.c.code,
            service_types.c.name_zh,
        )
        .join(service_types, service_types.c.id == c.service_type_id)
        .where(c.bank_id == bank_id, c.check_in >= start, c.check_in < end)
    )
    if orgs is not None:
        stmt = stmt.where(c.org_id.in_(sorted(orgs)))
    if after is not None:
        at, record_id = after
        stmt = stmt.where(or_(c.check_in > at, and_(c.check_in == at, c.id > record_id)))
    return list(tx.conn.execute(stmt.order_by(c.check_in, c.id).limit(size)))


@dataclass(frozen=True)
class FrozenElder:
    org_id: str | None
    flags: tuple[str, ...]
    visited: bool
    last_visit: datetime | None


@dataclass(frozen=True)
class FrozenMonth:
    flags: frozenset[str]
    services: frozenset[str]
    elders: dict[str, FrozenElder]


def freeze_month(
    store: AccountsStore,
    bank_id: str,
    month: str,
    flags: Iterable[str],
    services: Iterable[str],
    at: datetime,
    elders: dict[str, tuple[str | None, set[str]]],
    visited: set[str],
    lasts: dict[str, datetime],
) -> None:
    """Write a final month's coverage once: the primary keys refuse a second freezing, and a
    month frozen meanwhile by another request is left as that one wrote it."""
    try:
        with store.transaction() as tx:
            _write_frozen(tx, bank_id, month, flags, services, at, elders, visited, lasts)
    except IntegrityError:
        pass


def _write_frozen(
    tx: Tx,
    bank_id: str,
    month: str,
    flags: Iterable[str],
    services: Iterable[str],
    at: datetime,
    elders: dict[str, tuple[str | None, set[str]]],
    visited: set[str],
    lasts: dict[str, datetime],
) -> None:
    tx.insert(
        coverage_months,
        bank_id=bank_id,
        month=month,
        flags=",".join(sorted(flags)),
        services=",".join(sorted(services)),
        frozen_at=at,
    )
    rows = [
        {
            "bank_id": bank_id,
            "month": month,
            "member_id": member_id,
            "org_id": org_id,
            "flags": ",".join(sorted(member_flags_of)),
            "visited": member_id in visited,
            "last_visit": lasts.get(member_id),
        }
        for member_id, (org_id, member_flags_of) in sorted(elders.items())
    ]
    if rows:
        tx.conn.execute(insert(coverage_elders), rows)


def frozen_month(tx: Tx, bank_id: str, month: str) -> FrozenMonth | None:
    head = tx.first(
        coverage_months, coverage_months.c.bank_id == bank_id, coverage_months.c.month == month
    )
    if head is None:
        return None
    c = coverage_elders.c
    rows = tx.conn.execute(
        select(c.member_id, c.org_id, c.flags, c.visited, c.last_visit).where(
            c.bank_id == bank_id, c.month == month
        )
    )
    elders = {
        r.member_id: FrozenElder(
            r.org_id,
            tuple(f for f in r.flags.split(",") if f),
            bool(r.visited),
            (r.last_visit if r.last_visit.tzinfo else r.last_visit.replace(tzinfo=UTC))
            if r.last_visit is not None
            else None,
        )
        for r in rows
    }
    return FrozenMonth(_codes(head.flags), _codes(head.services), elders)


def _codes(text: str) -> frozenset[str]:
    return frozenset(code for code in text.split(",") if code)


# ---------------------------------------------------------------- half-yearly reports


def insert_report(tx: Tx, **values: Any) -> bool:
    """Store a report about to be published; False when the bank's half already has one (the
    unique index decides between racing publishers). Run in a transaction of its own."""
    try:
        with tx.conn.begin_nested():
            tx.conn.execute(published_reports.insert().values(**values))
    except IntegrityError:
        return False
    return True


def report_of_half(tx: Tx, bank_id: str, half: str) -> Row[Any] | None:
    c = published_reports.c
    return tx.conn.execute(
        select(published_reports).where(c.bank_id == bank_id, c.half == half)
    ).first()


def report_by_id(tx: Tx, report_id: str) -> Row[Any] | None:
    c = published_reports.c
    return tx.conn.execute(
        select(published_reports).where(c.id == report_id, c.status == "published")
    ).first()


def reports_published(tx: Tx) -> list[Row[Any]]:
    c = published_reports.c
    stmt = select(published_reports).where(c.status == "published")
    return list(tx.conn.execute(stmt.order_by(c.bank_id, c.half)))


def mark_published(tx: Tx, report_id: str, seq: int) -> None:
    c = published_reports.c
    tx.conn.execute(
        published_reports.update().where(c.id == report_id).values(status="published", seq=seq)
    )


def members_by_role(
    tx: Tx, bank_id: str, start: datetime, end: datetime
) -> dict[str, dict[str, int]]:
    """Members registered in [start, end) and active members at ``end`` (approved by then and
    active now), as volunteers and as elders (one member may be both)."""
    c = members.c
    out = {"registered": {"volunteers": 0, "elders": 0}, "active": {"volunteers": 0, "elders": 0}}
    rows = tx.conn.execute(
        select(c.is_volunteer, c.is_elder, c.created_at, c.status, c.approved_at).where(
            c.bank_id == bank_id, c.created_at < end
        )
    )
    for is_volunteer, is_elder, created, status, approved in rows:
        created = created if created.tzinfo else created.replace(tzinfo=UTC)
        approved = approved and (approved if approved.tzinfo else approved.replace(tzinfo=UTC))
        groups = ["registered"] if created >= start else []
        if status == "active" and (approved or created) < end:
            groups.append("active")
        for group in groups:
            out[group]["volunteers"] += bool(is_volunteer)
            out[group]["elders"] += bool(is_elder)
    return out


def serving_members(tx: Tx, bank_id: str, start: datetime, end: datetime) -> dict[str, int]:
    """Volunteers and elders with a verified service record whose check-in is in [start, end)."""
    c = service_records.c
    where = (
        c.bank_id == bank_id,
        c.status == "verified",
        c.check_in >= start,
        c.check_in < end,
    )
    volunteers = tx.conn.execute(
        select(func.count(func.distinct(c.volunteer_id))).where(*where)
    ).scalar_one()
    elders = tx.conn.execute(
        select(func.count(func.distinct(c.elder_id))).where(*where)
    ).scalar_one()
    return {"volunteers": int(volunteers), "elders": int(elders)}
