"""A statement sent to the database driver directly, inside a SQLAlchemy transaction.

For the few statements every durable write runs, SQLAlchemy's execution layers (execution
context, result metadata, parameter processing) cost more CPU than the driver's own work: on
PostgreSQL ~90 µs a statement against ~110 µs through psycopg alone, on SQLite ~50 against
~20 µs (docs/performance.md). Such statements are written once as SQL with ``?`` marks and
their values passed as the driver takes them. A driver error is raised as SQLAlchemy raises it
(``sqlalchemy.exc.IntegrityError`` and the like), so callers handle one kind of error whichever
way the statement ran.

On PostgreSQL a few statements whose parameters do not depend on each other's results can go
out together (``driver_rows_together``, ``driver_many_together``): psycopg's pipeline mode sends
them all and waits once. Each wait is a round trip, and on a busy server each is also a wait for
the interpreter lock before the thread can go on; the ledger's writer holds the log's lock
through every one of its waits.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError


def driver_rows(conn: Connection, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` (``?`` placeholders; ``[]`` for a statement without rows) run on
    ``conn``'s transaction. Inside ``pipelined`` only for a statement that returns rows: it
    waits once, for its rows and the answers to everything sent before it."""
    if not _in_pipeline(conn):
        return _run(conn, sql, params, many=False)
    return driver_later(conn, sql, params)()


def driver_send(conn: Connection, sql: str, params: Sequence[Any]) -> None:
    """Run ``sql``, a statement whose result nobody reads. Inside ``pipelined`` it is only
    sent: its error, if any, is raised where the pipeline next waits."""
    if not _in_pipeline(conn):
        _run(conn, sql, params, many=False)
        return
    _sent(conn, sql, params).close()


def driver_later(
    conn: Connection, sql: str, params: Sequence[Any]
) -> Callable[[], list[tuple[Any, ...]]]:
    """Run ``sql`` (a statement that returns rows); its rows are read by calling what this
    returns. Inside ``pipelined`` it is only sent: reading its rows waits for them (once the
    pipeline has ended, they are at hand)."""
    if not _in_pipeline(conn):
        found = _run(conn, sql, params, many=False)
        return lambda: found
    cursor = _sent(conn, sql, params)

    def fetched() -> list[tuple[Any, ...]]:
        try:
            with _mapped(conn, [(sql, params)]):
                return list(cursor.fetchall())
        finally:
            cursor.close()

    return fetched


def _sent(conn: Connection, sql: str, params: Sequence[Any]) -> Any:
    """A new cursor of ``conn``'s driver connection that has sent ``sql`` (in a pipeline: not
    waited for)."""
    cursor = _dbapi(conn).cursor()
    try:
        with _mapped(conn, [(sql, params)]):
            cursor.execute(sql.replace("?", "%s"), params)
    except BaseException:
        cursor.close()
        raise
    return cursor


def _dbapi(conn: Connection) -> Any:
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    return dbapi


@contextmanager
def pipelined(conn: Connection) -> Iterator[None]:
    """On PostgreSQL, psycopg's pipeline mode for the block: ``driver_send`` and
    ``driver_later`` statements go out without waiting, ``driver_rows`` waits once for all of
    them, and leaving the block waits for the rest (raising the first error, as SQLAlchemy
    would). Only these functions may run statements inside it: SQLAlchemy would read a result
    that has not arrived as an empty one. On SQLite nothing changes."""
    if conn.dialect.name == "sqlite":
        yield
        return
    with _mapped(conn, [("pipeline", ())]), _dbapi(conn).pipeline():
        yield


def _in_pipeline(conn: Connection) -> bool:
    return conn.dialect.name != "sqlite" and bool(_dbapi(conn).pgconn.pipeline_status)


def driver_many(conn: Connection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    """One driver ``executemany`` of ``sql`` (``?`` placeholders) on ``conn``'s transaction."""
    _run(conn, sql, rows, many=True)


def _run(conn: Connection, sql: str, params: Any, *, many: bool) -> list[tuple[Any, ...]]:
    dialect = conn.dialect
    if dialect.name != "sqlite":
        sql = sql.replace("?", "%s")
    cursor = _dbapi(conn).cursor()
    try:
        if many:
            cursor.executemany(sql, params)
            return []
        cursor.execute(sql, params)
        return list(cursor.fetchall()) if cursor.description is not None else []
    except dialect.loaded_dbapi.Error as exc:
        error = DBAPIError.instance(
            sql, params, exc, dialect.loaded_dbapi.Error, dialect=dialect, ismulti=many
        )
        raise cast(BaseException, error) from exc
    finally:
        cursor.close()


def driver_rows_together(
    conn: Connection, statements: Sequence[tuple[str, Sequence[Any]]]
) -> list[list[tuple[Any, ...]]]:
    """The rows of each ``(sql, params)``, in order (``[]`` for a statement without rows): on
    PostgreSQL sent together and waited for once."""
    if conn.dialect.name == "sqlite":
        return [driver_rows(conn, sql, params) for sql, params in statements]
    dbapi = _dbapi(conn)
    cursors = []
    try:
        with _mapped(conn, statements), dbapi.pipeline():  # leaving it waits for every result
            for sql, params in statements:
                cursor = dbapi.cursor()
                cursors.append(cursor)
                cursor.execute(sql.replace("?", "%s"), params)
        return [
            list(cursor.fetchall()) if cursor.description is not None else [] for cursor in cursors
        ]
    finally:
        for cursor in cursors:
            cursor.close()


def driver_many_together(
    conn: Connection, statements: Sequence[tuple[str, Sequence[Any]]], *, commit: bool = False
) -> None:
    """Each ``(sql, rows)``, in order, none returning rows: on PostgreSQL sent together (an
    insert's rows as one statement, ``_send_many``) and waited for once, with ``commit`` the
    transaction's ``COMMIT`` in the same round trip (for a transaction begun by a statement,
    ``LedgerStore.write``); on SQLite one ``executemany`` each."""
    if conn.dialect.name == "sqlite":
        assert not commit, "on SQLite the transaction commits where it was begun"
        for sql, rows in statements:
            driver_many(conn, sql, rows)
        return
    dbapi = _dbapi(conn)
    cursor = dbapi.cursor()
    try:
        with _mapped(conn, statements), dbapi.pipeline():
            for sql, rows in statements:
                for at in range(0, len(rows), ROWS_A_STATEMENT):
                    _send_many(cursor, sql, rows[at : at + ROWS_A_STATEMENT])
            if commit:
                cursor.execute("COMMIT")
    finally:
        cursor.close()


# Rows of one INSERT sent as one statement on PostgreSQL (well under its 65,535 parameters).
ROWS_A_STATEMENT = 500
_VALUES = re.compile(r"\bVALUES\s*(\([?,\s]*\))", re.IGNORECASE)


def _send_many(cursor: Any, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    """``sql`` for each of ``rows`` in a pipeline: an ``INSERT ... VALUES (?, ...)`` as one
    statement of all the rows (psycopg's ``executemany`` sends a statement a row, and each is a
    wait for the socket, a trip for the interpreter lock), any other statement a row each. The
    rows of an upsert (``ON CONFLICT ... DO UPDATE``) must have distinct keys: PostgreSQL
    refuses to update one row twice in a statement."""
    found = _VALUES.search(sql)
    if found is None or not sql.lstrip().upper().startswith("INSERT") or len(rows) == 1:
        cursor.executemany(sql.replace("?", "%s"), rows)
        return
    group = found.group(1)
    many = sql[: found.start(1)] + ", ".join([group] * len(rows)) + sql[found.end(1) :]
    cursor.execute(many.replace("?", "%s"), [value for row in rows for value in row])


@contextmanager
def _mapped(conn: Connection, statements: Sequence[tuple[str, Sequence[Any]]]) -> Iterator[None]:
    """A driver error raised as SQLAlchemy raises it. A pipeline reports an error when it
    waits, not at the statement that failed, so it names the statements together."""
    dialect = conn.dialect
    try:
        yield
    except dialect.loaded_dbapi.Error as exc:
        sql = "; ".join(sql for sql, _ in statements)
        params = [params for _, params in statements]
        error = DBAPIError.instance(
            sql, params, exc, dialect.loaded_dbapi.Error, dialect=dialect, ismulti=True
        )
        raise cast(BaseException, error) from exc
