"""The statements a batch of the log's writer sends to the database driver, written once as SQL
text, and the driver's rows read back into the log's records. No SQLAlchemy here:
``ledger.storage`` sends them through ``database.driver``, on PostgreSQL several in one round
trip (``Snapshot.batch_start``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

PG_WRITER_LOCK = 0x7469_6D65_6261_6E6B  # "timebank" as a 64-bit advisory lock key

# The writer's lock on PostgreSQL, waited for at most 30 s: ``lock_timeout`` set for this
# transaction only (``set_config(..., true)`` is ``SET LOCAL``) and the lock taken in one
# statement, one round trip a batch instead of two. The materialized CTE is evaluated before
# the lock is asked for, so the timeout covers the wait.
PG_WRITER_LOCK_SQL = (
    "WITH timeout AS MATERIALIZED (SELECT set_config('lock_timeout', '30s', true))"  # noqa: S608 - a constant below
    f" SELECT pg_advisory_xact_lock({PG_WRITER_LOCK}) FROM timeout"
)


@dataclass(frozen=True)
class StoredEntry:
    seq: int
    id: str
    leaf_hash: bytes
    leaf: bytes


@dataclass(frozen=True)
class Head:
    """The last entry and last signed checkpoint as seen inside one transaction."""

    size: int
    last_leaf_hash: bytes | None
    last_time: str | None
    checkpoint_size: int
    checkpoint_root: bytes | None
    checkpoint_note: str | None


# The last entry (tag 0) and the last checkpoint (tag 1), read by every batch of the writer in
# one statement (one round trip on PostgreSQL).
HEAD_SQL = (
    "SELECT 0, seq, leaf_hash, time FROM (SELECT seq, leaf_hash, time FROM log_entries"
    " ORDER BY seq DESC LIMIT 1) AS last_entry"
    " UNION ALL SELECT 1, size, root, note FROM (SELECT size, root, note FROM log_checkpoints"
    " ORDER BY size DESC LIMIT 1) AS last_checkpoint"
)


# The stored tree's right edge, ``Frontier.plan(size)``: for each bit ``k`` set in the size,
# the node of level ``k`` and index ``(size >> k) - 1`` (level 0 is an entry's leaf hash).
FRONTIER_SQL = (
    "WITH size AS (SELECT coalesce(max(seq) + 1, 0) AS n FROM log_entries),"
    " edge AS (SELECT k, (n >> k) - 1 AS idx FROM size, generate_series(0, 62) AS k"
    " WHERE (n >> k) & 1 = 1)"
    " SELECT 0, seq, leaf_hash FROM log_entries JOIN edge ON k = 0 AND seq = idx"
    " UNION ALL SELECT level, log_nodes.idx, hash FROM log_nodes"
    " JOIN edge ON k > 0 AND level = k AND log_nodes.idx = edge.idx"
)


def marks(values: Sequence[object]) -> str:
    return ",".join("?" * len(values))


def head_from(rows: Sequence[Any]) -> Head:
    last = cp = None
    for row in rows:
        if row[0] == 0:
            last = row
        else:
            cp = row
    return Head(
        size=int(last[1]) + 1 if last else 0,
        last_leaf_hash=bytes(last[2]) if last else None,
        last_time=str(last[3]) if last else None,
        checkpoint_size=int(cp[1]) if cp else 0,
        checkpoint_root=bytes(cp[2]) if cp else None,
        checkpoint_note=str(cp[3]) if cp else None,
    )


def entries_by_id_sql(ids: Sequence[str]) -> str:
    # only placeholders are formatted into the SQL, never values
    return f"SELECT seq, id, leaf_hash, leaf FROM log_entries WHERE id IN ({marks(ids)})"  # noqa: S608


def stored_by_id(rows: Sequence[Any]) -> dict[str, StoredEntry]:
    return {
        str(i): StoredEntry(int(seq), str(i), bytes(h), bytes(leaf)) for seq, i, h, leaf in rows
    }


def balances_sql(accounts: Sequence[str]) -> str:
    return f"SELECT account, minutes FROM ledger_balances WHERE account IN ({marks(accounts)})"  # noqa: S608


def balances_from(rows: Sequence[Any]) -> dict[str, int]:
    return {str(account): int(minutes) for account, minutes in rows}
