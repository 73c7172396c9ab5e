"""The server's own PostgreSQL role, set up as docs/operations.md says: an owner migrates and
gives the app role its privileges (``timebank migrate --grant-to``); the app role seeds, serves
and is operated on without a permission error, and cannot change the log or the tables' shape.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import ProgrammingError

from migrations.privileges import APP_PRIVILEGES
from tests import docs_runner
from tests.conftest import PG_URL, _admin, require_pg
from tests.docs_runner import VENV

ALL = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")


@dataclass(frozen=True)
class Roles:
    database: str
    owner: str
    app: str

    def url(self, role: str, database: str | None = None) -> str:
        address = make_url(PG_URL).set(
            username=role, password=f"pw-{role}", database=database or self.database
        )
        return address.render_as_string(hide_password=False)

    def timebank(self, role: str, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "TIMEBANK_DATABASE_URL": self.url(role)}
        return subprocess.run(
            [str(VENV / "bin" / "timebank"), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    def sql(self, role: str, statement: str) -> list[tuple[object, ...]]:
        engine = create_engine(self.url(role))
        try:
            with engine.begin() as conn:
                result = conn.execute(text(statement))
                return [tuple(r) for r in result] if result.returns_rows else []
        finally:
            engine.dispose()


@pytest.fixture
def roles() -> Iterator[Roles]:
    """A database owned by a fresh owner role, locked down for a fresh app role (step 1 of
    docs/operations.md's "PostgreSQL step by step")."""
    require_pg()
    suffix = uuid.uuid4().hex[:10]
    made = Roles(f"tb_roles_{suffix}", f"tb_owner_{suffix}", f"tb_app_{suffix}")
    try:
        _admin(f"CREATE ROLE {made.owner} LOGIN PASSWORD 'pw-{made.owner}'")
        _admin(f"CREATE ROLE {made.app} LOGIN PASSWORD 'pw-{made.app}'")
        _admin(f"CREATE DATABASE {made.database} OWNER {made.owner} TEMPLATE template0")
        superuser = create_engine(
            make_url(PG_URL).set(database=made.database), isolation_level="AUTOCOMMIT"
        )
        try:
            with superuser.connect() as conn:
                for statement in (
                    f"ALTER SCHEMA public OWNER TO {made.owner}",
                    "REVOKE ALL ON SCHEMA public FROM PUBLIC",
                    f"REVOKE ALL ON DATABASE {made.database} FROM PUBLIC",
                    f"GRANT CONNECT ON DATABASE {made.database} TO {made.app}",
                ):
                    conn.execute(text(statement))
        finally:
            superuser.dispose()
        yield made
    finally:
        _admin(f"DROP DATABASE IF EXISTS {made.database} WITH (FORCE)")
        _admin(f"DROP ROLE IF EXISTS {made.app}")
        _admin(f"DROP ROLE IF EXISTS {made.owner}")


def privileges_of(roles: Roles, role: str) -> dict[str, tuple[str, ...]]:
    rows = roles.sql(
        roles.owner,
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename",
    )
    held: dict[str, tuple[str, ...]] = {}
    for (table,) in rows:
        checks = ", ".join(f"has_table_privilege('{role}', '{table}', '{p}')" for p in ALL)
        [answers] = roles.sql(roles.owner, f"SELECT {checks}")
        held[str(table)] = tuple(p for p, yes in zip(ALL, answers, strict=True) if yes)
    return held


def test_the_owner_grants_the_app_role_exactly_its_privileges(roles: Roles) -> None:
    before = roles.timebank(roles.owner, "migrate")
    assert before.returncode == 0, before.stderr
    assert set(privileges_of(roles, roles.app).values()) == {()}  # nothing yet

    done = roles.timebank(roles.owner, "migrate", "--grant-to", roles.app)
    assert done.returncode == 0, done.stderr
    assert f"granted {roles.app} the app's privileges on {len(APP_PRIVILEGES)} tables" in (
        done.stdout
    )
    assert privileges_of(roles, roles.app) == APP_PRIVILEGES
    assert set(privileges_of(roles, roles.owner).values()) == {ALL}  # the owner keeps its own

    # Granted more by hand, the next migrate takes it back.
    roles.sql(roles.owner, f"GRANT UPDATE, DELETE ON log_entries TO {roles.app}")
    again = roles.timebank(roles.owner, "migrate", "--grant-to", roles.app)
    assert again.returncode == 0, again.stderr
    assert privileges_of(roles, roles.app)["log_entries"] == ("SELECT", "INSERT")


def test_a_table_without_decided_privileges_is_refused_and_nothing_is_granted(
    roles: Roles,
) -> None:
    assert roles.timebank(roles.owner, "migrate").returncode == 0
    roles.sql(roles.owner, "CREATE TABLE scratch_notes (id integer PRIMARY KEY)")
    refused = roles.timebank(roles.owner, "migrate", "--grant-to", roles.app)
    assert refused.returncode == 1
    assert "no privileges decided for table(s) scratch_notes" in refused.stderr
    assert set(privileges_of(roles, roles.app).values()) == {()}

    odd_name = roles.timebank(roles.owner, "migrate", "--grant-to", 'app"; DROP TABLE banks; --')
    assert odd_name.returncode == 1
    assert "is not a plain lower-case PostgreSQL name" in odd_name.stderr

    as_owner = roles.timebank(roles.owner, "migrate", "--grant-to", roles.owner)
    assert as_owner.returncode == 1
    assert "owns tables here" in as_owner.stderr
    superuser = str(make_url(PG_URL).username)
    as_superuser = roles.timebank(roles.owner, "migrate", "--grant-to", superuser)
    assert as_superuser.returncode == 1
    assert "is a superuser" in as_superuser.stderr
    _admin(f"GRANT {roles.owner} TO {roles.app}")
    in_owner = roles.timebank(roles.owner, "migrate", "--grant-to", roles.app)
    assert in_owner.returncode == 1
    assert f"is a member of the owner {roles.owner}" in in_owner.stderr
    _admin(f"REVOKE {roles.owner} FROM {roles.app}")
    roles.sql(roles.owner, "DROP TABLE scratch_notes")
    assert roles.timebank(roles.owner, "migrate", "--grant-to", roles.app).returncode == 0


# The walk-throughs that write: the workflow, the partners' links and exchanges, accounts,
# statistics (published reports). What none of them writes (the federation's tables, webhooks,
# cosignatures) is listed in docs/operations.md; `make test-pg-app-role` covers more.
WALK_THROUGHS = ("docs/workflow.md", "docs/partners.md", "docs/accounts.md", "docs/statistics.md")


@pytest.mark.parametrize("path", WALK_THROUGHS)
def test_the_app_role_runs_the_walk_through_and_cannot_change_the_log(
    roles: Roles, path: str
) -> None:
    """Every step of the walk-through, served and operated as the app role, prints what the
    doc shows: no step needs a privilege the app role lacks."""
    done = roles.timebank(roles.owner, "migrate", "--grant-to", roles.app)
    assert done.returncode == 0, done.stderr

    blocks = docs_runner.extract((docs_runner.ROOT / path).read_text(), path)
    with docs_runner.fresh_demo(roles.url(roles.app), migrated=True) as demo:
        result, _ = docs_runner.run_blocks(blocks, path, demo)
        reports = "\n\n".join(m.report() for m in result.mismatches)
        assert result.blocks > 0 and not result.mismatches, reports
        verified = subprocess.run(
            [str(VENV / "bin" / "timebank"), "verify"],
            cwd=demo.home,
            env=demo.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert verified.returncode == 0 and verified.stdout.startswith("OK: "), verified.stderr

    for statement in (
        "UPDATE log_entries SET kind = kind WHERE seq = 0",
        "DELETE FROM audit_events WHERE seq = 0",
        "ALTER TABLE members ADD COLUMN x integer",
        "DROP TRIGGER log_entries_append_only ON log_entries",
    ):
        with pytest.raises(ProgrammingError, match=r"permission denied|must be owner"):
            roles.sql(roles.app, statement)
    assert roles.sql(roles.app, "SELECT count(*) FROM log_entries")[0][0] > 0


def test_sqlite_has_no_roles_to_grant(tmp_path: Path) -> None:
    """On SQLite the option is a usage error and nothing is created; without it, the same
    command migrates."""
    env = {**os.environ, "TIMEBANK_DATA_DIR": str(tmp_path / "var")}
    env.pop("TIMEBANK_DATABASE_URL", None)
    timebank = str(VENV / "bin" / "timebank")
    refused = subprocess.run(
        [timebank, "migrate", "--grant-to", "timebank_app"], env=env, capture_output=True, text=True
    )
    assert refused.returncode == 2
    assert "--grant-to is for PostgreSQL" in refused.stderr
    assert not (tmp_path / "var").exists()
    done = subprocess.run([timebank, "migrate"], env=env, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("database at revision"), done.stderr
