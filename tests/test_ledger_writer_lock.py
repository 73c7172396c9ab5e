"""The ledger writer's lock on PostgreSQL (``LedgerStore.write``): taken with its 30 s
``lock_timeout`` in one statement, for the transaction only; by the batch writer together
with its first reads, the tree's right edge among them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from database.driver import driver_rows
from ledger.config import Settings
from ledger.log import Log
from ledger.merkle import Frontier
from ledger.storage import LedgerStore
from ledger.storage_sql import PG_WRITER_LOCK
from tests.conftest import make_database, open_database
from tests.helpers import deposit, member


@pytest.fixture
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LedgerStore]:
    for db in open_database("postgresql", request, tmp_path):
        yield LedgerStore(db)


def test_the_write_transaction_holds_the_lock_with_its_timeout(store: LedgerStore) -> None:
    with store.write() as snapshot:
        assert snapshot.conn.execute(text("SHOW lock_timeout")).scalar_one() == "30s"
        with store.database.reader.connect() as other:  # another session cannot take it
            taken = other.execute(
                text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": PG_WRITER_LOCK}
            ).scalar_one()
            assert taken is False
    with store.database.reader.connect() as conn:  # released, and the timeout was LOCAL
        assert conn.execute(text("SHOW lock_timeout")).scalar_one() == "0"
        taken = conn.execute(
            text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": PG_WRITER_LOCK}
        ).scalar_one()
        assert taken is True


def test_a_batch_of_the_writer_takes_the_lock_with_its_first_reads(store: LedgerStore) -> None:
    with store.write(lock_at_batch_start=True) as snapshot:
        with store.database.reader.connect() as other:  # not yet: nothing was sent
            assert other.execute(
                text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": PG_WRITER_LOCK}
            ).scalar_one()
            other.rollback()
        snapshot.batch_start([], [])
        with store.database.reader.connect() as other:  # taken in that one round trip
            assert not other.execute(
                text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": PG_WRITER_LOCK}
            ).scalar_one()
        assert snapshot.conn.execute(text("SHOW lock_timeout")).scalar_one() == "30s"


@pytest.fixture
def pg_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    for url in make_database("postgresql", request, tmp_path):
        yield Settings.from_env(
            {
                "TIMEBANK_DATA_DIR": str(tmp_path / "data"),
                "TIMEBANK_DATABASE_URL": url,
                "TIMEBANK_LOG_ORIGIN": "timebank.test/log",
            }
        )


def test_two_writers_take_turns_from_the_tree_edge_read_with_their_first_reads(
    pg_settings: Settings,
) -> None:
    """Two processes' writers on one log: each batch after the other's starts from the tree's
    right edge as read with the batch's first reads, which must be ``Frontier.plan``'s nodes
    at every size (one bit pattern after another, up to 37 leaves)."""
    first, second = Log.open(pg_settings), Log.open(pg_settings)
    try:
        for n in range(37):
            (first if n % 2 else second).append(deposit(f"turn-{n}", member(1), 1))
            with first.store.read() as snapshot:
                start = snapshot.batch_start([], [])
                size = start.head.size
                assert size == n + 1
                assert start.frontier == snapshot.nodes(Frontier.plan(size))
                assert len(start.frontier) == bin(size).count("1")
        assert first.verify().ok
        assert first.balances([member(1)]) == {member(1): 37}
    finally:
        first.close()
        second.close()


def _lock_is_free(store: LedgerStore) -> bool:
    with store.database.reader.connect() as other:
        taken = other.execute(
            text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": PG_WRITER_LOCK}
        ).scalar_one()
        other.rollback()
    return bool(taken)


def test_a_batch_that_fails_after_its_first_reads_rolls_back_and_frees_the_lock(
    store: LedgerStore,
) -> None:
    """The batch's transaction is begun by its first reads, on a connection psycopg leaves in
    autocommit: a failure after them rolls it back (nothing written, the lock released),
    and one that appends nothing commits; the connection serves the next write either way."""
    row = (0, "never", b"\0" * 32, b"\1" * 32, "deposit", "2026-12-06T00:00:00Z", b"{}")

    def fail_after_first_reads() -> None:
        with store.write(lock_at_batch_start=True) as snapshot:
            snapshot.batch_start(["never"], [])
            assert not _lock_is_free(store)
            insert = "INSERT INTO log_entries VALUES (?, ?, ?, ?, ?, ?, ?)"
            driver_rows(snapshot.conn, insert, row)
            raise RuntimeError("the batch fails")

    with pytest.raises(RuntimeError, match="the batch fails"):
        fail_after_first_reads()
    assert _lock_is_free(store)
    with store.write(lock_at_batch_start=True) as snapshot:
        start = snapshot.batch_start(["never"], [])
        assert start.head.size == 0 and start.existing == {}  # the insert was rolled back
    assert _lock_is_free(store)
    with store.read() as snapshot:
        assert snapshot.head().size == 0
