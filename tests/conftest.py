"""Real databases for tests: a migrated SQLite file and a migrated PostgreSQL database per test.

PostgreSQL comes from ``TIMEBANK_TEST_PG_URL`` (default: the local server, database ``test``).
Each test gets its own database cloned from a template migrated once per worker. When the
server is unreachable the PostgreSQL half of the suite **fails** under ``CI=true`` and skips
with a clear message elsewhere.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import MetaData, create_engine, text
from sqlalchemy.engine import make_url

from database import Database
from ledger.config import Settings
from ledger.log import Log
from migrations.runner import upgrade

PG_URL = os.environ.get("TIMEBANK_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BACKENDS = ["sqlite", "postgresql"]


def _pg_admin_url() -> str:
    return PG_URL


def pg_available() -> str | None:
    """None if PostgreSQL answers, else why not."""
    try:
        engine = create_engine(_pg_admin_url(), connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return None


def require_pg() -> None:
    reason = pg_available()
    if reason is None:
        return
    message = f"PostgreSQL at {make_url(PG_URL).render_as_string()} is unreachable ({reason})"
    if os.environ.get("CI"):
        pytest.fail(message + "; CI requires it", pytrace=False)
    pytest.skip(message + "; start it or set TIMEBANK_TEST_PG_URL to run these tests")


def _admin(sql: str) -> None:
    engine = create_engine(_pg_admin_url(), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(sql))
    finally:
        engine.dispose()


def _pg_url_for(database: str) -> str:
    return make_url(PG_URL).set(database=database).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    require_pg()
    name = f"tb_tpl_{uuid.uuid4().hex[:12]}"
    _admin(f"CREATE DATABASE {name}")
    upgrade(_pg_url_for(name))
    yield name
    _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def make_database(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "timebank.db"
        shutil.copyfile(template, path)
        yield f"sqlite:///{path}"
        return
    template_name: str = request.getfixturevalue("pg_template")
    name = f"tb_{uuid.uuid4().hex[:16]}"
    _admin(f"CREATE DATABASE {name} TEMPLATE {template_name} STRATEGY FILE_COPY")
    try:
        yield _pg_url_for(name)
    finally:
        _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def open_database(
    backend: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    scratch: MetaData | None = None,
) -> Iterator[Database]:
    """A fresh migrated database opened as the service opens it, with ``scratch``'s tables
    for the test when given; disposed of afterwards."""
    if backend == "postgresql":
        require_pg()
    for url in make_database(backend, request, tmp_path):
        db = Database(url)
        if scratch is not None:
            scratch.create_all(db.writer)
        try:
            yield db
        finally:
            if scratch is not None:
                scratch.drop_all(db.writer)
            db.dispose()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        require_pg()
    return str(request.param)


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from make_database(backend, request, tmp_path)


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings.from_env(
        {
            "TIMEBANK_DATA_DIR": str(tmp_path / "data"),
            "TIMEBANK_DATABASE_URL": db_url,
            "TIMEBANK_LOG_ORIGIN": "timebank.test/log",
        }
    )


@pytest.fixture
def log(settings: Settings) -> Iterator[Log]:
    opened = Log.open(settings)
    yield opened
    opened.close()
