"""The workflow's shared statements: compare-and-set and locking (a state change happens only
if the row is still in the state the rule saw), and the one way requests and records are
listed for a caller."""

from __future__ import annotations

import dataclasses
import enum
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Column, Row, Table, bindparam, func, or_, select, update

from accounts.errors import Choices, InvalidInput, NotFound
from accounts.model import Principal
from accounts.storage import Tx, members, utc
from care.model import (
    RecordStatus,
    RequestStatus,
    ServiceRecord,
    ServiceRequest,
)
from care.storage import (
    bank_policies,
    service_records,
    service_requests,
    service_types,
    to_request,
)

# Compare-and-set by id and status, built once: the values are parameters (docs/performance.md).
_MOVE_RECORD = update(service_records).where(
    service_records.c.id == bindparam("b_id"),
    service_records.c.status == bindparam("b_expected"),
)
_MOVE_REQUEST = update(service_requests).where(
    service_requests.c.id == bindparam("b_id"),
    service_requests.c.status == bindparam("b_expected"),
)


def move_record(tx: Tx, record_id: str, expected: RecordStatus, **values: Any) -> bool:
    """Change a record only if it is still ``expected``: whether it was (the compare-and-set
    that keeps racing confirmations, verifications and rejections from overwriting each
    other)."""
    params = {"b_id": record_id, "b_expected": expected.value, **values}
    return bool(tx.conn.execute(_MOVE_RECORD, params).rowcount == 1)


def move_request(tx: Tx, request_id: str, expected: RequestStatus | None, **values: Any) -> bool:
    """Change a request only if it is still ``expected`` (any state when None): whether it
    was (the compare-and-set that keeps a claim and a cancel from both winning)."""
    if expected is None:
        return tx.update(service_requests, request_id, **values) == 1
    params = {"b_id": request_id, "b_expected": expected.value, **values}
    return bool(tx.conn.execute(_MOVE_REQUEST, params).rowcount == 1)


def _changed(before: Any, after: Any) -> dict[str, Any]:
    """The columns a model method changed, as the table stores them (enums by value)."""
    values = {}
    for f in dataclasses.fields(before):
        value = getattr(after, f.name)
        if value != getattr(before, f.name):
            values[f.name] = value.value if isinstance(value, enum.Enum) else value
    return values


def save_record(tx: Tx, before: ServiceRecord, after: ServiceRecord) -> bool:
    """Store what a rule changed (``ServiceRecord.confirmed`` …) if the record is still in
    ``before``'s status: whether it was."""
    return move_record(tx, before.id, before.status, **_changed(before, after))


def save_request(tx: Tx, before: ServiceRequest, after: ServiceRequest) -> bool:
    """Store what a rule changed (``ServiceRequest.cancelled`` …) if the request is still in
    ``before``'s status: whether it was."""
    return move_request(tx, before.id, before.status, **_changed(before, after))


def undo_verification(tx: Tx, record_id: str) -> None:
    """A verified record whose deposit was not posted is confirmed again."""
    tx.conn.execute(
        update(service_records)
        .where(service_records.c.id == record_id, service_records.c.deposit_seq.is_(None))
        .values(status=RecordStatus.CONFIRMED.value, verified_by=None, verified_at=None)
    )


def reject_deposited(tx: Tx, deposit_seq: int, reason: str) -> None:
    """The record whose deposit is ``deposit_seq`` (reversed) is rejected with ``reason``."""
    tx.conn.execute(
        update(service_records)
        .where(service_records.c.deposit_seq == deposit_seq)
        .values(status=RecordStatus.REJECTED.value, rejected_reason=reason)
    )


# The check-in's reads, built once with their values as parameters (docs/performance.md).
_MINUTES_TOWARD_CAP = (
    select(service_records.c.volunteer_id, func.sum(service_records.c.minutes))
    .where(
        service_records.c.volunteer_id.in_(bindparam("b_volunteers", expanding=True)),
        service_records.c.status != RecordStatus.REJECTED.value,
        service_records.c.check_in >= bindparam("b_from"),
        service_records.c.check_in < bindparam("b_to"),
    )
    .group_by(service_records.c.volunteer_id)
)
_OVERLAPPING_RECORD = select(service_records).where(
    service_records.c.volunteer_id == bindparam("b_volunteer"),
    service_records.c.status != RecordStatus.REJECTED.value,
    service_records.c.check_in < bindparam("b_end"),
    service_records.c.check_out > bindparam("b_start"),
)
_LATEST_POLICY = (
    select(bank_policies)
    .where(bank_policies.c.bank_id == bindparam("b_bank"))
    .order_by(bank_policies.c.version.desc())
    .limit(1)
)
_TYPE_BY_CODE = select(service_types).where(
    service_types.c.bank_id == bindparam("b_bank"), service_types.c.code == bindparam("b_code")
)


def minutes_toward_cap(tx: Tx, volunteer_ids: list[str], day_start: datetime) -> dict[str, int]:
    """The daily cap's count: each volunteer's minutes in records that are not rejected and
    began on the day starting at ``day_start`` (the bank's time zone), in every organisation
    of the bank."""
    rows = tx.conn.execute(
        _MINUTES_TOWARD_CAP,
        {
            "b_volunteers": volunteer_ids,
            "b_from": day_start.astimezone(UTC),
            "b_to": (day_start + timedelta(days=1)).astimezone(UTC),
        },
    ).all()
    return {volunteer_id: int(total) for volunteer_id, total in rows}


def overlapping_record(tx: Tx, volunteer_id: str, start: datetime, end: datetime) -> Any:
    """A record of the volunteer, not rejected, whose time overlaps ``start``–``end``; or None."""
    params = {"b_volunteer": volunteer_id, "b_start": start, "b_end": end}
    return tx.conn.execute(_OVERLAPPING_RECORD, params).first()


def latest_policy(tx: Tx, bank_id: str) -> Any:
    """The bank's newest policy row, or None (the defaults apply)."""
    return tx.conn.execute(_LATEST_POLICY, {"b_bank": bank_id}).first()


def type_by_code(tx: Tx, bank_id: str, code: str) -> Any:
    """The bank's service type row of ``code``, or None."""
    return tx.conn.execute(_TYPE_BY_CODE, {"b_bank": bank_id, "b_code": code}).first()


def redeeming_requests(tx: Tx) -> list[Any]:
    """Every request that pays with stored time: its elder's ledger account, its state and the
    minutes it holds (``care.holds`` compares them with the hold accounts)."""
    return list(
        tx.conn.execute(
            select(
                members.c.ledger_account,
                service_requests.c.status,
                service_requests.c.hold_minutes,
            )
            .join(members, members.c.id == service_requests.c.elder_id)
            .where(service_requests.c.redeem.is_(True))
        ).all()
    )


def payers(tx: Tx, request_ids: list[str]) -> dict[str, tuple[str, int]]:
    """Of the requests ``request_ids``: each one's elder's ledger account and its service
    type's weight (what ``ServiceRequest.shortfall`` needs besides her balance)."""
    if not request_ids:
        return {}
    rows = tx.conn.execute(
        select(service_requests.c.id, members.c.ledger_account, service_types.c.weight_permille)
        .join(members, members.c.id == service_requests.c.elder_id)
        .join(service_types, service_types.c.id == service_requests.c.service_type_id)
        .where(service_requests.c.id.in_(request_ids))
    ).all()
    return {row.id: (row.ledger_account, row.weight_permille) for row in rows}


def locked_request(tx: Tx, request_id: str) -> ServiceRequest:
    """The request's row, locked for the rest of the write (PostgreSQL; SQLite's writer
    holds the whole database already)."""
    row = tx.conn.execute(
        select(service_requests).where(service_requests.c.id == request_id).with_for_update()
    ).first()
    if row is None:
        raise NotFound("no request %(id)s", id=request_id, field="request_id")
    return to_request(row)


def live_record(tx: Tx, request_id: str) -> Any:
    """A record of the request that was not rejected, if any."""
    return tx.first(
        service_records,
        service_records.c.request_id == request_id,
        service_records.c.status != RecordStatus.REJECTED.value,
    )


def complete_request(tx: Tx, request_id: str) -> None:
    """Assigned → completed, in the transaction that confirms its record; a request that
    was cancelled meanwhile refuses the confirmation (its held minutes went back)."""
    request = locked_request(tx, request_id)
    save_request(tx, request, request.completed())


def row_dict(row: Any) -> dict[str, Any]:
    assert row is not None
    return {k: utc(v) if isinstance(v, datetime) else v for k, v in row._mapping.items()}


LIST_LIMIT = 500  # rows a list answers with: the newest, so a busy year never hides today


def listed(
    tx: Tx,
    table: Table,
    principal: Principal,
    *,
    status: str | None,
    statuses: type[StrEnum],
    by: Column[Any],
    sees_all: bool,
    also: tuple[Any, ...] = (),
) -> list[Row[Any]]:
    """The rows of ``table`` in the caller's bank that the caller may list (all of them when
    ``sees_all``; else those of their organisations, where they are the elder or the
    volunteer, their proxied elders', and ``also``), with ``status`` if given: the newest
    ``LIST_LIMIT`` by ``by``, oldest first."""
    conditions: list[Any] = [table.c.bank_id == principal.bank_id]
    if status is not None:
        try:
            conditions.append(table.c.status == statuses(status).value)
        except ValueError as exc:
            raise InvalidInput(
                "%(field)s must be one of: %(allowed)s",
                field="status",
                allowed=Choices(s.value for s in statuses),
            ) from exc
    if not sees_all:
        mine: list[Any] = [table.c.org_id.in_(principal.orgs()), *also]
        if principal.acting_member_id:
            mine += [
                table.c.elder_id == principal.acting_member_id,
                table.c.volunteer_id == principal.acting_member_id,
            ]
        if principal.proxied_members():
            mine.append(table.c.elder_id.in_(principal.proxied_members()))
        conditions.append(or_(*mine))
    rows = tx.find(table, *conditions, order=[by.desc(), table.c.id.desc()], limit=LIST_LIMIT)
    return rows[::-1]
