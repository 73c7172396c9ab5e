"""Storage of the log in SQLite or PostgreSQL (SQLAlchemy Core), and the only SQL in ``ledger``.

Log tables (``log_*``) are append-only: migrations add triggers that reject UPDATE and DELETE
(and TRUNCATE on PostgreSQL). ``ledger_balances`` is a cache of the postings that the
verifier recomputes from the log.

Writers serialize on the database (``database``): SQLite ``BEGIN IMMEDIATE``, PostgreSQL a
transaction-scoped advisory lock (``PG_WRITER_LOCK``, taken here).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    bindparam,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect

from database import Database, metadata, opened
from ledger.merkle import NodeId

log_entries = Table(
    "log_entries",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("id", String(128), nullable=False, unique=True),
    Column("prev", LargeBinary(32), nullable=False, unique=True),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("time", String(32), nullable=False),
    Column("leaf", LargeBinary, nullable=False),
)

log_postings = Table(
    "log_postings",
    metadata,
    Column("account", String(128), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("minutes", BigInteger, nullable=False),
)

log_nodes = Table(
    "log_nodes",
    metadata,
    Column("level", Integer, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
)

log_checkpoints = Table(
    "log_checkpoints",
    metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("root", LargeBinary(32), nullable=False),
    Column("note", Text, nullable=False),
)

log_reversals = Table(
    "log_reversals",
    metadata,
    Column("original_seq", BigInteger, primary_key=True, autoincrement=False),
    Column("reversal_seq", BigInteger, nullable=False, unique=True),
)

log_cosignatures = Table(
    "log_cosignatures",
    metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("witness", String(300), primary_key=True),
    Column("line", Text, nullable=False),
)

# The facts of each entry the statistics sum (ledger/facts.py), written with the entry.
log_facts = Table(
    "log_facts",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("kind", String(32), nullable=False),
    Column("bank", String(32)),
    Column("credited", BigInteger, nullable=False),
    Column("service", String(64)),
    Column("org", String(64)),
    Column("served", BigInteger),
)

ledger_balances = Table(
    "ledger_balances",
    metadata,
    Column("account", String(128), primary_key=True),
    Column("minutes", BigInteger, nullable=False),
)

Index("ix_log_postings_seq", log_postings.c.seq, log_postings.c.account)

APPEND_ONLY_TABLES = (
    "log_entries",
    "log_postings",
    "log_nodes",
    "log_checkpoints",
    "log_reversals",
    "log_cosignatures",
    "log_facts",
)
PG_WRITER_LOCK = 0x7469_6D65_6261_6E6B  # "timebank" as a 64-bit advisory lock key


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


class LedgerStore:
    def __init__(self, database: Database | str) -> None:
        self.database, self._owned = opened(database)
        self.url = self.database.url
        self.writer, self.reader = self.database.writer, self.database.reader
        self.is_sqlite = self.database.is_sqlite

    def dispose(self) -> None:
        if self._owned:
            self.database.dispose()

    @contextmanager
    def write(self) -> Iterator[Snapshot]:
        """One serialized write transaction; rolls back unless the block completes."""
        with self.writer.begin() as conn:
            if not self.is_sqlite:
                conn.execute(text("SET LOCAL lock_timeout = '30s'"))
                conn.execute(select(func.pg_advisory_xact_lock(PG_WRITER_LOCK)))
            yield Snapshot(conn, self.is_sqlite)

    @contextmanager
    def read(self) -> Iterator[Snapshot]:
        """A consistent read-only view (one snapshot transaction)."""
        with self.reader.begin() as conn:
            if not self.is_sqlite:
                conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
            yield Snapshot(conn, self.is_sqlite)


# Read by every batch of the writer: built once, not per call (docs/performance.md).
_LAST_ENTRY = (
    select(log_entries.c.seq, log_entries.c.leaf_hash, log_entries.c.time)
    .order_by(log_entries.c.seq.desc())
    .limit(1)
)
# Every balance read (a phone asks with each screen): built once, the accounts a parameter.
_BALANCES = select(ledger_balances.c.account, ledger_balances.c.minutes).where(
    ledger_balances.c.account.in_(bindparam("accounts", expanding=True))
)
_LAST_CHECKPOINT = (
    select(log_checkpoints.c.size, log_checkpoints.c.root, log_checkpoints.c.note)
    .order_by(log_checkpoints.c.size.desc())
    .limit(1)
)


def _marks(values: Sequence[object]) -> str:
    return ",".join("?" * len(values))


@functools.cache
def _compiled(table: Table, dialect: Dialect, upsert: bool = False) -> tuple[str, tuple[str, ...]]:
    """An insert into ``table`` compiled once for the database: its SQL in the driver's own
    parameter style, and the order of its parameters when the style is positional (empty when
    they are named). ``upsert``: on a clash of the primary key, the new values win."""
    stmt: Any = (sqlite_insert if dialect.name == "sqlite" else pg_insert)(table)
    if upsert:
        keys = [c for c in table.columns if c.primary_key]
        values = {c.name: stmt.excluded[c.name] for c in table.columns if not c.primary_key}
        stmt = stmt.on_conflict_do_update(index_elements=keys, set_=values)
    compiled = stmt.compile(dialect=dialect, column_keys=[c.name for c in table.columns])
    return compiled.string, tuple(compiled.positiontup or ())


class Snapshot:
    """Reads and writes of the log inside one transaction."""

    def __init__(self, conn: Connection, is_sqlite: bool) -> None:
        self.conn = conn
        self.is_sqlite = is_sqlite

    # ------------------------------------------------------------ reads (any connection)

    def head(self) -> Head:
        last = self.conn.execute(_LAST_ENTRY).first()
        cp = self.conn.execute(_LAST_CHECKPOINT).first()
        return Head(
            size=last.seq + 1 if last else 0,
            last_leaf_hash=last.leaf_hash if last else None,
            last_time=last.time if last else None,
            checkpoint_size=cp.size if cp else 0,
            checkpoint_root=cp.root if cp else None,
            checkpoint_note=cp.note if cp else None,
        )

    def latest_checkpoint(self) -> tuple[int, str] | None:
        row = self.conn.exec_driver_sql(
            "SELECT size, note FROM log_checkpoints ORDER BY size DESC LIMIT 1"
        ).first()
        return (int(row[0]), str(row[1])) if row else None

    def nodes(self, ids: Sequence[NodeId]) -> dict[NodeId, bytes]:
        """Hashes of complete subtrees; level 0 comes from the entries' leaf hashes. One
        statement written as driver SQL: every proof and every batch of the writer reads nodes,
        and building the query as an expression cost more than running it."""
        leaves = [idx for level, idx in ids if level == 0]
        by_level: dict[int, list[int]] = {}
        for level, idx in ids:
            if level > 0:
                by_level.setdefault(level, []).append(idx)
        parts: list[str] = []
        params: list[int] = []
        if leaves:
            # only placeholders are formatted into the SQL, never values
            parts.append(
                f"SELECT 0, seq, leaf_hash FROM log_entries WHERE seq IN ({_marks(leaves)})"  # noqa: S608
            )
            params += leaves
        if by_level:
            # One ``level = ? AND idx IN (…)`` per level: both databases answer it from the
            # primary key (SQLite scans the whole table for a row-value ``IN``).
            terms = [f"(level = ? AND idx IN ({_marks(idxs)}))" for idxs in by_level.values()]
            parts.append("SELECT level, idx, hash FROM log_nodes WHERE " + " OR ".join(terms))  # noqa: S608
            for level, idxs in by_level.items():
                params += [level, *idxs]
        if not parts:
            return {}
        rows = self._driver_rows(" UNION ALL ".join(parts), tuple(params))
        return {(int(level), int(idx)): bytes(h) for level, idx, h in rows}

    def entries_by_id(self, ids: Sequence[str]) -> dict[str, StoredEntry]:
        if not ids:
            return {}
        rows = self.conn.execute(
            select(
                log_entries.c.seq, log_entries.c.id, log_entries.c.leaf_hash, log_entries.c.leaf
            ).where(log_entries.c.id.in_(ids))
        )
        return {r.id: StoredEntry(r.seq, r.id, r.leaf_hash, r.leaf) for r in rows}

    def entries_by_seq(self, seqs: Sequence[int]) -> dict[int, StoredEntry]:
        if not seqs:
            return {}
        rows = self.conn.execute(
            select(
                log_entries.c.seq, log_entries.c.id, log_entries.c.leaf_hash, log_entries.c.leaf
            ).where(log_entries.c.seq.in_(seqs))
        )
        return {r.seq: StoredEntry(r.seq, r.id, r.leaf_hash, r.leaf) for r in rows}

    def reversed_seqs(self, seqs: Sequence[int]) -> set[int]:
        if not seqs:
            return set()
        rows = self.conn.execute(
            select(log_reversals.c.original_seq).where(log_reversals.c.original_seq.in_(seqs))
        )
        return {r.original_seq for r in rows}

    def balances(self, accounts: Sequence[str]) -> dict[str, int]:
        if not accounts:
            return {}
        rows = self.conn.execute(_BALANCES, {"accounts": list(accounts)})
        return {r.account: int(r.minutes) for r in rows}

    def balances_after(self, points: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """Each (account, seq)'s balance just after entry ``seq``: the sum of its postings up to
        and including it (one indexed range sum per point)."""
        found: dict[tuple[str, int], int] = {}
        for account, seq in sorted(set(points)):
            total = self.conn.execute(
                select(func.coalesce(func.sum(log_postings.c.minutes), 0)).where(
                    log_postings.c.account == account, log_postings.c.seq <= seq
                )
            ).scalar_one()
            found[(account, seq)] = int(total)
        return found

    def leaves(self, start: int, end: int) -> list[tuple[int, bytes]]:
        rows = self.conn.execute(
            select(log_entries.c.seq, log_entries.c.leaf)
            .where(log_entries.c.seq >= start, log_entries.c.seq < end)
            .order_by(log_entries.c.seq)
        )
        return [(r.seq, r.leaf) for r in rows]

    # ------------------------------------------------------------ streaming for the verifier

    def _stream(self, table: Table, *order: Any) -> Iterator[Any]:
        result = self.conn.execution_options(stream_results=True, yield_per=10_000).execute(
            select(table).order_by(*order)
        )
        yield from result

    def stream_entries(self) -> Iterator[Any]:
        return self._stream(log_entries, log_entries.c.seq)

    def stream_postings(self) -> Iterator[Any]:
        return self._stream(log_postings, log_postings.c.seq, log_postings.c.account)

    def stream_nodes(self) -> Iterator[Any]:
        return self._stream(log_nodes, log_nodes.c.level, log_nodes.c.idx)

    def stream_checkpoints(self) -> Iterator[Any]:
        return self._stream(log_checkpoints, log_checkpoints.c.size)

    def stream_balances(self) -> Iterator[Any]:
        return self._stream(ledger_balances, ledger_balances.c.account)

    # ------------------------------------------------------------ ranges for verify's workers

    def _driver_rows(self, sql: str, params: tuple[int, ...]) -> list[Any]:
        """Rows of ``sql`` (``?`` placeholders) as the driver's tuples, on this transaction's
        connection: no SQLAlchemy layer per row."""
        cursor = self.conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(sql if self.is_sqlite else sql.replace("?", "%s"), params)
            return list(cursor.fetchall())
        finally:
            cursor.close()

    def entry_range(self, start: int, end: int) -> list[Any]:
        """(seq, id, leaf_hash, kind, time, leaf) of entries with ``start <= seq < end``, in
        order: plain driver rows, no per-row type processing (``ledger.verify_chunks``)."""
        return self._driver_rows(
            "SELECT seq, id, leaf_hash, kind, time, leaf FROM log_entries"
            " WHERE seq >= ? AND seq < ? ORDER BY seq",
            (start, end),
        )

    def posting_range(self, start: int, end: int) -> list[Any]:
        """(seq, account, minutes) of the postings index rows with ``start <= seq < end``."""
        return self._driver_rows(
            "SELECT seq, account, minutes FROM log_postings WHERE seq >= ? AND seq < ?",
            (start, end),
        )

    def node_range(self, level: int, start: int, end: int) -> list[Any]:
        """(idx, hash) of the stored nodes of ``level`` with ``start <= idx < end``, in order."""
        return self._driver_rows(
            "SELECT idx, hash FROM log_nodes WHERE level = ? AND idx >= ? AND idx < ? ORDER BY idx",
            (level, start, end),
        )

    def counts(self) -> tuple[int, int, int, int]:
        """(entries, 1 + the largest seq, postings index rows, tree nodes)."""
        row = self.conn.exec_driver_sql(
            "SELECT (SELECT count(*) FROM log_entries), (SELECT coalesce(max(seq) + 1, 0)"
            " FROM log_entries), (SELECT count(*) FROM log_postings),"
            " (SELECT count(*) FROM log_nodes)"
        ).one()
        return int(row[0]), int(row[1]), int(row[2]), int(row[3])

    def account_entries(
        self, accounts: Sequence[str], limit: int, before_seq: int | None
    ) -> list[tuple[int, bytes]]:
        """Newest first: (seq, leaf) of entries with a posting on any of ``accounts``."""
        seqs = select(log_postings.c.seq).where(log_postings.c.account.in_(accounts))
        if before_seq is not None:
            seqs = seqs.where(log_postings.c.seq < before_seq)
        rows = self.conn.execute(
            select(log_entries.c.seq, log_entries.c.leaf)
            .where(log_entries.c.seq.in_(seqs.distinct()))
            .order_by(log_entries.c.seq.desc())
            .limit(limit)
        )
        return [(int(r.seq), bytes(r.leaf)) for r in rows]

    def covering_checkpoint(self, seq: int) -> int:
        """Size of the first signed checkpoint that includes entry ``seq``."""
        size = self.conn.execute(
            select(func.min(log_checkpoints.c.size)).where(log_checkpoints.c.size > seq)
        ).scalar()
        return int(size) if size is not None else 0

    def checkpoint_sizes(self) -> set[int]:
        return {int(r[0]) for r in self.conn.execute(select(log_checkpoints.c.size))}

    # ------------------------------------------------------------ witness cosignatures

    def checkpoint_note(self, size: int) -> str | None:
        row = self.conn.execute(
            select(log_checkpoints.c.note).where(log_checkpoints.c.size == size)
        ).first()
        return str(row.note) if row else None

    def cosignatures(self, size: int) -> list[tuple[str, str]]:
        """(witness verifier key, cosignature line) stored for the checkpoint of ``size``."""
        rows = self.conn.execute(
            select(log_cosignatures.c.witness, log_cosignatures.c.line)
            .where(log_cosignatures.c.size == size)
            .order_by(log_cosignatures.c.witness)
        )
        return [(r.witness, r.line) for r in rows]

    def cosigned_sizes(self, min_count: int, limit: int = 8) -> list[int]:
        """Largest checkpoint sizes with at least ``min_count`` cosignatures, newest first."""
        rows = self.conn.execute(
            select(log_cosignatures.c.size)
            .group_by(log_cosignatures.c.size)
            .having(func.count() >= min_count)
            .order_by(log_cosignatures.c.size.desc())
            .limit(limit)
        )
        return [int(r.size) for r in rows]

    def last_cosigned_size(self, witness: str) -> int:
        """The largest size ``witness`` cosigned, 0 if none."""
        size = self.conn.execute(
            select(func.max(log_cosignatures.c.size)).where(log_cosignatures.c.witness == witness)
        ).scalar()
        return int(size or 0)

    def add_cosignature(self, size: int, witness: str, line: str) -> None:
        """Keep a cosignature; the first per witness and size wins (the table is append-only)."""
        stmt: Any = (sqlite_insert if self.is_sqlite else pg_insert)(log_cosignatures)
        self.conn.execute(
            stmt.on_conflict_do_nothing(), [{"size": size, "witness": witness, "line": line}]
        )

    # ------------------------------------------------------------ writes (inside ``write``)

    def insert_batch(
        self,
        entries: Sequence[Mapping[str, Any]],
        postings: Sequence[Mapping[str, Any]],
        nodes: Sequence[Mapping[str, Any]],
        reversals: Sequence[Mapping[str, Any]],
        checkpoint: Mapping[str, Any],
        facts: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        for table, rows in (
            (log_entries, entries),
            (log_facts, facts),
            (log_postings, postings),
            (log_nodes, nodes),
            (log_reversals, reversals),
            (log_checkpoints, [checkpoint]),
        ):
            if rows:
                self._insert_many(table, rows)

    def _insert_many(self, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
        """One driver ``executemany`` of a statement rendered once per table and database: the
        writer's batches skip SQLAlchemy's per-row parameter processing (the values are plain
        ints, strings and bytes already)."""
        self._driver_many(_compiled(table, self.conn.dialect), rows)

    def _driver_many(
        self, compiled: tuple[str, tuple[str, ...]], rows: Sequence[Mapping[str, Any]]
    ) -> None:
        sql, order = compiled
        params = [tuple(row[c] for c in order) for row in rows] if order else list(rows)
        self.conn.exec_driver_sql(sql, params)

    def upsert_balances(self, balances: Mapping[str, int]) -> None:
        if not balances:
            return
        rows = [{"account": a, "minutes": m} for a, m in balances.items()]
        self._driver_many(_compiled(ledger_balances, self.conn.dialect, upsert=True), rows)
