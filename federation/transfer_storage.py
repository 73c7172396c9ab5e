"""What the sending bank must remember of a transfer beyond its log: the receiving member's id
in the peer bank (the log holds only a commitment to it), so a retry can deliver again, and
whether the transfer is still open, so the retry worker visits only those (migration 0021)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, Index, String, Table, func, select, update
from sqlalchemy.exc import IntegrityError

from database import Database, metadata, opened

OPEN = "open"  # held: no transfer_settled or transfer_void yet (or not known to be)
UNSENT = "unsent"  # never held: the transfer_out was refused or its request died before it
# settled and void: the transfer's closing entry is in the log

federation_transfers = Table(
    "federation_transfers",
    metadata,
    Column("transfer", String(32), primary_key=True),  # the transfer_out's <transfer>
    Column("peer", String(32), nullable=False),
    Column("to_member_id", String(64), nullable=False),  # the member's id in the peer bank
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("status", String(8), nullable=False, server_default=OPEN),
    Index("ix_federation_transfers_status", "status", "created_at"),
)


@dataclass(frozen=True)
class OpenTransfer:
    transfer: str
    peer: str
    to_member_id: str
    created_at: datetime


class TransferStore:
    def __init__(self, source: Database | str) -> None:
        self.database, self._owned = opened(source)

    def dispose(self) -> None:
        if self._owned:
            self.database.dispose()

    def remember(self, transfer: str, peer: str, to_member_id: str) -> None:
        """Keep the receiving member of ``transfer``, open; a retry of the same transfer keeps
        the first row (the log's entry says which member it committed to) and reopens it if
        it was taken as never sent."""
        try:
            with self.database.writer.begin() as conn:
                conn.execute(
                    federation_transfers.insert().values(
                        transfer=transfer,
                        peer=peer,
                        to_member_id=to_member_id,
                        created_at=datetime.now(UTC),
                        status=OPEN,
                    )
                )
        except IntegrityError:
            self._move(transfer, UNSENT, OPEN)

    def close(self, transfer: str, status: str) -> None:
        """The transfer is ``settled`` or ``void`` (or ``unsent``): the worker leaves it."""
        self._move(transfer, OPEN, status)

    def _move(self, transfer: str, old: str, new: str) -> None:
        with self.database.writer.begin() as conn:
            conn.execute(
                update(federation_transfers)
                .where(federation_transfers.c.transfer == transfer)
                .where(federation_transfers.c.status == old)
                .values(status=new)
            )

    def to_member(self, transfer: str) -> str | None:
        with self.database.reader.connect() as conn:
            found = conn.execute(
                select(federation_transfers.c.to_member_id).where(
                    federation_transfers.c.transfer == transfer
                )
            ).scalar_one_or_none()
        return None if found is None else str(found)

    def open(self, limit: int | None = None, before: datetime | None = None) -> list[OpenTransfer]:
        """The transfers still open, oldest first (``before``: created before then); through
        the index on (status, created_at), so closed transfers cost nothing."""
        c = federation_transfers.c
        query = (
            select(c.transfer, c.peer, c.to_member_id, c.created_at)
            .where(c.status == OPEN)
            .order_by(c.created_at)
            .limit(limit)
        )
        if before is not None:
            query = query.where(c.created_at < before)
        with self.database.reader.connect() as conn:
            rows = conn.execute(query).all()
        return [OpenTransfer(str(r[0]), str(r[1]), str(r[2]), _utc(r[3])) for r in rows]

    def statuses(self) -> dict[str, int]:
        """How many transfers stand in each status (tests, the operator)."""
        c = federation_transfers.c
        with self.database.reader.connect() as conn:
            rows = conn.execute(select(c.status, func.count()).group_by(c.status))
            return {str(status): int(count) for status, count in rows}


def _utc(moment: datetime) -> datetime:
    """SQLite gives naive datetimes back: they were written in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
