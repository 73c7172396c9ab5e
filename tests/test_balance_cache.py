"""Balances are remembered for a moment (``ledger.log.Log.balances``, ``max_age``), and the
balance route answers from memory when it remembers the caller, their access and the minutes:
never past an append of this process, another process's append is seen within the route's
``BALANCE_MAX_AGE``, and a refusal is never served from memory."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest
from sqlalchemy import update

from accounts.storage import members
from api.ledger_routes import BALANCE_MAX_AGE
from ledger.config import Settings
from ledger.entry import EntryRequest, Posting
from ledger.log import Log
from ledger.postings import system_account
from tests.accounts_world import World, build_world


@pytest.fixture
def world(settings: Settings, log: Log) -> Iterator[World]:
    yield from build_world(settings, log)


def _deposit(entry_id: str, account: str, minutes: int) -> EntryRequest:
    return EntryRequest(
        "deposit",
        entry_id,
        (Posting(system_account("b1", "issuance"), -minutes), Posting(account, minutes)),
        {"record": entry_id, "minutes": minutes, "weight": 1000},
    )


def _available(world: World, who: str, member: str) -> int:
    response = world.client.get(f"/v1/members/{world.ids[member]}/balance", headers=world.as_(who))
    assert response.status_code == 200, response.text
    minutes: int = response.json()["available_minutes"]
    return minutes


@pytest.fixture
def reads(world: World, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One item per read transaction the log opens."""
    opened: list[int] = []
    read = world.log.store.read

    def counting() -> AbstractContextManager[Any]:
        opened.append(1)
        return read()

    monkeypatch.setattr(world.log.store, "read", counting)
    return opened


def test_the_route_answers_from_memory_and_sees_this_processs_append_at_once(
    world: World, reads: list[int]
) -> None:
    assert _available(world, "vol-a", "vol-a") == 0
    assert reads  # the first read went to the database
    reads.clear()
    assert _available(world, "vol-a", "vol-a") == 0
    assert reads == []  # the second came from memory
    world.log.append(_deposit("d1", world.ids["vol-a-account"], 30))
    assert _available(world, "vol-a", "vol-a") == 30  # no clock moved: at once
    assert reads  # the append made the remembered minutes stale
    # Through the sequencer directly too.
    world.log.sequencer.submit(_deposit("d2", world.ids["vol-a-account"], 15)).result()
    assert _available(world, "vol-a", "vol-a") == 45


def test_another_processs_append_shows_within_the_bound(world: World, settings: Settings) -> None:
    account = world.ids["vol-a-account"]
    log = world.log
    before = log.balances([account], max_age=3600)
    other = Log.open(settings)  # what a second worker process does: its own sequencer
    try:
        other.append(_deposit("elsewhere", account, 20))
    finally:
        other.close()
    # Within max_age the remembered minutes still answer (documented) ...
    assert log.balances([account], max_age=3600) == before
    # ... never past it ...
    time.sleep(0.05)
    assert log.cached_balances([account], 0.01) is None
    assert log.balances([account], max_age=0.01) == {account: before[account] + 20}
    # ... and a read without max_age is always fresh.
    assert log.balances([account]) == {account: before[account] + 20}


def test_the_routes_bound_is_the_documented_one(
    world: World, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert BALANCE_MAX_AGE <= 1.0  # docs/performance.md and docs/operations.md say 1 s
    monkeypatch.setattr("api.ledger_routes.BALANCE_MAX_AGE", 0.05)
    assert _available(world, "vol-a", "vol-a") == 0
    other = Log.open(settings)
    try:
        other.append(_deposit("elsewhere", world.ids["vol-a-account"], 20))
    finally:
        other.close()
    time.sleep(0.1)
    assert _available(world, "vol-a", "vol-a") == 20


def test_a_refusal_is_never_served_from_memory(world: World, reads: list[int]) -> None:
    url = f"/v1/members/{world.ids['elder-a']}/balance"
    for _ in range(2):  # the elder's minutes and staff A's access are remembered now
        assert world.client.get(url, headers=world.as_("staff-a")).status_code == 200
    for who in ("staff-b", "vol-b", "partner", "b2-admin"):
        for _ in range(2):
            response = world.client.get(url, headers=world.as_(who))
            assert response.status_code in (403, 404), (who, response.text)
    # A change of this process to the accounts tables takes effect at once: the elder moves
    # to org B, so staff A no longer knows them and staff B does.
    with world.accounts.store.transaction() as tx:
        tx.conn.execute(
            update(members)
            .where(members.c.id == world.ids["elder-a"])
            .values(org_id=world.ids["org_b"])
        )
    assert world.client.get(url, headers=world.as_("staff-a")).status_code == 404
    assert world.client.get(url, headers=world.as_("staff-b")).status_code == 200


def test_a_revoked_token_is_refused_at_once(world: World) -> None:
    headers = world.as_("vol-a")
    url = f"/v1/members/{world.ids['vol-a']}/balance"
    for _ in range(2):
        assert world.client.get(url, headers=headers).status_code == 200
    assert world.client.post("/v1/auth/logout", headers=headers).status_code == 204
    assert world.client.get(url, headers=headers).status_code == 401
