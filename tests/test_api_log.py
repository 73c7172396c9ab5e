"""``/v1/log/*`` over HTTP: formats of DESIGN.md, and bad parameters as 400 problem+json."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from litestar.testing import TestClient

from api.app import create_app
from ledger.config import Settings
from ledger.log import Log
from ledger.merkle import leaf_hash, root_of, verify_consistency, verify_inclusion
from ledger.note import Verifier, open_checkpoint
from tests.asgi_calls import asgi_get, count_routed
from tests.helpers import deposit, member

SIZE = 21
CHECKPOINT = "/v1/log/checkpoint"


@pytest.fixture
def client(settings: Settings, log: Log) -> Iterator[TestClient]:  # type: ignore[type-arg]
    for i in range(SIZE):
        log.append(deposit(f"d{i}", member(i % 4), 30 + i))
    with TestClient(create_app(settings, log=log)) as test_client:
        yield test_client


def test_checkpoint_verifies_with_the_served_key(client: TestClient) -> None:  # type: ignore[type-arg]
    key = client.get("/v1/log/key")
    assert key.headers["content-type"].startswith("text/plain")
    verifier = Verifier.from_text(key.text)
    response = client.get("/v1/log/checkpoint")
    assert response.headers["content-type"].startswith("text/plain")
    checkpoint, _ = open_checkpoint(response.text, verifier, "timebank.test/log")
    assert checkpoint.size == SIZE


def test_leaves_hash_to_the_root_and_proofs_verify(client: TestClient) -> None:  # type: ignore[type-arg]
    verifier = Verifier.from_text(client.get("/v1/log/key").text)
    checkpoint, _ = open_checkpoint(client.get("/v1/log/checkpoint").text, verifier)
    leaves: list[bytes] = []
    while len(leaves) < SIZE:
        page = client.get("/v1/log/leaves", params={"start": len(leaves), "end": SIZE}).json()
        assert [leaf["index"] for leaf in page["leaves"]] == list(
            range(len(leaves), len(leaves) + len(page["leaves"]))
        )
        leaves += [base64.b64decode(leaf["data"]) for leaf in page["leaves"]]
    assert root_of(leaf_hash(leaf) for leaf in leaves) == checkpoint.root
    for index in (0, 5, SIZE - 1):
        body = client.get(
            "/v1/log/proof/inclusion", params={"index": index, "tree_size": SIZE}
        ).json()
        assert (body["index"], body["tree_size"]) == (index, SIZE)
        hashes = [base64.b64decode(h) for h in body["hashes"]]
        verify_inclusion(leaf_hash(leaves[index]), index, SIZE, hashes, checkpoint.root)
    body = client.get("/v1/log/proof/consistency", params={"first": 7, "second": SIZE}).json()
    assert (body["first"], body["second"]) == (7, SIZE)
    old = root_of(leaf_hash(leaf) for leaf in leaves[:7])
    verify_consistency(7, SIZE, old, checkpoint.root, [base64.b64decode(h) for h in body["hashes"]])


def test_healthz_and_openapi(client: TestClient) -> None:  # type: ignore[type-arg]
    health = client.get("/healthz")
    assert health.json() == {"status": "ok", "tree_size": SIZE}
    assert "set-cookie" not in health.headers  # a load balancer's probe is handed no cookie
    assert "set-cookie" in client.get("/login").headers  # a page's visitor is (the CSRF one)
    schema = client.get("/schema/openapi.json").json()
    assert {
        "/v1/log/checkpoint",
        "/v1/log/key",
        "/v1/log/leaves",
        "/v1/log/proof/inclusion",
        "/v1/log/proof/consistency",
        "/healthz",
    } <= set(schema["paths"])
    # Request bodies are documented as they are decoded: unknown fields are refused.
    schemas = schema["components"]["schemas"]
    for name in ("LoginIn", "RequestIn", "GiftIn"):
        assert schemas[name]["additionalProperties"] is False, name


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/log/leaves", {"start": -1, "end": 3}, "start"),
        ("/v1/log/leaves", {"start": 3, "end": 3}, "end"),
        ("/v1/log/leaves", {"start": SIZE, "end": SIZE + 5}, "start"),
        ("/v1/log/leaves", {"start": "x", "end": 3}, "start"),
        ("/v1/log/leaves", {"end": 3}, "start"),
        ("/v1/log/leaves", {"start": 0, "end": 10**30}, "end"),
        ("/v1/log/proof/inclusion", {"index": -1, "tree_size": 3}, "index"),
        ("/v1/log/proof/inclusion", {"index": 3, "tree_size": 3}, "index"),
        ("/v1/log/proof/inclusion", {"index": 0, "tree_size": SIZE + 1}, "tree_size"),
        ("/v1/log/proof/inclusion", {"index": 0, "tree_size": 0}, "tree_size"),
        ("/v1/log/proof/inclusion", {"index": "1.5", "tree_size": 3}, "index"),
        ("/v1/log/proof/inclusion", {"index": 2**63, "tree_size": 3}, "index"),
        ("/v1/log/proof/consistency", {"first": 5, "second": 4}, "first"),
        ("/v1/log/proof/consistency", {"first": 0, "second": 4}, "first"),
        ("/v1/log/proof/consistency", {"first": 1, "second": SIZE + 1}, "second"),
        ("/v1/log/proof/consistency", {"first": "", "second": 4}, "first"),
        ("/v1/log/proof/consistency", {"first": 1, "second": "9" * 400}, "second"),
    ],
)
def test_bad_parameters_get_a_400_problem_naming_the_field(
    client: TestClient,
    path: str,
    params: dict[str, object],
    field: str,  # type: ignore[type-arg]
) -> None:
    response = client.get(path, params=params)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "urn:timebank:problem:invalid-parameter"
    assert problem["status"] == 400
    assert problem["field"] == field
    assert field in problem["detail"] or problem["detail"]


def test_unknown_route_is_a_problem(client: TestClient) -> None:  # type: ignore[type-arg]
    response = client.get("/v1/log/nothing")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def _served_size(client: TestClient, verifier: Verifier) -> int:  # type: ignore[type-arg]
    return open_checkpoint(client.get("/v1/log/checkpoint").text, verifier)[0].size


def test_served_checkpoint_follows_every_append_of_this_process(
    client: TestClient,  # type: ignore[type-arg]
    log: Log,
) -> None:
    """The route serves the checkpoint from memory between appends, never one behind ours."""
    verifier = Verifier.from_text(client.get("/v1/log/key").text)
    assert _served_size(client, verifier) == SIZE
    assert _served_size(client, verifier) == SIZE  # the second poll is the cached one
    for extra in range(1, 4):
        log.append(deposit(f"late{extra}", member(extra), 10))
        assert _served_size(client, verifier) == SIZE + extra
    # Through the sequencer directly too (the demo seed and the API both append that way).
    log.sequencer.submit(deposit("queued", member(1), 10)).result()
    assert _served_size(client, verifier) == SIZE + 4


def test_another_writers_append_shows_after_max_age(settings: Settings, log: Log) -> None:
    """Appends by another process (here: another Log on the same database) are invisible to
    the cache for at most ``max_age`` seconds; a fresh read always sees them."""
    log.append(deposit("first", member(0), 30))
    before = log.checkpoint(max_age=3600)
    other = Log.open(settings)
    try:
        other.append(deposit("other", member(1), 30))
    finally:
        other.close()
    assert log.checkpoint(max_age=3600) == before  # within max_age: the cached one
    assert open_checkpoint(log.checkpoint(), log.signer.verifier)[0].size == 2
    assert log.cached_checkpoint(3600) is not None  # the fresh read refreshed the cache
    assert open_checkpoint(log.checkpoint(max_age=3600), log.signer.verifier)[0].size == 2


@pytest.fixture
def routed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    return count_routed(monkeypatch)


def test_the_fast_checkpoint_is_the_routes_response_byte_for_byte(
    client: TestClient,  # type: ignore[type-arg]
    log: Log,
    routed: list[str],
) -> None:
    app = client.app
    for round_ in range(2):
        route = asgi_get(app, CHECKPOINT, [], route_only=True)  # fills the cache too
        routed.clear()
        fast = asgi_get(app, CHECKPOINT, [], route_only=False)
        assert routed == []  # answered in front of Litestar
        assert fast == route
        assert [m["type"] for m in fast] == ["http.response.start", "http.response.body"]
        assert fast[0]["status"] == 200
        size = open_checkpoint(fast[1]["body"].decode(), log.signer.verifier)[0].size
        assert size == SIZE + round_
        log.append(deposit(f"fast{round_}", member(round_), 10))
    # After this process's append the cached checkpoint is stale: the route answers, with the
    # new tree, and the fast path serves that one from then on.
    routed.clear()
    after = asgi_get(app, CHECKPOINT, [], route_only=False)
    assert routed == [CHECKPOINT]
    assert open_checkpoint(after[1]["body"].decode(), log.signer.verifier)[0].size == SIZE + 2
    routed.clear()
    assert asgi_get(app, CHECKPOINT, [], route_only=False) == after
    assert routed == []


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        (CHECKPOINT + "?x=1", []),
        (CHECKPOINT, [(b"cookie", b"tb_session=abc")]),
        (CHECKPOINT + "/", []),
    ],
)
def test_anything_but_a_plain_checkpoint_get_takes_the_route(
    client: TestClient,  # type: ignore[type-arg]
    routed: list[str],
    path: str,
    headers: list[tuple[bytes, bytes]],
) -> None:
    asgi_get(client.app, CHECKPOINT, [], route_only=True)  # the checkpoint is in memory
    routed.clear()
    answer = asgi_get(client.app, path, headers, route_only=False)
    assert routed == [path.partition("?")[0]]
    assert answer[0]["status"] == 200
    if headers:  # a browser's session cookie gets the CSRF cookie from the route, as before
        cookies = [v for k, v in answer[0]["headers"] if k == b"set-cookie"]
        assert any(v.startswith(b"tb_csrf=") for v in cookies)


def test_a_host_litestar_refuses_takes_the_route(
    client: TestClient,  # type: ignore[type-arg]
    routed: list[str],
) -> None:
    asgi_get(client.app, CHECKPOINT, [], route_only=True)  # the checkpoint is in memory
    routed.clear()
    answer = asgi_get(client.app, CHECKPOINT, [], route_only=False, host=b"bad host")
    assert routed == [CHECKPOINT]
    assert answer[0]["status"] == 400  # as before the fast path: Litestar's router refuses it
