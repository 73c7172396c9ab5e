"""``GET /v1/members/{id}/balance`` answered in front of Litestar (``api.ledger_routes.
BalanceFastPath``): byte for byte the route's response when the caller, their access and the
minutes are all in memory, and the route itself in every other case, so its errors, their order
and its freshness rules stay the route's."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from litestar.types import Message, Scope

from accounts.model import Principal
from api.ledger_routes import BalanceFastPath
from ledger.config import Settings
from ledger.entry import EntryRequest, Posting
from ledger.log import Log
from ledger.postings import system_account
from tests.accounts_world import PASSWORD, World, build_world
from tests.asgi_calls import asgi_get, count_routed


@pytest.fixture
def world(settings: Settings, log: Log) -> Iterator[World]:
    yield from build_world(settings, log)


@pytest.fixture
def routed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    return count_routed(monkeypatch)


def _url(world: World, member: str) -> str:
    return f"/v1/members/{world.ids[member]}/balance"


def _bearer(token: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {token}".encode())]


def _as(world: World, who: str) -> list[tuple[bytes, bytes]]:
    return _bearer(world.tokens[who])


def _deposit(world: World, entry_id: str, member: str, minutes: int) -> None:
    world.log.append(
        EntryRequest(
            "deposit",
            entry_id,
            (
                Posting(system_account("b1", "issuance"), -minutes),
                Posting(world.ids[f"{member}-account"], minutes),
            ),
            {"record": entry_id, "minutes": minutes, "weight": 1000},
        )
    )


def _status(sent: list[Message]) -> int:
    return int(sent[0]["status"])


@pytest.mark.parametrize(
    ("who", "member"),
    [("vol-a", "vol-a"), ("staff-a", "elder-a"), ("b1-admin", "vol-b"), ("auditor", "elder-b")],
)
def test_the_fast_balance_is_the_routes_response_byte_for_byte(
    world: World, routed: list[str], who: str, member: str
) -> None:
    _deposit(world, "d1", member, 45)
    url, headers = _url(world, member), _as(world, who)
    route = asgi_get(world.client.app, url, headers, route_only=True)  # fills the caches
    routed.clear()
    fast = asgi_get(world.client.app, url, headers, route_only=False)
    assert routed == []  # answered in front of Litestar
    assert fast == route
    assert [m["type"] for m in fast] == ["http.response.start", "http.response.body"]
    assert _status(fast) == 200
    assert b'"available_minutes":45' in fast[1]["body"]


def _routed_once(
    world: World,
    routed: list[str],
    url: str,
    headers: list[tuple[bytes, bytes]],
    method: str = "GET",
    host: bytes = b"testserver",
) -> list[Message]:
    """The answer to a request that must reach the route (checked), compared with the route's."""
    routed.clear()
    answer = asgi_get(world.client.app, url, headers, route_only=False, method=method, host=host)
    assert routed == [url.partition("?")[0]]
    route = asgi_get(world.client.app, url, headers, route_only=True, method=method, host=host)
    assert _status(answer) == _status(route)
    return answer


def _remembered(world: World, url: str, headers: list[tuple[bytes, bytes]]) -> None:
    """Read twice through the app, so the caller, their access and the minutes are in memory
    and the second read was already answered in front of Litestar."""
    for _ in range(2):
        assert _status(asgi_get(world.client.app, url, headers, route_only=False)) == 200


BASIC = (b"authorization", b"Basic dm9sLWE6eA==")
COOKIE = (b"cookie", b"tb_session=abc")


@pytest.mark.parametrize(
    ("case", "suffix", "method"),
    [
        ("no credentials", "", "GET"),
        ("basic", "", "GET"),
        ("bearer without a token", "", "GET"),
        ("unknown token", "", "GET"),
        ("a cookie besides the token", "", "GET"),
        ("two authorization headers", "", "GET"),
        ("a query", "?reveal_reason=x", "GET"),
        ("a trailing slash", "/", "GET"),
        ("HEAD", "", "HEAD"),
    ],
)
def test_anything_unusual_takes_the_route(
    world: World, routed: list[str], case: str, suffix: str, method: str
) -> None:
    url, mine = _url(world, "vol-a"), _as(world, "vol-a")
    _remembered(world, url, mine)
    _remembered(world, _url(world, "vol-b"), _as(world, "vol-b"))
    headers = {
        "no credentials": [],
        "basic": [BASIC],
        "bearer without a token": [(b"authorization", b"Bearer  ")],
        "unknown token": _bearer("not-a-token"),
        "a cookie besides the token": [*mine, COOKIE],
        # The route refuses two, whoever they are (the second is vol-a's own).
        "two authorization headers": [*_as(world, "vol-b"), *mine],
    }.get(case, mine)
    answer = _routed_once(world, routed, url + suffix, headers, method)
    if case in ("no credentials", "basic", "bearer without a token", "unknown token"):
        assert _status(answer) == 401
    if case == "two authorization headers":
        assert _status(answer) == 401 and b"one Authorization header" in answer[1]["body"]
    if case == "a cookie besides the token":  # the CSRF layer gives a browser its cookie
        cookies = [v for k, v in answer[0]["headers"] if k == b"set-cookie"]
        assert any(v.startswith(b"tb_csrf=") for v in cookies)


def test_a_host_litestar_refuses_takes_the_route(world: World, routed: list[str]) -> None:
    url, headers = _url(world, "vol-a"), _as(world, "vol-a")
    _remembered(world, url, headers)
    assert _status(_routed_once(world, routed, url, headers, host=b"bad host")) == 400


@pytest.mark.parametrize("member_id", ["x" * 65, "%2F"])
def test_an_id_the_route_refuses_takes_the_route(
    world: World, routed: list[str], member_id: str
) -> None:
    _remembered(world, _url(world, "vol-a"), _as(world, "vol-a"))
    url = f"/v1/members/{member_id}/balance"
    assert _status(_routed_once(world, routed, url, _as(world, "vol-a"))) in (400, 404)


def test_another_members_balance_takes_the_route_every_time(
    world: World, routed: list[str]
) -> None:
    _remembered(world, _url(world, "vol-a"), _as(world, "vol-a"))
    _remembered(world, _url(world, "vol-b"), _as(world, "vol-b"))
    for _ in range(2):  # a refusal is never remembered
        answer = _routed_once(world, routed, _url(world, "vol-a"), _as(world, "vol-b"))
        assert _status(answer) == 404


def test_a_revoked_token_takes_the_route_at_once(world: World, routed: list[str]) -> None:
    url, headers = _url(world, "vol-a"), _as(world, "vol-a")
    _remembered(world, url, headers)
    assert world.client.post("/v1/auth/logout", headers=world.as_("vol-a")).status_code == 204
    assert _status(_routed_once(world, routed, url, headers)) == 401


def test_a_write_of_this_process_takes_the_route_at_once(world: World, routed: list[str]) -> None:
    url, headers = _url(world, "vol-a"), _as(world, "vol-a")
    _remembered(world, url, headers)
    _deposit(world, "d1", "vol-a", 30)
    answer = _routed_once(world, routed, url, headers)
    assert b'"available_minutes":30' in answer[1]["body"]
    routed.clear()
    again = asgi_get(world.client.app, url, headers, route_only=False)
    assert routed == [] and again == answer  # remembered again, with the new minutes


def test_a_token_just_issued_takes_the_route_first(world: World, routed: list[str]) -> None:
    url = _url(world, "vol-a")
    _remembered(world, url, _as(world, "vol-a"))
    login = world.client.post("/v1/auth/login", json={"username": "vol-a", "password": PASSWORD})
    assert login.status_code == 200
    fresh = _bearer(login.json()["token"])
    assert _status(_routed_once(world, routed, url, fresh)) == 200
    routed.clear()
    assert _status(asgi_get(world.client.app, url, fresh, route_only=False)) == 200
    assert routed == []


def test_a_one_time_password_still_to_change_takes_the_route(
    world: World, routed: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even with everything else in memory: the route refuses it (change your password)."""
    url, headers = _url(world, "vol-a"), _as(world, "vol-a")
    _remembered(world, url, headers)
    due = dataclasses.replace(world.principal("vol-a"), password_change_due=True)

    def authenticate(token: str) -> Principal:
        return due

    monkeypatch.setattr(world.accounts, "authenticate", authenticate)
    world.accounts.member_access(due, world.ids["vol-a"])  # the access is in memory too
    answer = _routed_once(world, routed, url, _bearer("due-token"))
    assert _status(answer) == 403
    routed.clear()
    assert _status(asgi_get(world.client.app, url, _bearer("due-token"), route_only=False)) == 403
    assert routed == [url]


def test_the_route_records_no_audit_event_for_a_balance_read(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast path records nothing either; if balance reads were ever audited, it must not
    answer them (``api.audit_log``: full reads of personal data are recorded)."""
    recorded: list[str] = []

    async def record(scope: Scope, raw: bytes, status: int) -> None:
        recorded.append(scope["path"])

    monkeypatch.setattr("api.audit_log.AuditMiddleware._record", staticmethod(record))
    url, headers = _url(world, "vol-a"), _as(world, "vol-a")
    assert _status(asgi_get(world.client.app, url, headers, route_only=True)) == 200
    assert recorded == []
    asgi_get(world.client.app, url + "?reveal_reason=x", headers, route_only=True)
    assert recorded == [url]  # what the fast path never answers (a query) is recorded


def test_a_failure_in_memory_takes_the_route(
    world: World, routed: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anything the fast path raises before it sends is the route's to answer (with its
    problem+json and headers), never a bare 500 from the server."""
    url, headers = _url(world, "vol-a"), _as(world, "vol-a")
    _remembered(world, url, headers)

    def broken(*_: object) -> bytes:
        raise KeyError("a cache broken in some new way")

    monkeypatch.setattr(BalanceFastPath, "_remembered_body", broken)
    answer = _routed_once(world, routed, url, headers)
    assert _status(answer) == 200
