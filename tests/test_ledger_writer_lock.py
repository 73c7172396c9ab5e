"""The ledger writer's lock on PostgreSQL (``LedgerStore.write``): taken with its 30 s
``lock_timeout`` in one statement, for the transaction only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from ledger.storage import PG_WRITER_LOCK, LedgerStore
from tests.conftest import open_database


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
