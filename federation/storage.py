"""The peers table: one row per district bank this deployment talks to. Rows are added and
removed by the operator (``timebank peers``); each change is in the audit trail."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, RowMapping, String, Table, delete, insert, select
from sqlalchemy.exc import IntegrityError

from accounts.storage import banks
from database import Database, metadata, opened

TS = DateTime(timezone=True)

federation_peers = Table(
    "federation_peers",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("url", String(300), nullable=False),
    Column("log_origin", String(200), nullable=False, unique=True),
    Column("log_key", String(300), nullable=False),  # verifies the peer's checkpoints
    # verifies the requests the peer signs (federation.signing); looked up by its key id
    Column("request_key", String(300), nullable=False),
    Column("request_key_id", String(250), nullable=False, unique=True),
    # checks the cosignatures the peer's witness gives our checkpoints (0018; None: the peer
    # is not asked to witness our log)
    Column("witness_key", String(300), nullable=True),
    Column("added_by", String(64), nullable=False),
    Column("added_at", TS, nullable=False),
)


@dataclass(frozen=True)
class PeerRow:
    name: str
    url: str
    log_origin: str
    log_key: str
    request_key: str
    request_key_id: str
    added_by: str
    added_at: datetime
    witness_key: str | None = None


class Duplicate(Exception):
    """A row with the same name, origin or request key exists (a racing ``add``)."""


class PeerStore:
    def __init__(self, source: Database | str) -> None:
        self.database, self._owned = opened(source)

    def dispose(self) -> None:
        if self._owned:
            self.database.dispose()

    def add(self, row: PeerRow) -> None:
        try:
            with self.database.writer.begin() as conn:
                conn.execute(insert(federation_peers).values(**row.__dict__))
        except IntegrityError as exc:
            raise Duplicate(str(exc.orig)) from exc

    def remove(self, name: str) -> bool:
        with self.database.writer.begin() as conn:
            done = conn.execute(delete(federation_peers).where(federation_peers.c.name == name))
        return done.rowcount == 1

    def bank_ids(self) -> list[str]:
        """The banks this deployment keeps (each has its own due_to/due_from accounts)."""
        with self.database.reader.connect() as conn:
            return [str(r[0]) for r in conn.execute(select(banks.c.id).order_by(banks.c.id))]

    def all(self) -> list[PeerRow]:
        with self.database.reader.connect() as conn:
            rows = conn.execute(select(federation_peers).order_by(federation_peers.c.name))
            return [_row(r._mapping) for r in rows]


def _row(m: RowMapping) -> PeerRow:
    added_at: datetime = m["added_at"]
    return PeerRow(
        name=m["name"],
        url=m["url"],
        log_origin=m["log_origin"],
        log_key=m["log_key"],
        request_key=m["request_key"],
        request_key_id=m["request_key_id"],
        added_by=m["added_by"],
        added_at=added_at if added_at.tzinfo else added_at.replace(tzinfo=UTC),  # SQLite
        witness_key=m["witness_key"],
    )
