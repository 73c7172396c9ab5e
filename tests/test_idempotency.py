"""Idempotency-Key over real HTTP, on SQLite and PostgreSQL: replays, reused keys, requests in
flight, per-caller scope, 5xx and crashes not stored, malformed keys, login never cached."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, insert, select, update

from accounts.storage import member_flags, members, organisations
from idempotency.store import (
    MalformedKey,
    idempotency_keys,
    key_id,
    parse_key,
    request_fingerprint,
)
from ledger.config import Settings
from ledger.log import Log
from tests.accounts_world import PASSWORD, World, build_world
from tests.asgi_calls import asgi_get

KEY = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
PROBLEM = "urn:timebank:problem:"


@pytest.fixture
def world(settings: Settings, log: Log) -> Iterator[World]:
    yield from build_world(settings, log)


def _with_key(world: World, who: str | None, key: str) -> dict[str, str]:
    headers = world.as_(who) if who else {}
    return {**headers, KEY: key}


def _count(world: World, table: Any, *where: Any) -> int:
    with world.accounts.store.reader.connect() as conn:
        stmt = select(func.count()).select_from(table)
        return int(conn.execute(stmt.where(*where) if where else stmt).scalar_one())


def _keys(world: World) -> list[Any]:
    with world.accounts.store.reader.connect() as conn:
        return list(conn.execute(select(idempotency_keys)))


def _org(name: str) -> dict[str, str]:
    return {"name": name, "kind": "community_centre"}


def test_a_retry_replays_the_stored_response_and_creates_nothing(world: World) -> None:
    headers = _with_key(world, "b1-admin", "create-org-1")
    first = world.client.post("/v1/orgs", headers=headers, json=_org("Org Z"))
    assert first.status_code == 201, first.text
    assert REPLAYED not in first.headers
    orgs = _count(world, organisations)
    again = world.client.post("/v1/orgs", headers=headers, json=_org("Org Z"))
    assert again.status_code == 201
    assert again.headers[REPLAYED] == "true"
    assert again.content == first.content
    assert again.headers["content-type"] == first.headers["content-type"]
    assert _count(world, organisations) == orgs
    # The same JSON, spaced and ordered differently, is the same request.
    spaced = world.client.post(
        "/v1/orgs",
        headers={**headers, "Content-Type": "application/json"},
        content=b'{ "kind" : "community_centre",\n "name": "Org Z" }',
    )
    assert spaced.status_code == 201 and spaced.headers[REPLAYED] == "true"
    assert spaced.content == first.content
    # Without the key the handler runs and the name is taken.
    plain = world.client.post("/v1/orgs", headers=world.as_("b1-admin"), json=_org("Org Z"))
    assert plain.status_code == 409


def test_a_replayed_ledger_write_does_not_grow_the_ledger(world: World) -> None:
    path = f"/v1/members/{world.ids['pending-a']}/approve"
    headers = _with_key(world, "staff-a", "approve-pending-a")
    first = world.client.post(path, headers=headers)
    assert first.status_code == 200, first.text
    size = world.log.size()
    for _ in range(3):
        again = world.client.post(path, headers=headers)
        assert (again.status_code, again.headers[REPLAYED]) == (200, "true")
        assert again.content == first.content
    assert world.log.size() == size
    assert world.client.post(path, headers=world.as_("staff-a")).status_code == 409


def test_flags_are_set_once_per_key(world: World) -> None:
    elder = world.ids["elder-a"]
    path = f"/v1/members/{elder}/flags"
    headers = _with_key(world, "staff-a", "flag-living-alone")
    body = {"flag": "living_alone", "note": "独居"}
    first = world.client.post(path, headers=headers, json=body)
    assert first.status_code == 201, first.text
    again = world.client.post(path, headers=headers, json=body)
    assert again.status_code == 201 and again.headers[REPLAYED] == "true"
    assert again.json()["id"] == first.json()["id"]
    live = (member_flags.c.member_id == elder, member_flags.c.flag == "living_alone")
    assert _count(world, member_flags, *live) == 1


def test_a_reused_key_with_another_body_is_a_422(world: World) -> None:
    headers = _with_key(world, "b1-admin", "reused")
    assert world.client.post("/v1/orgs", headers=headers, json=_org("Org Y")).status_code == 201
    other = world.client.post("/v1/orgs", headers=headers, json=_org("Org X"))
    assert other.status_code == 422
    assert other.headers["content-type"].startswith("application/problem+json")
    problem = other.json()
    assert problem["type"] == PROBLEM + "idempotency-key-reused"
    assert problem["field"] == KEY and problem["status"] == 422
    assert _count(world, organisations, organisations.c.name == "Org X") == 0
    # Same key on another path is another request.
    elsewhere = world.client.post(
        f"/v1/members/{world.ids['elder-a']}/flags", headers=headers, json={"flag": "empty_nest"}
    )
    assert elsewhere.status_code == 201 and REPLAYED not in elsewhere.headers


def _in_progress_row(
    world: World, caller: str, path: str, body: bytes, key: str, age: float
) -> None:
    protector = world.accounts.protector
    with world.accounts.store.writer.begin() as conn:
        conn.execute(
            insert(idempotency_keys).values(
                id=key_id(caller, "POST", path, key),
                fingerprint=request_fingerprint(protector, "POST", path, b"", body),
                lease=secrets.token_hex(16),
                created_at=datetime.now(UTC) - timedelta(seconds=age),
            )
        )


def test_a_retry_while_the_first_is_running_is_a_409(world: World) -> None:
    body = _org("Org Running")
    caller = f"user:{world.ids['b1-admin']}"
    _in_progress_row(world, caller, "/v1/orgs", json.dumps(body).encode(), "running", age=5)
    headers = _with_key(world, "b1-admin", "running")
    busy = world.client.post("/v1/orgs", headers=headers, json=body)
    assert busy.status_code == 409
    assert busy.json()["type"] == PROBLEM + "idempotency-key-in-progress"
    assert busy.json()["field"] == KEY and busy.headers["retry-after"] == "1"
    assert _count(world, organisations, organisations.c.name == "Org Running") == 0
    # Ten minutes on, the first request is taken as abandoned: the retry runs.
    _in_progress_row(world, caller, "/v1/orgs", json.dumps(body).encode(), "stale", age=11 * 60)
    stale = world.client.post("/v1/orgs", headers=_with_key(world, "b1-admin", "stale"), json=body)
    assert stale.status_code == 201 and REPLAYED not in stale.headers
    replay = world.client.post("/v1/orgs", headers=_with_key(world, "b1-admin", "stale"), json=body)
    assert replay.headers[REPLAYED] == "true" and replay.content == stale.content


def test_keys_are_scoped_to_the_caller(world: World) -> None:
    one = world.client.post(
        "/v1/orgs", headers=_with_key(world, "b1-admin", "shared"), json=_org("Shared")
    )
    two = world.client.post(
        "/v1/orgs", headers=_with_key(world, "b2-admin", "shared"), json=_org("Shared")
    )
    assert one.status_code == two.status_code == 201
    assert REPLAYED not in one.headers and REPLAYED not in two.headers
    assert one.json()["id"] != two.json()["id"]
    assert (one.json()["bank_id"], two.json()["bank_id"]) == ("b1", "b2")
    # A new session of the same user is the same caller.
    token = world.accounts.issue_token("b1-admin").token
    fresh = world.client.post(
        "/v1/orgs",
        headers={"Authorization": f"Bearer {token}", KEY: "shared"},
        json=_org("Shared"),
    )
    assert fresh.headers[REPLAYED] == "true" and fresh.content == one.content


def test_anonymous_registration_is_replayed_and_stored_sealed(world: World) -> None:
    body = {
        "bank_id": "b1",
        "org_id": world.ids["org_a"],
        "username": "retrying-vol",
        "password": "a fine long password",
        "personal": {"name": "重试", "phone": "13912345678", "id_number": "11010519491231002X"},
    }
    before = _count(world, members)
    first = world.client.post("/v1/register", headers={KEY: "signup-1"}, json=body)
    assert first.status_code == 202, first.text
    again = world.client.post("/v1/register", headers={KEY: "signup-1"}, json=body)
    assert again.status_code == 202 and again.headers[REPLAYED] == "true"
    assert again.content == first.content
    assert _count(world, members) == before + 1
    # Without the key it runs again: the name is taken now, which the answer does not say,
    # and nothing more is stored.
    rerun = world.client.post("/v1/register", json=body)
    assert rerun.status_code == 202 and REPLAYED not in rerun.headers
    assert _count(world, members) == before + 1
    other = world.client.post(
        "/v1/register", headers={KEY: "signup-1"}, json={**body, "username": "other-vol"}
    )
    assert other.status_code == 422 and other.json()["field"] == KEY
    (row,) = _keys(world)
    assert row.status_code == 202 and row.completed_at is not None
    sealed = bytes(row.response_sealed)
    for secret in (b"13912345678", b"11010519491231002X", "重试".encode(), b"retrying-vol"):
        assert secret not in sealed
    assert b"signup-1" not in row.id.encode()


def test_client_errors_are_stored_and_replayed(world: World) -> None:
    headers = _with_key(world, "staff-a", "bad-flag")
    path = f"/v1/members/{world.ids['elder-a']}/flags"
    first = world.client.post(path, headers=headers, json={"flag": "rich"})
    assert first.status_code == 400
    again = world.client.post(path, headers=headers, json={"flag": "rich"})
    assert again.status_code == 400 and again.headers[REPLAYED] == "true"
    assert again.content == first.content
    assert again.headers["content-type"].startswith("application/problem+json")


def test_server_errors_are_not_stored_so_the_client_can_retry(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*_: Any, **__: Any) -> Any:
        raise RuntimeError("database went away")

    headers = _with_key(world, "b1-admin", "flaky")
    with monkeypatch.context() as patch:
        patch.setattr(world.accounts, "create_org", boom)
        failed = world.client.post("/v1/orgs", headers=headers, json=_org("Org Flaky"))
        assert failed.status_code == 500
        assert _keys(world) == []
    retry = world.client.post("/v1/orgs", headers=headers, json=_org("Org Flaky"))
    assert retry.status_code == 201 and REPLAYED not in retry.headers
    replay = world.client.post("/v1/orgs", headers=headers, json=_org("Org Flaky"))
    assert replay.headers[REPLAYED] == "true" and replay.content == retry.content


@pytest.mark.parametrize(
    "values",
    [
        [(KEY, "")],
        [(KEY, "k" * 201)],
        [(KEY, "tab\there")],
        [(KEY, "del\x7f")],
        [(KEY.encode(), "caf\xe9".encode("latin-1"))],
    ],
    ids=["empty", "too-long", "control", "delete", "non-ascii"],
)
def test_malformed_keys_are_a_400_naming_the_header(world: World, values: list[Any]) -> None:
    headers = [*world.as_("b1-admin").items(), *values]
    response = world.client.post("/v1/orgs", headers=headers, json=_org("Org Malformed"))
    assert response.status_code == 400, response.text
    problem = response.json()
    assert problem["field"] == KEY and problem["type"] == PROBLEM + "invalid-parameter"
    assert _count(world, organisations, organisations.c.name == "Org Malformed") == 0
    longest = world.client.post(
        "/v1/orgs", headers=_with_key(world, "b1-admin", "k" * 200), json=_org("Org Malformed")
    )
    assert longest.status_code == 201


def test_a_key_sent_twice_is_malformed() -> None:
    # The test transport folds repeated headers into one; servers hand them over apart.
    with pytest.raises(MalformedKey, match="one Idempotency-Key"):
        parse_key([b"one", b"two"])
    assert parse_key([b"550e8400-e29b-41d4-a716-446655440000"]).startswith("550e")


def test_two_authorization_headers_are_refused_and_nothing_runs(world: World) -> None:
    """Such a request is passed through by the idempotency layer (it stores nothing for an
    ambiguous caller), so the handler refuses it: a retry cannot create twice."""
    admin = world.as_("b1-admin")["Authorization"].encode()
    other = world.as_("b2-admin")["Authorization"].encode()
    body = json.dumps(_org("Org Twice")).encode()

    def post(*authorizations: bytes, lang: bytes = b"en") -> tuple[int, dict[str, Any]]:
        headers = [
            *((b"authorization", value) for value in authorizations),
            (b"content-type", b"application/json"),
            (b"accept-language", lang),
            (KEY.lower().encode(), b"create-twice"),
        ]
        sent = asgi_get(
            world.client.app, "/v1/orgs", headers, route_only=False, method="POST", body=body
        )
        return sent[0]["status"], json.loads(sent[1]["body"])

    for pair in ((admin, admin), (admin, other)):
        for _ in range(2):
            status, problem = post(*pair)
            assert status == 401 and problem["field"] == "Authorization", problem
            assert problem["type"] == PROBLEM + "token-invalid"
    assert "一个" in post(admin, other, lang=b"zh-CN")[1]["detail"]
    assert _count(world, organisations, organisations.c.name == "Org Twice") == 0
    assert _keys(world) == []
    status, created = post(admin)  # the same request with one header
    assert status == 201 and created["name"] == "Org Twice"


def test_login_and_logout_are_never_cached(world: World) -> None:
    body = {"username": "vol-a", "password": PASSWORD}
    one = world.client.post("/v1/auth/login", headers={KEY: "login"}, json=body)
    two = world.client.post("/v1/auth/login", headers={KEY: "login"}, json=body)
    assert one.status_code == two.status_code == 200
    assert REPLAYED not in two.headers and one.json()["token"] != two.json()["token"]
    for token in (one.json()["token"], two.json()["token"]):
        out = world.client.post(
            "/v1/auth/logout", headers={"Authorization": f"Bearer {token}", KEY: "logout"}
        )
        assert out.status_code == 204 and REPLAYED not in out.headers
    assert _keys(world) == []


def test_an_unauthenticated_call_is_not_stored(world: World) -> None:
    headers = {"Authorization": "Bearer nonsense", KEY: "who-am-i"}
    for _ in range(2):
        response = world.client.post("/v1/orgs", headers=headers, json=_org("Org Nobody"))
        assert response.status_code == 401 and REPLAYED not in response.headers
    assert _keys(world) == []


def test_keys_expire_after_a_day_and_are_purged(world: World) -> None:
    old = datetime.now(UTC) - timedelta(hours=25)
    with world.accounts.store.writer.begin() as conn:
        conn.execute(
            insert(idempotency_keys).values(
                id="0" * 64, fingerprint="f" * 64, lease="l" * 32, created_at=old, status_code=201
            )
        )
    headers = _with_key(world, "b1-admin", "day-old")
    first = world.client.post("/v1/orgs", headers=headers, json=_org("Org Old"))
    assert first.status_code == 201
    assert [r.id for r in _keys(world)] == [
        key_id(f"user:{world.ids['b1-admin']}", "POST", "/v1/orgs", "day-old")
    ]
    with world.accounts.store.writer.begin() as conn:
        conn.execute(update(idempotency_keys).values(created_at=old))
    again = world.client.post("/v1/orgs", headers=headers, json=_org("Org Old"))
    assert again.status_code == 409 and REPLAYED not in again.headers  # the handler ran again
    assert again.json()["type"] == PROBLEM + "conflict"


def test_gets_and_keyless_posts_pass_through(world: World) -> None:
    got = world.client.get("/v1/orgs", headers=_with_key(world, "b1-admin", ""))
    assert got.status_code == 200
    posted = world.client.post("/v1/orgs", headers=world.as_("b1-admin"), json=_org("Org Keyless"))
    assert posted.status_code == 201
    assert _keys(world) == []


def test_the_openapi_document_mentions_the_header(world: World) -> None:
    schema = world.client.get("/schema/openapi.json").json()
    assert "Idempotency-Key" in schema["info"]["description"]
    parameter = schema["components"]["parameters"]["IdempotencyKey"]
    assert (parameter["name"], parameter["in"], parameter["required"]) == (KEY, "header", False)
    assert parameter["schema"]["maxLength"] == 200
    assert "IdempotentReplayed" in schema["components"]["headers"]
    # Each operation says what it takes: the bearer token where the handler needs a caller,
    # the key where the middleware honours it (required where a missing key is a 428).
    paths = schema["paths"]
    gift = paths["/v1/gifts"]["post"]
    assert gift["security"] == [{"bearer": []}]
    keys = [p for p in gift["parameters"] if p.get("name") == KEY]
    assert len(keys) == 1 and keys[0]["required"] is True and "428" in gift["responses"]
    again = world.client.get("/schema/openapi.json").json()["paths"]  # served twice, same
    org = again["/v1/orgs"]["post"]
    assert org["parameters"] == [{"$ref": "#/components/parameters/IdempotencyKey"}]
    assert {"400", "409", "422"} <= set(org["responses"])
    login = paths["/v1/auth/login"]["post"]
    assert "security" not in login and KEY not in json.dumps(login.get("parameters", []))
    # what a peer bank calls is signed by its request key, not by a bearer token
    for peer_path in ("/v1/federation/transfers", "/v1/federation/settlements"):
        assert paths[peer_path]["post"]["security"] == [{"peerSignature": []}], peer_path
    signature = schema["components"]["securitySchemes"]["peerSignature"]
    assert (signature["type"], signature["in"], signature["name"]) == (
        "apiKey",
        "header",
        "Signature",
    )
    assert "security" not in paths["/v1/log/checkpoint"]["get"]
    statuses = [p for p in paths["/v1/requests"]["get"]["parameters"] if p["name"] == "status"]
    assert statuses[0]["schema"]["enum"][:2] == ["open", "assigned"]
