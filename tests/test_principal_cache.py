"""The app remembers who a token is for a moment (``api.auth.PrincipalCache``): never past a
write of this process, and another process's revocation is seen within the cache's seconds."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import update

from accounts.errors import TokenInvalid
from accounts.service import AccountsService
from accounts.storage import AccountsStore, sessions
from api.auth import PRINCIPAL_CACHE_SECONDS, PrincipalCache
from ledger.config import Settings
from ledger.log import Log
from tests.accounts_world import PASSWORD, World, build_world
from tests.test_credentials import Clock, login


@pytest.fixture
def world(settings: Settings, log: Log) -> Iterator[World]:
    yield from build_world(settings, log)


@pytest.fixture
def clocked(world: World) -> tuple[AccountsService, Clock]:
    clock = Clock()
    service = AccountsService(world.accounts.store, world.accounts.protector, world.log, clock)
    return service, clock


def _revoke_from_another_process(settings: Settings, token_user: str) -> None:
    """What the operator CLI or a second worker does: its own connection, not our store."""
    other = AccountsStore(settings.database_url)
    try:
        with other.writer.begin() as conn:
            conn.execute(
                update(sessions)
                .where(sessions.c.user_id == token_user)
                .values(revoked_at=sessions.c.created_at)
            )
    finally:
        other.dispose()


def test_a_write_of_this_process_forgets_every_principal(
    world: World, clocked: tuple[AccountsService, Clock]
) -> None:
    service, _ = clocked
    cache = PrincipalCache()
    token = service.login("vol-a", PASSWORD, None, "test").token
    principal = cache.authenticate(service, token)
    assert cache.authenticate(service, token) == principal
    service.logout(principal)
    with pytest.raises(TokenInvalid):
        cache.authenticate(service, token)


def test_another_processs_revocation_is_seen_within_the_cache_seconds(
    world: World, settings: Settings, clocked: tuple[AccountsService, Clock]
) -> None:
    service, clock = clocked
    cache = PrincipalCache()
    token = service.login("vol-a", PASSWORD, None, "test").token
    principal = cache.authenticate(service, token)
    assert principal.user_id is not None
    _revoke_from_another_process(settings, principal.user_id)
    # Within the window the remembered principal still answers (documented) ...
    clock.advance(seconds=PRINCIPAL_CACHE_SECONDS / 2)
    assert cache.authenticate(service, token) == principal
    # ... and not a moment after it.
    clock.advance(seconds=PRINCIPAL_CACHE_SECONDS / 2)
    with pytest.raises(TokenInvalid):
        cache.authenticate(service, token)


def test_expiry_is_never_outlived(world: World, clocked: tuple[AccountsService, Clock]) -> None:
    service, clock = clocked
    cache = PrincipalCache()
    token = service.login("vol-a", PASSWORD, None, "test").token
    cache.authenticate(service, token)
    clock.advance(hours=12, seconds=1)  # past a volunteer session's lifetime
    with pytest.raises(TokenInvalid, match="expired"):
        cache.authenticate(service, token)


def test_failures_are_not_remembered(world: World, clocked: tuple[AccountsService, Clock]) -> None:
    service, _ = clocked
    cache = PrincipalCache()
    with pytest.raises(TokenInvalid):
        cache.authenticate(service, "tbs_not-a-token")
    token = service.login("vol-a", PASSWORD, None, "test").token
    assert cache.authenticate(service, token).user_id == world.ids["vol-a-user"]


def test_logout_over_http_ends_the_token_at_once(world: World) -> None:
    status, body = login(world, "vol-a", PASSWORD)
    assert status == 200
    headers = {"Authorization": f"Bearer {body['token']}"}
    for _ in range(3):  # remembered by now
        assert world.client.get("/v1/me", headers=headers).status_code == 200
    assert world.client.post("/v1/auth/logout", headers=headers).status_code == 204
    assert world.client.get("/v1/me", headers=headers).status_code == 401


def test_remembered_answers_only_what_authenticate_would_from_memory(
    world: World, settings: Settings, clocked: tuple[AccountsService, Clock]
) -> None:
    """``remembered`` (the event loop's look, no I/O) never answers what ``authenticate``
    would refuse: not before a success, not past a write of this process or the window."""
    service, clock = clocked
    cache = PrincipalCache()
    with pytest.raises(TokenInvalid):
        cache.authenticate(service, "tbs_not-a-token")
    assert cache.remembered(service, "tbs_not-a-token") is None  # a failure: never
    token = service.login("vol-a", PASSWORD, None, "test").token
    assert cache.remembered(service, token) is None  # not looked up yet
    principal = cache.authenticate(service, token)
    assert cache.remembered(service, token) == principal
    clock.advance(seconds=PRINCIPAL_CACHE_SECONDS)
    assert cache.remembered(service, token) is None  # past the window
    principal = cache.authenticate(service, token)
    assert cache.remembered(service, token) == principal
    service.logout(principal)  # a write of this process
    assert cache.remembered(service, token) is None
