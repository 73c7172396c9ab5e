"""Log tables refuse UPDATE, DELETE and (PostgreSQL) TRUNCATE, even from a database user."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import DBAPIError

from ledger.entry import EntryRequest, Posting
from ledger.log import Log
from tests.helpers import ISSUANCE, deposit, member, raw_sql

STATEMENTS = {
    "log_entries": ("UPDATE log_entries SET kind = 'gift'", "DELETE FROM log_entries"),
    "log_postings": ("UPDATE log_postings SET minutes = 1", "DELETE FROM log_postings"),
    "log_nodes": ("UPDATE log_nodes SET idx = idx + 100", "DELETE FROM log_nodes"),
    "log_checkpoints": ("UPDATE log_checkpoints SET note = 'x'", "DELETE FROM log_checkpoints"),
    "log_reversals": (
        "UPDATE log_reversals SET reversal_seq = 9",
        "DELETE FROM log_reversals",
    ),
    "log_facts": ("UPDATE log_facts SET credited = 1", "DELETE FROM log_facts"),
}


@pytest.fixture
def filled(log: Log) -> Log:
    for i in range(4):
        log.append(deposit(f"d{i}", member(1), 30))
    log.append(
        EntryRequest(
            "reversal",
            "r",
            (Posting(ISSUANCE, 30), Posting(member(1), -30)),
            {"reverses": 0, "reason": "test"},
        )
    )
    return log


@pytest.mark.parametrize("table", sorted(STATEMENTS))
@pytest.mark.parametrize("action", [0, 1], ids=["update", "delete"])
def test_update_and_delete_are_refused(filled: Log, db_url: str, table: str, action: int) -> None:
    with pytest.raises(DBAPIError, match="append-only"):
        raw_sql(db_url, STATEMENTS[table][action])
    assert filled.verify().ok


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)  # SQLite has no TRUNCATE
@pytest.mark.parametrize("table", sorted(STATEMENTS))
def test_truncate_is_refused_on_postgresql(filled: Log, db_url: str, table: str) -> None:
    with pytest.raises(DBAPIError, match="append-only"):
        raw_sql(db_url, f"TRUNCATE {table}")
    assert filled.verify().ok
