"""The accounts world (tests/accounts_world.py) furnished as the authorization matrix does
(vol-b holds 40 minutes), with two partner keys of bank b1: ``district`` (read_points,
read_statement) and ``school`` (read_points)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ledger.config import Settings
from ledger.log import Log
from tests.accounts_world import World, build_world
from tests.conftest import make_database, require_pg
from tests.test_authz_matrix import _furnish


def partners_world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    if request.param == "postgresql":
        require_pg()
    tmp = tmp_path_factory.mktemp(f"partners-{request.param}")
    for url in make_database(request.param, request, tmp):
        settings = Settings.from_env(
            {
                "TIMEBANK_DATA_DIR": str(tmp / "data"),
                "TIMEBANK_DATABASE_URL": url,
                "TIMEBANK_LOG_ORIGIN": "timebank.test/log",
            }
        )
        log = Log.open(settings)
        try:
            for w in build_world(settings, log):
                _furnish(w)
                admin = w.accounts.principal_for_user(w.ids["b1-admin"])
                for name, who, scopes in (
                    ("district platform", "district", ["read_points", "read_statement"]),
                    ("school", "school", ["read_points"]),
                ):
                    key, secret = w.accounts.create_partner_key(admin, name, scopes)
                    w.tokens[who] = secret
                    w.ids[who] = key.id
                yield w
        finally:
            log.close()
