"""The workflow's shared statements: compare-and-set and locking (a state change happens only
if the row is still in the state the rule saw), and the one way requests and records are
listed for a caller."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Column, Row, Table, or_, select, update

from accounts.errors import InvalidInput, NotFound
from accounts.model import Principal
from accounts.storage import Tx, utc
from care.errors import (
    WrongState,
)
from care.model import (
    RecordStatus,
    RequestStatus,
    ServiceRequest,
)
from care.storage import (
    service_records,
    service_requests,
    to_request,
)


def move_record(tx: Tx, record_id: str, expected: RecordStatus, **values: Any) -> bool:
    """Change a record only if it is still ``expected``: whether it was (the compare-and-set
    that keeps racing confirmations, verifications and rejections from overwriting each
    other)."""
    changed = tx.conn.execute(
        update(service_records)
        .where(service_records.c.id == record_id, service_records.c.status == expected.value)
        .values(**values)
    ).rowcount
    return bool(changed == 1)


def locked_request(tx: Tx, request_id: str) -> ServiceRequest:
    """The request's row, locked for the rest of the write (PostgreSQL; SQLite's writer
    holds the whole database already)."""
    row = tx.conn.execute(
        select(service_requests).where(service_requests.c.id == request_id).with_for_update()
    ).first()
    if row is None:
        raise NotFound(f"no request {request_id}", field="request_id")
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
    if request.status is not RequestStatus.ASSIGNED:
        raise WrongState(
            f"the request of this record is {request.status}; the record cannot be confirmed",
            zh="该记录对应的需求已取消，不能确认",
        )
    tx.update(service_requests, request_id, status=RequestStatus.COMPLETED.value)


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
            raise InvalidInput("unknown status", field="status") from exc
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
