"""Apply migrations safely: one migrator at a time, bounded waits, models checked against them.

PostgreSQL: a session advisory lock serializes concurrent migrators (several app servers
starting at once); ``lock_timeout`` and ``statement_timeout`` keep a migration from waiting
forever behind live traffic. SQLite: the migration runs in one ``BEGIN IMMEDIATE``
transaction, which is the lock.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, text

from database import make_engines
from migrations.privileges import grant_to_app_role

MIGRATION_LOCK = 0x7462_6D69_6772_6174  # "tbmigrat"
HERE = Path(__file__).resolve().parent


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["connection"] = connection
    return cfg


def _migrating_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        return make_engines(url)[0]  # BEGIN IMMEDIATE writer
    return create_engine(url)


def upgrade(url: str, revision: str = "head", grant_to: str | None = None) -> None:
    """Migrate to ``revision``; with ``grant_to``, then give that role the app's privileges
    (``migrations.privileges``) in the same transaction."""
    engine = _migrating_engine(url)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                # Wait for another migrator for up to two minutes, then let our own DDL wait
                # at most ten seconds for locks held by live traffic.
                conn.execute(text("SET lock_timeout = '120s'"))
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK})
                conn.execute(text("SET lock_timeout = '10s'"))
                conn.execute(text("SET statement_timeout = '300s'"))
                conn.commit()
            try:
                with conn.begin():
                    command.upgrade(alembic_config(conn), revision)
                    if grant_to is not None:
                        grant_to_app_role(conn, grant_to)
            finally:
                if conn.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK})
                    conn.commit()
    finally:
        engine.dispose()


def current_revision(url: str) -> str | None:
    engine = make_engines(url)[1]
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def check(url: str) -> None:
    """Raise if the models and the migrated database disagree (``alembic check``)."""
    engine = _migrating_engine(url)
    try:
        with engine.connect() as conn, conn.begin():
            command.check(alembic_config(conn))
    finally:
        engine.dispose()
