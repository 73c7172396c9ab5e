"""The elder's browser flows on PostgreSQL too (the other page tests serve the demo from
SQLite): the life of an hour through her page, and a second tap after a lost answer asking and
confirming once, whose one-time keys take the idempotency store's PostgreSQL path."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser

from tests.conftest import _admin, _pg_url_for, require_pg
from tests.test_web_elder import (
    test_a_second_tap_asks_and_confirms_once as second_tap,
)
from tests.test_web_elder import (
    test_the_life_of_an_hour_through_the_elders_page as life_of_an_hour,
)
from tests.web_browser import DemoServer, launch_chromium, start_demo_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    require_pg()
    name = f"tb_web_{uuid.uuid4().hex[:12]}"
    _admin(f"CREATE DATABASE {name}")
    try:
        yield from start_demo_server(
            tmp_path_factory.mktemp("web-postgres"), database_url=_pg_url_for(name)
        )
    finally:
        _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch_chromium()


def test_the_life_of_an_hour_on_postgresql(server: DemoServer, browser: Browser) -> None:
    assert "postgresql" in server.env["TIMEBANK_DATABASE_URL"]
    life_of_an_hour(server, browser)


def test_a_second_tap_acts_once_on_postgresql(server: DemoServer, browser: Browser) -> None:
    second_tap(server, browser)
