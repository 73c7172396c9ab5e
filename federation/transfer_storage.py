"""What the sending bank must remember of a transfer beyond its log: the receiving member's id
in the peer bank (the log holds only a commitment to it), so a retry can deliver again."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, String, Table, select
from sqlalchemy.exc import IntegrityError

from database import Database, metadata, opened

federation_transfers = Table(
    "federation_transfers",
    metadata,
    Column("transfer", String(32), primary_key=True),  # the transfer_out's <transfer>
    Column("peer", String(32), nullable=False),
    Column("to_member_id", String(64), nullable=False),  # the member's id in the peer bank
    Column("created_at", DateTime(timezone=True), nullable=False),
)


class TransferStore:
    def __init__(self, source: Database | str) -> None:
        self.database, self._owned = opened(source)

    def dispose(self) -> None:
        if self._owned:
            self.database.dispose()

    def remember(self, transfer: str, peer: str, to_member_id: str) -> None:
        """Keep the receiving member of ``transfer``; a retry of the same transfer keeps the
        first row (the log's entry says which member it committed to)."""
        try:
            with self.database.writer.begin() as conn:
                conn.execute(
                    federation_transfers.insert().values(
                        transfer=transfer,
                        peer=peer,
                        to_member_id=to_member_id,
                        created_at=datetime.now(UTC),
                    )
                )
        except IntegrityError:
            pass

    def to_member(self, transfer: str) -> str | None:
        with self.database.reader.connect() as conn:
            found = conn.execute(
                select(federation_transfers.c.to_member_id).where(
                    federation_transfers.c.transfer == transfer
                )
            ).scalar_one_or_none()
        return None if found is None else str(found)

    def all(self) -> list[tuple[str, str]]:
        """(transfer, to_member_id) of every transfer sent, oldest first."""
        with self.database.reader.connect() as conn:
            rows = conn.execute(
                select(
                    federation_transfers.c.transfer, federation_transfers.c.to_member_id
                ).order_by(federation_transfers.c.created_at)
            )
            return [(str(r[0]), str(r[1])) for r in rows]
