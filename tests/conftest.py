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
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, MetaData, create_engine, text
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


# ``TIMEBANK_TEST_PG_AS=app`` (``make test-pg-app-role``): the tests' PostgreSQL databases are
# owned by an owner role that migrated them and are used as the app role it granted
# (``timebank migrate --grant-to``), as docs/operations.md deploys them.
PG_AS_APP = os.environ.get("TIMEBANK_TEST_PG_AS") == "app"
_APP_ROLES = f"{uuid.uuid4().hex[:10]}"
PG_OWNER, PG_APP = f"tb_owner_{_APP_ROLES}", f"tb_app_{_APP_ROLES}"


def owner_url(url: str) -> str:
    """``url``'s database as its owner: for what the app role may not do (migrations, an
    insider's edits behind the application's back); ``url`` itself unless tests run as the app
    role."""
    if not (PG_AS_APP and url.startswith("postgresql")):
        return url
    return _pg_url_as(PG_OWNER, str(make_url(url).database))


def migrate_as_owner(url: str) -> None:
    """Upgrade ``url``'s database as its owner does (granting the app role when tests run as
    it), under the migration lock as every upgrade."""
    upgrade(owner_url(url), grant_to=PG_APP if owner_url(url) != url else None)


def _pg_url_as(role: str, database: str) -> str:
    address = make_url(PG_URL).set(username=role, password=f"pw-{role}", database=database)
    return address.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    require_pg()
    name = f"tb_tpl_{uuid.uuid4().hex[:12]}"
    if not PG_AS_APP:
        _admin(f"CREATE DATABASE {name}")
        upgrade(_pg_url_for(name))
        yield name
        _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        return
    try:
        for role in (PG_OWNER, PG_APP):
            _admin(f"CREATE ROLE {role} LOGIN PASSWORD 'pw-{role}'")
        _admin(f"CREATE DATABASE {name} OWNER {PG_OWNER}")
        upgrade(_pg_url_as(PG_OWNER, name), grant_to=PG_APP)
        yield name
    finally:
        _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        for role in (PG_APP, PG_OWNER):
            _admin(f"DROP ROLE IF EXISTS {role}")


def make_database(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "timebank.db"
        shutil.copyfile(template, path)
        yield f"sqlite:///{path}"
        return
    template_name: str = request.getfixturevalue("pg_template")
    name = f"tb_{uuid.uuid4().hex[:16]}"
    owner = f" OWNER {PG_OWNER}" if PG_AS_APP else ""
    _admin(f"CREATE DATABASE {name}{owner} TEMPLATE {template_name} STRATEGY FILE_COPY")
    if PG_AS_APP:
        _admin(f"GRANT CONNECT ON DATABASE {name} TO {PG_APP}")
    try:
        yield _pg_url_as(PG_APP, name) if PG_AS_APP else _pg_url_for(name)
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
            _create_scratch(scratch, db, url)
        try:
            yield db
        finally:
            if scratch is not None:
                _drop_scratch(scratch, db, url)
            db.dispose()


@contextmanager
def _as_owner(db: Database, url: str) -> Iterator[Engine]:
    """An engine for what only the tables' owner may do: ``db``'s own writer, unless tests run
    as the app role."""
    if owner_url(url) == url:
        yield db.writer
        return
    engine = create_engine(owner_url(url))
    try:
        yield engine
    finally:
        engine.dispose()


def _drop_scratch(scratch: MetaData, db: Database, url: str) -> None:
    with _as_owner(db, url) as engine:
        scratch.drop_all(engine)


def _create_scratch(scratch: MetaData, db: Database, url: str) -> None:
    """A test's own tables; as the app role, made by the owner and granted to the app."""
    with _as_owner(db, url) as engine:
        scratch.create_all(engine)
        if engine is not db.writer:
            with engine.begin() as conn:
                for table in scratch.sorted_tables:
                    conn.execute(text(f'GRANT ALL ON TABLE "{table.name}" TO {PG_APP}'))


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
