"""Storage of the log in SQLite or PostgreSQL (SQLAlchemy Core): with ``ledger.storage_sql``
(the batch's driver statements as SQL text) the only SQL in ``ledger``.

Log tables (``log_*``) are append-only: migrations add triggers that reject UPDATE and DELETE
(and TRUNCATE on PostgreSQL). ``ledger_balances`` is a cache of the postings that the
verifier recomputes from the log.

Writers serialize on the database (``database``): SQLite ``BEGIN IMMEDIATE``, PostgreSQL a
transaction-scoped advisory lock (``ledger.storage_sql.PG_WRITER_LOCK``, taken here).
"""

from __future__ import annotations

import logging
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
    func,
    select,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from database import Database, metadata, opened
from database.driver import (
    driver_many_together,
    driver_rows,
    driver_rows_together,
)
from ledger.errors import LedgerError
from ledger.facts import FACT_COLUMNS
from ledger.merkle import NodeId
from ledger.storage_sql import (
    FRONTIER_SQL,
    HEAD_SQL,
    PG_WRITER_LOCK_SQL,
    Head,
    StoredEntry,
    balances_from,
    balances_sql,
    entries_by_id_sql,
    head_from,
    marks,
    stored_by_id,
)

log = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class BatchStart:
    """``Snapshot.batch_start``'s reads."""

    head: Head
    existing: dict[str, StoredEntry]  # by id
    balances: dict[str, int]  # by account
    frontier: dict[NodeId, bytes] | None  # the nodes of Frontier.plan(head.size), if read


# psycopg's TransactionStatus of a connection inside a transaction, and inside a failed one
_INTRANS, _INERROR = 2, 3


class LedgerStore:
    def __init__(self, database: Database | str) -> None:
        self.database, self._owned = opened(database)
        self.url = self.database.url
        self.writer, self.reader = self.database.writer, self.database.reader
        self.is_sqlite = self.database.is_sqlite
        # On PostgreSQL a read is one REPEATABLE READ, READ ONLY transaction: set on the
        # connection at checkout (no statement), it goes out in psycopg's own ``BEGIN``, one
        # round trip, where a ``SET TRANSACTION`` after it was a second. SQLite's reader
        # begins a deferred transaction, a snapshot from its first read.
        self._snapshots = (
            self.reader
            if self.is_sqlite
            else self.reader.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
        )

    def dispose(self) -> None:
        if self._owned:
            self.database.dispose()

    @contextmanager
    def write(self, *, lock_at_batch_start: bool = False) -> Iterator[Snapshot]:
        """One serialized write transaction; rolls back unless the block completes.

        With ``lock_at_batch_start`` (the batch writer) on PostgreSQL, the transaction is the
        snapshot's own, on a connection psycopg leaves in autocommit: ``Snapshot.batch_start``
        sends its ``BEGIN`` and the writer's lock with the batch's first reads, and
        ``Snapshot.insert_batch`` its ``COMMIT`` with the batch's rows, one round trip each
        (psycopg would otherwise wait for ``BEGIN``'s answer, and for the inserts' before the
        commit). The lock is held from the first round trip's answer to the second's."""
        if self.is_sqlite or not lock_at_batch_start:
            with self.database.writing(), self.writer.begin() as conn:
                if not self.is_sqlite:
                    conn.exec_driver_sql(PG_WRITER_LOCK_SQL)
                yield Snapshot(conn, self.is_sqlite)
            return
        # SQLAlchemy's transaction around it (its events see the batch; at the end its
        # commit or rollback finds psycopg's connection idle and sends nothing)
        with (
            self.writer.connect().execution_options(isolation_level="AUTOCOMMIT") as conn,
            conn.begin(),
        ):
            snapshot = Snapshot(conn, False, own_transaction=True)
            try:
                yield snapshot
            except BaseException:
                snapshot.rollback()
                raise
            snapshot.commit()  # a batch that appended nothing

    @contextmanager
    def read(self) -> Iterator[Snapshot]:
        """A consistent read-only view (one snapshot transaction)."""
        with self._snapshots.begin() as conn:
            yield Snapshot(conn, self.is_sqlite)


# A row of a table as the driver takes it: values in the table's column order.
Row = tuple[Any, ...]


def _insert(table: Table) -> str:
    names = [c.name for c in table.columns]
    return f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({marks(names)})"  # noqa: S608


# The writer's inserts, rendered once: rows are tuples in each table's column order.
_INSERTS = {
    t.name: _insert(t)
    for t in (log_entries, log_postings, log_nodes, log_reversals, log_checkpoints, log_facts)
}
_UPSERT_BALANCE = (
    _insert(ledger_balances) + " ON CONFLICT (account) DO UPDATE SET minutes = excluded.minutes"
)


class Snapshot:
    """Reads and writes of the log inside one transaction."""

    def __init__(self, conn: Connection, is_sqlite: bool, *, own_transaction: bool = False) -> None:
        self.conn = conn
        self.is_sqlite = is_sqlite
        # PostgreSQL: begun by batch_start, committed by insert_batch (see LedgerStore.write)
        self.own_transaction = own_transaction and not is_sqlite

    def commit(self) -> None:
        """Commit the snapshot's own transaction if it is still open (a batch that appended
        nothing); one that failed on the server is an error, never silently rolled back."""
        if not self._open():
            return
        if self._status() == _INERROR:
            raise LedgerError("the batch's transaction failed; refusing to commit it")
        driver_rows(self.conn, "COMMIT", ())

    def rollback(self) -> None:
        """Roll the snapshot's own transaction back if it is open. A connection in any other
        state (broken) is left to the pool, which discards it; an error here is logged, so it
        does not hide the one that made the batch fail."""
        try:
            if self._open():
                driver_rows(self.conn, "ROLLBACK", ())
        except Exception as exc:
            log.error("rolling back a failed batch failed: %s", type(exc).__name__)

    def _open(self) -> bool:
        """Whether the snapshot's own transaction is open (the connection is in autocommit:
        any transaction on it is the one ``batch_start`` began)."""
        return self.own_transaction and self._status() in (_INTRANS, _INERROR)

    def _status(self) -> int:
        dbapi = self.conn.connection.dbapi_connection
        assert dbapi is not None
        return int(dbapi.info.transaction_status)

    # ------------------------------------------------------------ reads (any connection)

    def head(self) -> Head:
        return head_from(self._driver_rows(HEAD_SQL, ()))

    def batch_start(self, ids: Sequence[str], accounts: Sequence[str]) -> BatchStart:
        """What a batch of the writer reads first, in one round trip on PostgreSQL (after the
        ``BEGIN`` and the writer's lock, when ``LedgerStore.write`` left them to this): the
        head, the entries already
        appended under ``ids``, the balances of ``accounts``, and on PostgreSQL the nodes of
        the stored tree's right edge (``Frontier.plan``), needed whenever another process
        appended since this one's last batch."""
        statements: list[tuple[str, Sequence[object]]] = []
        if self.own_transaction and not self._open():
            statements += [("BEGIN", ()), (PG_WRITER_LOCK_SQL, ())]
        first = len(statements)
        statements.append((HEAD_SQL, ()))
        if not self.is_sqlite:
            statements.append((FRONTIER_SQL, ()))
        if ids:
            statements.append((entries_by_id_sql(ids), tuple(ids)))
        if accounts:
            statements.append((balances_sql(accounts), tuple(accounts)))
        found = iter(driver_rows_together(self.conn, statements)[first:])
        head = head_from(next(found))
        frontier = None
        if not self.is_sqlite:
            frontier = {(int(level), int(idx)): bytes(h) for level, idx, h in next(found)}
        existing = stored_by_id(next(found)) if ids else {}
        balances = balances_from(next(found)) if accounts else {}
        return BatchStart(head, existing, balances, frontier)

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
                f"SELECT 0, seq, leaf_hash FROM log_entries WHERE seq IN ({marks(leaves)})"  # noqa: S608
            )
            params += leaves
        if by_level:
            # One ``level = ? AND idx IN (…)`` per level: both databases answer it from the
            # primary key (SQLite scans the whole table for a row-value ``IN``).
            terms = [f"(level = ? AND idx IN ({marks(idxs)}))" for idxs in by_level.values()]
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
        return stored_by_id(self._driver_rows(entries_by_id_sql(ids), tuple(ids)))

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
        return balances_from(self._driver_rows(balances_sql(accounts), tuple(accounts)))

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

    def stream_facts(self) -> Iterator[Any]:
        return self._stream(log_facts, log_facts.c.seq)

    def stream_reversals(self) -> Iterator[Any]:
        return self._stream(log_reversals, log_reversals.c.original_seq)

    def stream_cosignatures(self) -> Iterator[Any]:
        return self._stream(log_cosignatures, log_cosignatures.c.size, log_cosignatures.c.witness)

    # ------------------------------------------------------------ ranges for verify's workers

    def _driver_rows(self, sql: str, params: tuple[object, ...]) -> list[Any]:
        """Rows of ``sql`` (``?`` placeholders) as the driver's tuples, on this transaction's
        connection: no SQLAlchemy layer per row (``database.driver``)."""
        return driver_rows(self.conn, sql, params)

    def entry_range(self, start: int, end: int) -> list[Any]:
        """(seq, id, leaf_hash, kind, time, leaf, prev) of entries with ``start <= seq <
        end``, in order: plain driver rows, no per-row type processing
        (``ledger.verify_chunks``)."""
        return self._driver_rows(
            "SELECT seq, id, leaf_hash, kind, time, leaf, prev FROM log_entries"
            " WHERE seq >= ? AND seq < ? ORDER BY seq",
            (start, end),
        )

    def posting_range(self, start: int, end: int) -> list[Any]:
        """(seq, account, minutes) of the postings index rows with ``start <= seq < end``, in the
        order of the index on (seq, account): by seq, then account in the column's collation
        (the code-point order on SQLite)."""
        return self._driver_rows(
            "SELECT seq, account, minutes FROM log_postings WHERE seq >= ? AND seq < ?"
            " ORDER BY seq, account",
            (start, end),
        )

    def fact_range(self, start: int, end: int) -> list[Any]:
        """The ``log_facts`` rows (``ledger.facts.FACT_COLUMNS``) with ``start <= seq < end``, in
        order."""
        return self._driver_rows(
            f"SELECT {', '.join(FACT_COLUMNS)} FROM log_facts WHERE seq >= ? AND seq < ?"  # noqa: S608
            " ORDER BY seq",
            (start, end),
        )

    def node_range(self, level: int, start: int, end: int) -> list[Any]:
        """(idx, hash) of the stored nodes of ``level`` with ``start <= idx < end``, in order."""
        return self._driver_rows(
            "SELECT idx, hash FROM log_nodes WHERE level = ? AND idx >= ? AND idx < ? ORDER BY idx",
            (level, start, end),
        )

    def next_seq(self) -> int:
        """1 + the largest seq (0 for an empty log): one index look-up, unlike :meth:`counts`."""
        return int(
            self.conn.execute(
                select(func.coalesce(func.max(log_entries.c.seq) + 1, 0))
            ).scalar_one()
        )

    def counts(self) -> tuple[int, int, int, int, int]:
        """(entries, 1 + the largest seq, postings index rows, tree nodes, ``log_facts`` rows)."""
        row = self.conn.exec_driver_sql(
            "SELECT (SELECT count(*) FROM log_entries), (SELECT coalesce(max(seq) + 1, 0)"
            " FROM log_entries), (SELECT count(*) FROM log_postings),"
            " (SELECT count(*) FROM log_nodes), (SELECT count(*) FROM log_facts)"
        ).one()
        return int(row[0]), int(row[1]), int(row[2]), int(row[3]), int(row[4])

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

    def cosigned_sizes(self, min_count: int, witnesses: Sequence[str], limit: int = 8) -> list[int]:
        """Largest checkpoint sizes with at least ``min_count`` cosignatures by ``witnesses``
        (verifier keys as text), newest first."""
        rows = self.conn.execute(
            select(log_cosignatures.c.size)
            .where(log_cosignatures.c.witness.in_(witnesses))
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
        entries: Sequence[Row],
        postings: Sequence[Row],
        nodes: Sequence[Row],
        reversals: Sequence[Row],
        checkpoint: Row,
        facts: Sequence[Row] = (),
        balances: Mapping[str, int] | None = None,
    ) -> None:
        """Rows in the column order of their tables (``seq, id, prev, leaf_hash, kind, time,
        leaf``; ``account, seq, minutes``; ``level, idx, hash``; ``original_seq,
        reversal_seq``; ``size, root, note``; ``ledger.facts.FACT_COLUMNS``), and the
        accounts' new ``balances``: one round trip on PostgreSQL."""
        driver_many_together(
            self.conn,
            [
                (sql, rows)
                for sql, rows in (
                    (_INSERTS["log_entries"], entries),
                    (_INSERTS["log_facts"], facts),
                    (_INSERTS["log_postings"], postings),
                    (_INSERTS["log_nodes"], nodes),
                    (_INSERTS["log_reversals"], reversals),
                    (_INSERTS["log_checkpoints"], [checkpoint]),
                    (_UPSERT_BALANCE, list((balances or {}).items())),
                )
                if rows
            ],
            commit=self._open(),
        )
