"""The tables of mutual witnessing: the latest checkpoint this bank cosigned for each peer's
log (``federation_witnessed``, one row per origin, replaced only by compare-and-set) and the
split views it refused (``federation_split_views``, kept as evidence)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    String,
    Table,
    Text,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from database import Database, metadata, opened

TS = DateTime(timezone=True)

federation_witnessed = Table(
    "federation_witnessed",
    metadata,
    Column("origin", String(200), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("note", Text, nullable=False),  # the checkpoint with the peer's signature and ours
    Column("updated_at", TS, nullable=False),
)

federation_split_views = Table(
    "federation_split_views",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("origin", String(200), nullable=False),
    Column("reason", String(300), nullable=False),
    Column("evidence", Text, nullable=False),  # the refused add-checkpoint request, verbatim
    Column("seen_at", TS, nullable=False),
    Index("ix_federation_split_views_origin", "origin"),
)


@dataclass(frozen=True)
class SplitViews:
    """How many split views a peer's log was caught in, and the last one."""

    count: int
    last_reason: str
    last_seen: datetime


class Raced(Exception):
    """Another request changed the origin's row since it was read."""


class WitnessedStore:
    def __init__(self, source: Database | str) -> None:
        self.database, self._owned = opened(source)

    def dispose(self) -> None:
        if self._owned:
            self.database.dispose()

    def note(self, origin: str) -> str | None:
        with self.database.reader.connect() as conn:
            found: str | None = conn.execute(
                select(federation_witnessed.c.note).where(federation_witnessed.c.origin == origin)
            ).scalar_one_or_none()
        return found

    def sizes(self) -> dict[str, int]:
        with self.database.reader.connect() as conn:
            rows = conn.execute(select(federation_witnessed.c.origin, federation_witnessed.c.size))
            return {origin: int(size) for origin, size in rows}

    def replace(self, origin: str, size: int, note: str, previous: str | None) -> None:
        """Store ``note`` if the row still holds ``previous`` (None: no row yet); else Raced."""
        now = datetime.now(UTC)
        table = federation_witnessed
        try:
            with self.database.writer.begin() as conn:
                if previous is None:
                    conn.execute(
                        insert(table).values(origin=origin, size=size, note=note, updated_at=now)
                    )
                    return
                done = conn.execute(
                    update(table)
                    .where(table.c.origin == origin, table.c.note == previous)
                    .values(size=size, note=note, updated_at=now)
                )
        except IntegrityError as exc:
            raise Raced(origin) from exc
        if done.rowcount != 1:
            raise Raced(origin)

    def add_split_view(self, origin: str, reason: str, evidence: str) -> None:
        with self.database.writer.begin() as conn:
            conn.execute(
                insert(federation_split_views).values(
                    origin=origin,
                    reason=reason[:300],
                    evidence=evidence,
                    seen_at=datetime.now(UTC),
                )
            )

    def split_views(self) -> dict[str, SplitViews]:
        table = federation_split_views
        with self.database.reader.connect() as conn:
            counts = conn.execute(
                select(table.c.origin, func.count(), func.max(table.c.id)).group_by(table.c.origin)
            ).all()
            found: dict[str, SplitViews] = {}
            for origin, count, last_id in counts:
                reason, seen = conn.execute(
                    select(table.c.reason, table.c.seen_at).where(table.c.id == last_id)
                ).one()
                seen_at: datetime = seen if seen.tzinfo else seen.replace(tzinfo=UTC)  # SQLite
                found[origin] = SplitViews(int(count), reason, seen_at)
        return found
