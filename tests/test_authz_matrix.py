"""Every route that takes an id, called by every role on objects outside its scope: refused.

404 where existence must not leak (members, organisations, relations, keys of another scope),
403 where the object is visible but the action is not the caller's. Each refusal has a
positive control: the same route with an object in scope succeeds for a role that may use it,
so the matrix cannot pass by refusing everything.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ledger.config import Settings
from ledger.log import Log
from tests.accounts_world import World, build_world
from tests.conftest import BACKENDS, make_database, require_pg

ROLES = ["b1-admin", "staff-a", "admin-a", "auditor", "vol-a", "elder-a", "family-a", "partner"]


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    if request.param == "postgresql":
        require_pg()
    tmp = tmp_path_factory.mktemp(f"world-{request.param}")
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
            yield from build_world(settings, log)
        finally:
            log.close()


# (method, path template, body) — {x} names an id in World.ids
ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/v1/members/{member}", None),
    ("GET", "/v1/members/{member}?reveal_reason=checking+the+address", None),
    ("GET", "/v1/members/{member}/relatives", None),
    ("GET", "/v1/members/{member}/access-records", None),
    ("POST", "/v1/members/{pending}/approve", None),
    ("POST", "/v1/members/{pending}/reject", {"reason": "not known here"}),
    ("POST", "/v1/members/{member}/flags", {"flag": "disabled"}),
    ("POST", "/v1/members/{member}/flags/{flag}/clear", None),
    ("POST", "/v1/members/{member}/relatives", {"relative_id": "{other}", "relation": "sibling"}),
    ("POST", "/v1/members/{member}/proxies", {"username": "vol-a"}),
    ("GET", "/v1/orgs/{org}", None),
    ("GET", "/v1/orgs/{org}/staff", None),
    ("POST", "/v1/orgs/{org}/staff", {"username": "intruder-{n}", "role": "org_staff"}),
    ("POST", "/v1/orgs/{org}/staff/{staff}/revoke", None),
    ("GET", "/v1/banks/{bank}", None),
    ("POST", "/v1/relatives/{link}/confirm", None),
    ("POST", "/v1/relatives/{link}/reject", None),
    ("POST", "/v1/partner-keys/{key}/revoke", None),
]

# Objects outside each role's scope: another organisation's (org B) and another bank's.
FOREIGN_B1 = {
    "member": "elder-b",
    "pending": "pending-b",
    "flag": "flag-b",
    "other": "vol-b",
    "org": "org_b",
    "staff": "staff-b",
    "bank": "b1",
    "link": "link-b",
    "key": "partner-key",
}
FOREIGN_B2 = {
    "member": "elder-c",
    "pending": "pending-c",
    "flag": "flag-c",
    "other": "vol-c",
    "org": "org_c",
    "staff": "b2-admin",
    "bank": "b2",
    "link": "link-c",
    "key": "partner-key-b2",
}

# What each role may legitimately do to org B's objects in bank b1 (so not a refusal).
ALLOWED_IN_B1: dict[str, set[str]] = {
    "b1-admin": {route for _, route, _ in ROUTES},
    "auditor": {
        "/v1/members/{member}",
        "/v1/members/{member}/access-records",
        "/v1/orgs/{org}",
        "/v1/banks/{bank}",
    },
}
VISIBLE_TO_BANK = {"/v1/orgs/{org}", "/v1/banks/{bank}"}  # any person in the bank may read these


def _fill(world: World, template: str, targets: dict[str, str], n: int) -> str:
    out = template.replace("{n}", str(n))
    for name, key in targets.items():
        out = out.replace("{" + name + "}", world.ids.get(key, key))
    return out


def _call(world: World, who: str, method: str, path: str, body: Any) -> Any:
    headers = world.as_(who)
    if method == "GET":
        return world.client.get(path, headers=headers)
    return world.client.post(path, headers=headers, json=body if body is not None else {})


CASES = [(who, m, r, b) for who in ROLES for m, r, b in ROUTES]


@pytest.mark.parametrize(
    ("who", "method", "route", "body"), CASES, ids=[f"{w}:{m}:{r}" for w, m, r, _ in CASES]
)
def test_foreign_bank_objects_are_not_found(
    world: World, who: str, method: str, route: str, body: dict[str, Any] | None
) -> None:
    """Another bank's objects do not exist for anyone in this bank (except public bank info)."""
    path = _fill(world, route, FOREIGN_B2, CASES.index((who, method, route, body)))
    filled_body = (
        {
            k: _fill(world, v, FOREIGN_B2, 0) if isinstance(v, str) else v
            for k, v in (body or {}).items()
        }
        if body is not None
        else None
    )
    response = _call(world, who, method, path, filled_body)
    assert response.status_code in (403, 404), (response.status_code, response.text)
    assert response.headers["content-type"] == "application/problem+json"
    if who != "partner" and route.startswith(("/v1/members", "/v1/relatives", "/v1/orgs")):
        assert response.status_code == 404, response.text


# Org B's objects, for every role that has no business with them (a bank admin does; an
# auditor may read; anyone in the bank may read the bank and its organisations).
B1_CASES = [
    (who, m, r, b)
    for who, m, r, b in CASES
    if r not in ALLOWED_IN_B1.get(who, set())
    and not (r in VISIBLE_TO_BANK and who != "partner" and m == "GET")
]


@pytest.mark.parametrize(
    ("who", "method", "route", "body"), B1_CASES, ids=[f"{w}:{m}:{r}" for w, m, r, _ in B1_CASES]
)
def test_other_organisations_objects_are_refused(
    world: World, who: str, method: str, route: str, body: dict[str, Any] | None
) -> None:
    path = _fill(world, route, FOREIGN_B1, CASES.index((who, method, route, body)))
    filled_body = (
        {
            k: _fill(world, v, FOREIGN_B1, 0) if isinstance(v, str) else v
            for k, v in (body or {}).items()
        }
        if body is not None
        else None
    )
    response = _call(world, who, method, path, filled_body)
    assert response.status_code in (403, 404), (response.status_code, response.text)
    assert response.headers["content-type"] == "application/problem+json"


# Positive controls: in-scope calls that must succeed.
IN_SCOPE = [
    ("staff-a", "GET", "/v1/members/{vol-a}", 200),
    ("staff-a", "GET", "/v1/members/{elder-a}?reveal_reason=calling+her+daughter", 200),
    ("vol-a", "GET", "/v1/members/{vol-a}", 200),
    ("family-a", "GET", "/v1/members/{elder-a}", 200),
    ("elder-a", "GET", "/v1/members/{elder-a}/relatives", 200),
    ("auditor", "GET", "/v1/members/{elder-b}", 200),
    ("admin-a", "GET", "/v1/orgs/{org_a}/staff", 200),
    ("staff-a", "GET", "/v1/orgs/{org_a}/staff", 200),
    ("vol-a", "GET", "/v1/orgs/{org_a}", 200),
    ("vol-a", "GET", "/v1/banks/b1", 200),
    ("b1-admin", "GET", "/v1/members/{elder-b}/access-records", 200),
]


@pytest.mark.parametrize(("who", "method", "route", "status"), IN_SCOPE)
def test_in_scope_calls_succeed(
    world: World, who: str, method: str, route: str, status: int
) -> None:
    path = route
    for key, value in world.ids.items():
        path = path.replace("{" + key + "}", value)
    response = _call(world, who, method, path, None)
    assert response.status_code == status, response.text


def test_staff_of_an_org_cannot_act_on_another_orgs_members_even_by_guessing(world: World) -> None:
    """The same request by org B's staff works: the refusal above is about scope, not the call."""
    flag = world.client.post(
        f"/v1/members/{world.ids['elder-b']}/flags",
        headers=world.as_("staff-b"),
        json={"flag": "disabled"},
    )
    assert flag.status_code == 201, flag.text
    refused = world.client.post(
        f"/v1/members/{world.ids['elder-b']}/flags",
        headers=world.as_("staff-a"),
        json={"flag": "low_income"},
    )
    assert refused.status_code == 404
