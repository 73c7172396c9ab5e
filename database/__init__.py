"""The database a process shares: one pair of engines and one table metadata for every store.

The ledger, accounts, care, audit-trail and idempotency stores each keep their own tables and
SQL, but a process opens the database once (``Database``) and hands it to each of them, so a
PostgreSQL server sees one pool per process, not one per store.

Writers serialize on the database: SQLite ``BEGIN IMMEDIATE`` (WAL, ``synchronous=FULL``),
taken in turns by every writer of every process (``database.turns``), PostgreSQL a
transaction-scoped advisory lock taken by the ledger. Readers use ordinary
snapshot transactions. The small writes every request makes beside the ledger (its
Idempotency-Key and its audit event) are group-committed (``Database.group``,
``database.group``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, MetaData, create_engine, event
from sqlalchemy.pool import NullPool

from database.group import GroupCommit
from database.liveness import ping_after_idle
from database.turns import WriterTurns, lock_path

metadata = MetaData()
"""Every table of Timebank, registered by the stores' modules (migrations import them all)."""


# Connections kept open per engine and process: one for each of the app's handler threads
# (``api.threads.HANDLER_THREADS``) and a few for the background workers (the sequencer's
# writer, the group commit's leader, the audit sealer, webhook delivery). A connection over
# ``pool_size`` is closed when returned: with fewer kept than threads, balance reads at 32
# concurrent calls opened a new connection every 12 (PostgreSQL) to 30 (SQLite) reads.
POOL_SIZE = 32
POOL_OVERFLOW = 8


SQLITE_BUSY_SECONDS = 30


def make_engines(url: str) -> tuple[Engine, Engine]:
    """(writer, reader) engines. On SQLite the writer begins IMMEDIATE; the reader deferred."""
    if url.startswith("sqlite"):
        return _sqlite_engine(url, "BEGIN IMMEDIATE"), _sqlite_engine(url, "BEGIN")
    engine = create_engine(url, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW)
    ping_after_idle(engine)  # not pool_pre_ping: a round trip before every transaction

    @event.listens_for(engine, "before_cursor_execute")
    def _not_in_a_pipeline(conn: Connection, cursor: Any, statement: str, *_: Any) -> None:
        # SQLAlchemy reads a result that has not arrived as an empty one (database.driver)
        if cursor.connection.pgconn.pipeline_status:
            raise RuntimeError(f"a SQLAlchemy statement inside a pipeline: {statement[:60]}")

    return engine, engine


def _sqlite_engine(url: str, begin: str) -> Engine:
    pooling: dict[str, Any] = (
        {"poolclass": NullPool}
        if ":memory:" in url
        else {"pool_size": POOL_SIZE, "max_overflow": POOL_OVERFLOW}
    )
    engine = create_engine(url, **pooling)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_SECONDS * 1000}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = FULL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql(begin)

    return engine


class Database:
    """One database URL opened once: the writer and reader engines every store uses."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.writer, self.reader = make_engines(url)
        self.is_sqlite = url.startswith("sqlite")
        self._turns = WriterTurns(lock_path(url), SQLITE_BUSY_SECONDS) if self.is_sqlite else None
        self.group = GroupCommit(self.writer, serialize=not self.is_sqlite, writing=self.writing)

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Around a write transaction: on SQLite, every writer of every process takes its turn
        before ``BEGIN IMMEDIATE`` (``database.turns``), instead of sleeping in SQLite's busy
        handler; on PostgreSQL nothing (its writers take advisory locks inside the
        transaction)."""
        if self._turns is None:
            yield
            return
        with self._turns.turn():
            yield

    def dispose(self) -> None:
        if self._turns is not None:
            self._turns.close()
        self.writer.dispose()
        if self.reader is not self.writer:
            self.reader.dispose()


def opened(source: Database | str) -> tuple[Database, bool]:
    """The database a store uses, and whether the store opened it (and so must dispose of it):
    a store given a URL opens its own; a store given a ``Database`` shares it with its owner."""
    if isinstance(source, Database):
        return source, False
    return Database(source), True
