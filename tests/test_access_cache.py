"""How a caller relates to a member is remembered for a moment (``accounts.access_cache``),
exactly like who a token is: never past a write of this process, another process's change is
seen within the cache's seconds, and a refusal is never remembered."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import update

from accounts.access_cache import ACCESS_CACHE_SECONDS
from accounts.errors import NotFound
from accounts.service import AccountsService
from accounts.storage import AccountsStore, members
from ledger.config import Settings
from ledger.log import Log
from tests.accounts_world import World, build_world
from tests.test_credentials import Clock


@pytest.fixture
def world(settings: Settings, log: Log) -> Iterator[World]:
    yield from build_world(settings, log)


@pytest.fixture
def clocked(world: World) -> tuple[AccountsService, Clock]:
    clock = Clock()
    service = AccountsService(world.accounts.store, world.accounts.protector, world.log, clock)
    return service, clock


def _move_from_another_process(settings: Settings, member_id: str, org_id: str) -> None:
    """What the operator CLI or a second worker does: its own connection, not our store."""
    other = AccountsStore(settings.database_url)
    try:
        with other.writer.begin() as conn:
            conn.execute(update(members).where(members.c.id == member_id).values(org_id=org_id))
    finally:
        other.dispose()


def test_another_processs_change_is_seen_within_the_cache_seconds(
    world: World, settings: Settings, clocked: tuple[AccountsService, Clock]
) -> None:
    service, clock = clocked
    staff_a = service.principal_for_user(world.ids["staff-a"])
    member, access = service.member_access(staff_a, world.ids["elder-a"])
    assert (member.org_id, access) == (world.ids["org_a"], "staff")
    _move_from_another_process(settings, world.ids["elder-a"], world.ids["org_b"])
    # Within the window the remembered answer still stands (documented) ...
    clock.advance(seconds=ACCESS_CACHE_SECONDS / 2)
    assert service.member_access(staff_a, world.ids["elder-a"])[1] == "staff"
    # ... and not a moment after it: org A's staff no longer knows the elder, org B's does.
    clock.advance(seconds=ACCESS_CACHE_SECONDS / 2)
    with pytest.raises(NotFound):
        service.member_access(staff_a, world.ids["elder-a"])
    staff_b = service.principal_for_user(world.ids["staff-b"])
    assert service.member_access(staff_b, world.ids["elder-a"])[1] == "staff"


def test_a_write_of_this_process_forgets_every_answer(
    world: World, clocked: tuple[AccountsService, Clock]
) -> None:
    service, _ = clocked
    staff_a = service.principal_for_user(world.ids["staff-a"])
    assert service.member_access(staff_a, world.ids["elder-a"])[1] == "staff"
    with service.store.transaction() as tx:
        tx.conn.execute(
            update(members)
            .where(members.c.id == world.ids["elder-a"])
            .values(org_id=world.ids["org_b"])
        )
    with pytest.raises(NotFound):  # at once, no clock moved
        service.member_access(staff_a, world.ids["elder-a"])


def test_a_refusal_is_never_remembered(
    world: World, settings: Settings, clocked: tuple[AccountsService, Clock]
) -> None:
    service, _ = clocked
    staff_b = service.principal_for_user(world.ids["staff-b"])
    with pytest.raises(NotFound):
        service.member_access(staff_b, world.ids["elder-a"])
    _move_from_another_process(settings, world.ids["elder-a"], world.ids["org_b"])
    # no clock moved: had the refusal been remembered, this would still be NotFound
    assert service.member_access(staff_b, world.ids["elder-a"])[1] == "staff"


def test_remembered_access_answers_only_what_member_access_would_from_memory(
    world: World, clocked: tuple[AccountsService, Clock]
) -> None:
    """``remembered_access`` (the event loop's look, no I/O): nothing before a lookup, nothing
    for a refusal, nothing past a write of this process or the window."""
    service, clock = clocked
    staff_a = service.principal_for_user(world.ids["staff-a"])
    staff_b = service.principal_for_user(world.ids["staff-b"])
    assert service.remembered_access(staff_a, world.ids["elder-a"]) is None
    found = service.member_access(staff_a, world.ids["elder-a"])
    assert service.remembered_access(staff_a, world.ids["elder-a"]) == found
    with pytest.raises(NotFound):
        service.member_access(staff_b, world.ids["elder-a"])
    assert service.remembered_access(staff_b, world.ids["elder-a"]) is None  # a refusal
    clock.advance(seconds=ACCESS_CACHE_SECONDS)
    assert service.remembered_access(staff_a, world.ids["elder-a"]) is None  # the window
    service.member_access(staff_a, world.ids["elder-a"])
    with service.store.transaction():
        pass  # any write transaction of this process
    assert service.remembered_access(staff_a, world.ids["elder-a"]) is None
