"""Statements sent to the driver directly (``database.driver``): the same rows and the same
SQLAlchemy errors as through SQLAlchemy, on both databases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, exc, select

from database import Database
from database.driver import (
    ROWS_A_STATEMENT,
    driver_many_together,
    driver_rows,
    driver_rows_together,
    pipelined,
)
from tests.conftest import BACKENDS, open_database

scratch = MetaData()
things = Table(
    "driver_things",
    scratch,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("name", String(40), nullable=False),
)


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    yield from open_database(request.param, request, tmp_path, scratch)


INSERT = "INSERT INTO driver_things (id, name) VALUES (?, ?) ON CONFLICT DO NOTHING RETURNING id"


def test_rows_come_back_and_a_statement_without_rows_gives_none(database: Database) -> None:
    with database.writer.begin() as conn:
        assert driver_rows(conn, INSERT, (1, "one")) == [(1,)]
        assert driver_rows(conn, INSERT, (1, "again")) == []  # the conflict: nothing inserted
        assert driver_rows(conn, "UPDATE driver_things SET name = ? WHERE id = ?", ("uno", 1)) == []
    with database.reader.begin() as conn:
        assert conn.execute(select(things.c.name)).scalars().all() == ["uno"]


def test_a_driver_error_is_sqlalchemys(
    database: Database,
) -> None:
    plain = "INSERT INTO driver_things (id, name) VALUES (?, ?)"
    with database.writer.begin() as conn:
        driver_rows(conn, plain, (2, "two"))
    with database.writer.begin() as conn:
        driver_rows(conn, plain, (3, "three"))
        with pytest.raises(exc.IntegrityError):
            driver_rows(conn, plain, (2, "two again"))  # the primary key, taken
        conn.rollback()
    with database.reader.begin() as conn:
        assert conn.execute(select(things.c.id)).scalars().all() == [2]


def test_statements_sent_together_give_each_its_rows_in_order(database: Database) -> None:
    with database.writer.begin() as conn:
        driver_many_together(
            conn,
            [
                ("INSERT INTO driver_things (id, name) VALUES (?, ?)", [(4, "four"), (5, "five")]),
                ("UPDATE driver_things SET name = ? WHERE id = ?", [("FIVE", 5)]),
            ],
        )
        found = driver_rows_together(
            conn,
            [
                ("SELECT name FROM driver_things WHERE id = ?", (5,)),
                ("SELECT id FROM driver_things WHERE id > ? ORDER BY id", (3,)),
                ("SELECT id FROM driver_things WHERE id > ?", (99,)),
            ],
        )
    assert found == [[("FIVE",)], [(4,), (5,)], []]
    with database.reader.begin() as conn:
        assert conn.execute(select(things.c.id)).scalars().all() == [4, 5]


def test_many_rows_of_an_insert_sent_together_are_all_written(database: Database) -> None:
    """On PostgreSQL an insert's rows go out as statements of up to ``ROWS_A_STATEMENT`` rows
    each (one for the upsert's too): every row is written once, whatever the count."""
    count = 2 * ROWS_A_STATEMENT + 7
    upsert = (
        "INSERT INTO driver_things (id, name) VALUES (?, ?)"
        " ON CONFLICT (id) DO UPDATE SET name = excluded.name"
    )
    with database.writer.begin() as conn:
        driver_many_together(
            conn,
            [
                (
                    "INSERT INTO driver_things (id, name) VALUES (?, ?)",
                    [(n, f"n{n}") for n in range(count)],
                ),
                (upsert, [(0, "zero"), (2**40 % 1000 + count, "big"), (1, "one")]),
            ],
        )
    with database.reader.begin() as conn:
        stored = {row.id: row.name for row in conn.execute(select(things.c.id, things.c.name))}
    assert len(stored) == count + 1
    assert (stored[0], stored[1], stored[2], stored[count - 1]) == (
        "zero",
        "one",
        "n2",
        f"n{count - 1}",
    )
    assert stored[2**40 % 1000 + count] == "big"


def test_an_error_among_statements_sent_together_is_sqlalchemys_and_writes_nothing(
    database: Database,
) -> None:
    plain = "INSERT INTO driver_things (id, name) VALUES (?, ?)"
    with database.writer.begin() as conn:
        driver_many_together(conn, [(plain, [(6, "six")])])
    with pytest.raises(exc.IntegrityError), database.writer.begin() as conn:
        driver_many_together(conn, [(plain, [(7, "seven")]), (plain, [(8, "x"), (6, "again")])])
    missing_table = (exc.OperationalError, exc.ProgrammingError)  # SQLite's, PostgreSQL's
    with pytest.raises(missing_table), database.writer.begin() as conn:
        driver_rows_together(conn, [("SELECT 1", ()), ("SELECT id FROM nowhere", ())])
    with database.writer.begin() as conn:  # the connection serves the next transaction
        assert driver_rows_together(conn, [("SELECT id FROM driver_things", ())]) == [[(6,)]]


def test_a_sqlalchemy_statement_inside_a_pipeline_is_refused_not_answered_empty(
    database: Database,
) -> None:
    """On PostgreSQL SQLAlchemy would read a result that has not arrived as an empty one, so it
    is refused; on SQLite there is no pipeline and the same statement answers."""
    with database.writer.begin() as conn:
        driver_many_together(
            conn, [("INSERT INTO driver_things (id, name) VALUES (?, ?)", [(9, "nine")])]
        )
    with database.writer.begin() as conn, pipelined(conn):
        if database.is_sqlite:
            assert conn.execute(select(things.c.id)).scalars().all() == [9]
        else:
            with pytest.raises(RuntimeError, match="inside a pipeline"):
                conn.execute(select(things.c.id))
            assert driver_rows(conn, "SELECT id FROM driver_things", ()) == [(9,)]
