"""The statistics' statements: read-only, over the accounts and care tables, in one snapshot."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, func, or_, select

from accounts.storage import Tx, member_flags, members, organisations
from care.storage import service_records, service_types


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
