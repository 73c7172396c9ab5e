"""The ledger's reads on PostgreSQL (``LedgerStore.read``): one REPEATABLE READ, READ ONLY
transaction begun as such (no ``SET TRANSACTION`` of its own), and the pooled connection it
used goes back to the writers as an ordinary read-write, READ COMMITTED one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError

from ledger.storage import LedgerStore
from tests.conftest import open_database


@pytest.fixture
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LedgerStore]:
    for db in open_database("postgresql", request, tmp_path):
        yield LedgerStore(db)


def test_a_read_is_a_repeatable_read_read_only_snapshot(store: LedgerStore) -> None:
    with store.writer.begin() as conn:
        conn.execute(text("CREATE TABLE snapshot_probe (n integer)"))
    with store.read() as snapshot:
        conn = snapshot.conn
        assert conn.execute(text("SHOW transaction_isolation")).scalar_one() == "repeatable read"
        assert conn.execute(text("SHOW transaction_read_only")).scalar_one() == "on"
        assert conn.execute(text("SELECT count(*) FROM snapshot_probe")).scalar_one() == 0
        with store.writer.begin() as other:  # committed after the snapshot was taken
            other.execute(text("INSERT INTO snapshot_probe VALUES (1)"))
        assert conn.execute(text("SELECT count(*) FROM snapshot_probe")).scalar_one() == 0
    with store.read() as snapshot:
        assert snapshot.conn.execute(text("SELECT count(*) FROM snapshot_probe")).scalar_one() == 1


def test_a_read_refuses_writes(store: LedgerStore) -> None:
    with pytest.raises(DBAPIError, match="read-only transaction"), store.read() as snapshot:
        snapshot.conn.execute(text("CREATE TABLE refused_in_a_read (n integer)"))
    with store.writer.begin() as conn:  # the same statement in a write transaction
        conn.execute(text("CREATE TABLE refused_in_a_read (n integer)"))


def test_the_connection_goes_back_to_the_pool_read_write(store: LedgerStore) -> None:
    with store.read() as snapshot:
        used = snapshot.conn.connection.dbapi_connection
    with store.writer.begin() as conn:
        assert conn.connection.dbapi_connection is used  # the pool's one connection, again
        assert conn.execute(text("SHOW transaction_isolation")).scalar_one() == "read committed"
        assert conn.execute(text("SHOW transaction_read_only")).scalar_one() == "off"


def test_a_read_sends_no_statement_of_its_own(store: LedgerStore) -> None:
    sent: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        sent.append(statement)

    event.listen(store.reader, "before_cursor_execute", record)
    try:
        with store.read() as snapshot:
            snapshot.next_seq()
    finally:
        event.remove(store.reader, "before_cursor_execute", record)
    assert len(sent) == 1 and "SET TRANSACTION" not in sent[0]
