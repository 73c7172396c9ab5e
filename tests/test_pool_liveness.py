"""PostgreSQL connections are pinged at checkout only after idling (``database.liveness``): a
connection the server dropped while it sat in the pool is replaced before anyone uses it, and
a connection just returned goes out again without a round trip."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, exc, text
from sqlalchemy.pool import NullPool

import database.liveness
from database import Database
from tests.conftest import open_database


@pytest.fixture
def database_pg(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    yield from open_database("postgresql", request, tmp_path)


def _pooled_backend(db: Database) -> int:
    """The server process of the connection the pool will hand out next (it keeps one)."""
    with db.writer.connect() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    return int(pid)


def _terminate(db: Database, pid: int) -> None:
    """Drop that connection on the server's side, as a restart or an idle timeout would."""
    other = create_engine(db.url, poolclass=NullPool)  # not the pool's connection
    try:
        with other.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        other.dispose()


def test_a_connection_dropped_while_idle_is_replaced_before_use(
    database_pg: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database.liveness, "IDLE_BEFORE_PING", 0.0)
    pid = _pooled_backend(database_pg)
    _terminate(database_pg, pid)
    with database_pg.writer.begin() as conn:  # pinged, found dead, replaced: no error
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != pid


def test_a_connection_just_returned_is_not_pinged(
    database_pg: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same dropped connection, but returned too recently to be pinged: the statement
    # meets the dead connection. (Before, pool_pre_ping paid a round trip for this at every
    # checkout; under load connections come back within milliseconds.)
    monkeypatch.setattr(database.liveness, "IDLE_BEFORE_PING", 3600.0)
    pid = _pooled_backend(database_pg)
    _terminate(database_pg, pid)
    with pytest.raises(exc.OperationalError), database_pg.writer.begin() as conn:
        conn.execute(text("SELECT 1"))
    # SQLAlchemy invalidated it on the error: the next transaction has a live connection.
    with database_pg.writer.begin() as conn:
        assert conn.execute(text("SELECT 1")).scalar_one() == 1
