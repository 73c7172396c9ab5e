"""A statement sent to the database driver directly, inside a SQLAlchemy transaction.

For the few statements every durable write runs, SQLAlchemy's execution layers (execution
context, result metadata, parameter processing) cost more CPU than the driver's own work: on
PostgreSQL ~90 µs a statement against ~110 µs through psycopg alone, on SQLite ~50 against
~20 µs (docs/performance.md). Such statements are written once as SQL with ``?`` marks and
their values passed as the driver takes them. A driver error is raised as SQLAlchemy raises it
(``sqlalchemy.exc.IntegrityError`` and the like), so callers handle one kind of error whichever
way the statement ran.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError


def driver_rows(conn: Connection, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` (``?`` placeholders; ``[]`` for a statement without rows) run on
    ``conn``'s transaction."""
    return _run(conn, sql, params, many=False)


def driver_many(conn: Connection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    """One driver ``executemany`` of ``sql`` (``?`` placeholders) on ``conn``'s transaction."""
    _run(conn, sql, rows, many=True)


def _run(conn: Connection, sql: str, params: Any, *, many: bool) -> list[tuple[Any, ...]]:
    dialect = conn.dialect
    if dialect.name != "sqlite":
        sql = sql.replace("?", "%s")
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
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
