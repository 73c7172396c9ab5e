"""Schemathesis against the app's own OpenAPI document (DESIGN.md, "Quality bar").

The schema is the one the app serves at ``/schema/openapi.json``. Every operation in it is
fuzzed against the live ASGI app, through a ``TestClient`` of an accounts world on SQLite (the
app's lifespan runs once per world), twice: as a bank administrator and with no credentials.
Each operation gets schemathesis's examples, coverage (boundary and schema-breaking values) and
fuzzing phases, positive and negative, and every response must pass:

- ``not_a_server_error``: bad input is a 4xx, never a 5xx;
- the conformance checks: status code, content type, headers and body are the documented ones;
- ``negative_data_rejection``: input that breaks the schema is refused with a 4xx (JSON scalars
  included: ``"60"`` and ``60.0`` are not integers, ``0`` and ``"true"`` not booleans);
- :func:`problem_details`: every 4xx is ``application/problem+json`` with ``type``, ``title``,
  ``status`` (the HTTP status) and ``detail``, and an ``invalid-parameter`` names its ``field``.

Valid cases get real ids from the world (members, organisations, a request, a record, …) most
of the time, so that fuzzing reaches the rules behind the 404s. Each caller has a world of its
own and its operations run in one xdist group, in a fixed order, so a run is deterministic
(fixed seed, derandomized Hypothesis) and small (``MAX_EXAMPLES`` fuzzed cases per operation;
``TIMEBANK_FUZZ_EXAMPLES`` and ``TIMEBANK_FUZZ_SEED`` make a longer or another run).
"""

from __future__ import annotations

import os
import tempfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck
from litestar.testing import TestClient
from schemathesis import APIOperation, CheckContext, GenerationMode, Response
from schemathesis import Case as AnyCase

from accounts.errors import AuthenticationError
from api.app import create_app
from ledger.config import Settings
from ledger.log import Log
from tests.accounts_world import World, build_world
from tests.conftest import make_database

MAX_EXAMPLES = int(os.environ.get("TIMEBANK_FUZZ_EXAMPLES", "20"))
SEED = int(os.environ.get("TIMEBANK_FUZZ_SEED", "20240601"))
PROBLEM_JSON = "application/problem+json"
ADMIN = "b1-admin"
# These end the caller's sessions: each case gets a token of its own, so that the shared
# bank-admin token stays valid for the rest of the run.
Case = AnyCase[APIOperation[Any, Any, Any, Any]]
SESSION_ENDING = frozenset({"POST /v1/auth/logout", "POST /v1/auth/logout-all"})


def _served_schema() -> dict[str, Any]:
    """The document the app serves (generating it needs no database: no lifespan runs)."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_env(
            {
                "TIMEBANK_DATA_DIR": str(Path(tmp) / "data"),
                "TIMEBANK_DATABASE_URL": f"sqlite:///{tmp}/unused.db",
            }
        )
        response = TestClient(create_app(settings)).get("/schema/openapi.json")
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    # Each run supplies its caller's token itself (and the anonymous run none): schemathesis
    # must not make a case "negative" by dropping the bearer requirement that the run then
    # satisfies anyway.
    for item in document["paths"].values():
        for operation in item.values():
            if isinstance(operation, dict):
                operation.pop("security", None)
    return document


schema = schemathesis.openapi.from_dict(
    _served_schema(),
    config=schemathesis.Config.from_dict(
        {"seed": SEED, "generation": {"deterministic": True, "database": "none"}}
    ),
)
fuzz_settings = hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


# ------------------------------------------------------------------ checks


def problem_details(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Every 4xx is an RFC 9457 problem that says what is wrong (DESIGN.md, API conventions)."""
    del ctx, case
    if not 400 <= response.status_code < 500:
        return None
    content_type = (response.headers.get("content-type") or [""])[0]
    assert content_type.split(";")[0].strip() == PROBLEM_JSON, (
        f"a {response.status_code} answered with Content-Type {content_type!r}, not {PROBLEM_JSON}"
    )
    body = response.json()
    assert isinstance(body, dict), f"the problem body is not an object: {body!r}"
    for name in ("type", "title", "detail"):
        assert isinstance(body.get(name), str) and body[name].strip(), (
            f"the problem has no {name!r}: {body!r}"
        )
    assert body.get("status") == response.status_code, (
        f"the problem's status {body.get('status')!r} is not the HTTP status "
        f"{response.status_code}: {body!r}"
    )
    if body["type"] == "urn:timebank:problem:invalid-parameter":
        assert isinstance(body.get("field"), str) and body["field"], (
            f"an invalid-parameter problem does not name the field: {body!r}"
        )
    return True


CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.negative_data_rejection,
    problem_details,
]


# ------------------------------------------------------------------ the worlds under test


def _ago(hours: float) -> str:
    return (datetime.now(UTC) - timedelta(hours=hours)).isoformat()


def _created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


def _furnish(w: World) -> None:
    """A service type, an open request and a logged record to aim at."""
    _created(
        w.client.post(
            "/v1/catalogue",
            headers=w.as_(ADMIN),
            json={
                "code": "meal",
                "name_zh": "助餐",
                "name_en": "Meals",
                "category": "meals",
                "weight_permille": 1000,
            },
        )
    )
    request = _created(
        w.client.post(
            "/v1/requests",
            headers=w.as_("elder-a"),
            json={
                "elder_id": w.ids["elder-a"],
                "service_code": "meal",
                "minutes": 60,
                "window_start": _ago(4),
                "window_end": _ago(1),
            },
        )
    )
    w.ids["request-a"] = request["id"]
    record = _created(
        w.client.post(
            "/v1/records",
            headers=w.as_("vol-a"),
            json={
                "elder_id": w.ids["elder-a"],
                "service_code": "meal",
                "check_in": _ago(3),
                "check_out": _ago(2),
            },
        )
    )
    w.ids["record-a"] = record["id"]


@pytest.fixture(scope="module")
def worlds(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str], World]]:
    """A furnished world per caller, built on first use, on SQLite."""
    built: dict[str, World] = {}
    with ExitStack() as stack:

        def world(caller: str) -> World:
            if caller not in built:
                tmp = tmp_path_factory.mktemp(f"schemathesis-{caller}")
                database = make_database("sqlite", request, tmp)
                stack.callback(next, database, None)  # the generator's clean-up half
                settings = Settings.from_env(
                    {
                        "TIMEBANK_DATA_DIR": str(tmp / "data"),
                        "TIMEBANK_DATABASE_URL": next(database),
                        "TIMEBANK_LOG_ORIGIN": "timebank.test/log",
                    }
                )
                log = Log.open(settings)
                stack.callback(log.close)
                worlds = build_world(settings, log)
                stack.callback(next, worlds, None)  # leaves the TestClient: lifespan shutdown
                built[caller] = next(worlds)
                _furnish(built[caller])
            return built[caller]

        yield world


def known_values(w: World) -> dict[str, list[str]]:
    """Real values for parameters and body fields, by name."""
    ids = w.ids
    members = [ids[k] for k in ("vol-a", "elder-a", "family-a", "vol-b", "elder-b", "vol-c")]
    members += [ids["pending-a"], ids["elder-c"]]
    return {
        "member_id": members,
        "from_member_id": members,
        "to_member_id": members,
        "relative_id": members,
        "volunteer_id": [ids["vol-a"], ids["vol-b"], ids["family-a"]],
        "elder_id": [ids["elder-a"], ids["elder-b"], ids["elder-c"]],
        "org_id": [ids["org_a"], ids["org_b"], ids["org_c"]],
        "bank_id": ["b1", "b2"],
        "user_id": [ids[k] for k in ("staff-a", "admin-a", "staff-b", "auditor")],
        "flag_id": [ids["flag-a"], ids["flag-b"], ids["flag-c"]],
        "link_id": [ids["link-a"], ids["link-b"], ids["link-c"]],
        "key_id": [ids["partner-key"], ids["partner-key-b2"]],
        "request_id": [ids["request-a"]],
        "record_id": [ids["record-a"]],
        "service_code": ["meal"],
        "username": ["vol-a", "family-a", "staff-a"],
    }


def aim(case: Case, values: dict[str, list[str]]) -> None:
    """In a valid case, put real ids in place of generated ones three times in four.

    The choice hangs on the generated value, so a derandomized run makes the same one.
    """
    if case.meta is None or case.meta.generation.mode != GenerationMode.POSITIVE:
        return  # a negative case goes out exactly as generated
    containers: list[Any] = [case.path_parameters, case.query]
    if isinstance(case.body, dict):
        containers.append(case.body)
    for container in containers:
        for name in sorted(container or {}):
            if name in values and isinstance(container[name], str):
                pick = zlib.crc32(f"{name}={container[name]}".encode())
                if pick % 4:
                    container[name] = values[name][pick // 4 % len(values[name])]


# ------------------------------------------------------------------ the runs


def send(w: World, case: Case, headers: dict[str, str]) -> httpx.Response:
    kwargs = case.as_transport_kwargs(base_url=str(w.client.base_url), headers=headers)
    content = kwargs.get("data")
    # A negative case may put non-ASCII text in a header (the Idempotency-Key): send its UTF-8
    # bytes, as a client on the wire would, rather than fail to build the request.
    raw_headers = {
        name: value.encode() if isinstance(value, str) and not value.isascii() else value
        for name, value in (kwargs.get("headers") or {}).items()
    }
    return w.client.request(
        kwargs["method"],
        kwargs["url"],
        headers=raw_headers,
        params=kwargs.get("params"),
        json=kwargs.get("json"),
        content=content.encode() if isinstance(content, str) else content,
    )


def token_for(w: World, caller: str, case: Case) -> str:
    if caller == "partner":  # a partner key: no session to end or to renew
        return w.tokens[caller]
    if f"{case.method.upper()} {case.path}" in SESSION_ENDING:
        return w.accounts.issue_token(caller).token
    try:
        w.accounts.authenticate(w.tokens[caller])
    except AuthenticationError:  # ended by a case (logout-all with an aimed token, …)
        w.tokens[caller] = w.accounts.issue_token(caller).token
    return w.tokens[caller]


def run_case(w: World, case: Case, caller: str | None) -> None:
    aim(case, known_values(w))
    headers = {"Authorization": f"Bearer {token_for(w, caller, case)}"} if caller else {}
    response = send(w, case, headers)
    case.validate_response(response, checks=CHECKS, headers=headers)


# One world, one xdist group and one fixed order of operations per caller: runs repeat exactly.
# ``make fuzz`` adds every other role of the world (TIMEBANK_FUZZ_ROLES=all) for the long run.
OTHER_ROLES = ["staff-a", "admin-a", "auditor", "vol-a", "elder-a", "family-a", "partner"]
CALLERS = [
    pytest.param(ADMIN, id="bank-admin", marks=pytest.mark.xdist_group("schemathesis-admin")),
    pytest.param(None, id="anonymous", marks=pytest.mark.xdist_group("schemathesis-anonymous")),
    *(
        pytest.param(role, id=role, marks=pytest.mark.xdist_group(f"schemathesis-{role}"))
        for role in (OTHER_ROLES if os.environ.get("TIMEBANK_FUZZ_ROLES") == "all" else [])
    ),
]


@pytest.mark.parametrize("caller", CALLERS)
@fuzz_settings
@schema.parametrize()
def test_api(case: Case, caller: str | None, worlds: Callable[[str], World]) -> None:
    run_case(worlds(caller or "anonymous"), case, caller)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"gifts_allowed": 0}, "gifts_allowed"),
        ({"gifts_allowed": "true"}, "gifts_allowed"),
        ({"redemption_age": "60"}, "redemption_age"),
        ({"redemption_age": 60.0}, "redemption_age"),
    ],
)
def test_json_scalars_are_decoded_strictly(
    body: dict[str, Any], field: str, worlds: Callable[[str], World]
) -> None:
    """Litestar's lax conversion would take these; the app refuses them, naming the field."""
    w = worlds("strict-json")
    response = w.client.post("/v1/policy", headers=w.as_(ADMIN), json=body)
    assert response.status_code == 400, (body, response.text)
    assert response.json()["field"] == field
    strict = {"gifts_allowed": True} if field == "gifts_allowed" else {"redemption_age": 60}
    assert w.client.post("/v1/policy", headers=w.as_(ADMIN), json=strict).status_code == 200


@pytest.mark.parametrize(
    ("body", "zh"),
    [
        (
            {"redemption_age": "60"},
            "参数 redemption_age 无效（应为整数 / 空值（null），收到的是文本）",
        ),
        ({"gifts_allowed": 1}, "应为true 或 false / 空值（null），收到的是整数"),
        ({"redemption_age": 60, "extra": 1}, "不允许的字段 extra"),
    ],
)
def test_strict_json_refusals_speak_the_callers_language(
    body: dict[str, Any], zh: str, worlds: Callable[[str], World]
) -> None:
    """The same refusal in English (the decoder's words) and in Chinese (translated, type names
    included), next to the same call succeeding once the value has the right type."""
    w = worlds("strict-json")
    english = w.client.post("/v1/policy", headers=w.as_(ADMIN), json=body).json()
    chinese = w.client.post(
        "/v1/policy", headers={**w.as_(ADMIN), "Accept-Language": "zh-CN"}, json=body
    ).json()
    assert english["status"] == chinese["status"] == 400
    assert english["field"] == chinese["field"]
    assert zh in chinese["detail"] and "Expected" not in chinese["detail"]
    assert "Expected" in english["detail"] or "unknown field" in english["detail"]
    assert w.client.post(
        "/v1/policy", headers=w.as_(ADMIN), json={"redemption_age": 60, "gifts_allowed": True}
    ).is_success
