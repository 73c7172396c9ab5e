"""Consent links (issue 13): a partner key reads a member only through a link the member (or
their proxy) approved, for exactly the scopes approved, until it expires or is revoked; the
partner knows the member by a handle of its own. Each refusal sits next to the same call
succeeding for someone allowed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from partners.links import PartnerLinks
from tests.accounts_world import World
from tests.conftest import BACKENDS
from tests.partners_world import partners_world


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    yield from partners_world(request, tmp_path_factory)


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def _ask(w: World, partner: str, scopes: list[str], days: int = 30) -> dict[str, Any]:
    return _ok(
        w.client.post(
            "/v1/partner/link-requests",
            headers=w.as_(partner),
            json={"scopes": scopes, "valid_days": days},
        ),
        201,
    )


def _linked(w: World, partner: str, who: str, scopes: list[str], **body: str) -> dict[str, Any]:
    asked = _ask(w, partner, scopes)
    return _ok(w.client.post(f"/v1/links/{asked['id']}/approve", headers=w.as_(who), json=body))


def _points(w: World, partner: str, handle: str) -> Any:
    return w.client.get(f"/v1/partner/members/{handle}/points", headers=w.as_(partner))


def test_a_partner_reads_points_only_through_an_approved_link(world: World) -> None:
    w = world
    vol_b = w.ids["vol-b"]
    # today's by-member-id read is gone for partners; the member still reads it
    assert (
        w.client.get(f"/v1/members/{vol_b}/balance", headers=w.as_("district")).status_code == 404
    )
    assert (
        _ok(w.client.get(f"/v1/members/{vol_b}/balance", headers=w.as_("vol-b")))[
            "available_minutes"
        ]
        == 40
    )

    asked = _ask(w, "district", ["read_points"])
    assert asked["status"] == "pending" and asked["handle"] is None
    assert asked["approve_url"] == f"/links/{asked['id']}" and asked["member_id"] is None
    shown = _ok(w.client.get(f"/v1/links/{asked['id']}", headers=w.as_("vol-b")))
    assert (shown["partner"], shown["scopes"], shown["valid_days"]) == (
        "district platform",
        ["read_points"],
        30,
    )
    approved = _ok(w.client.post(f"/v1/links/{asked['id']}/approve", headers=w.as_("vol-b")))
    assert approved["status"] == "active" and approved["member_id"] == vol_b
    handle = approved["handle"]
    assert handle.startswith("mh_") and vol_b not in handle
    assert w.ids["vol-b-account"].split(":")[-1] not in handle

    seen = _ok(w.client.get(f"/v1/partner/link-requests/{asked['id']}", headers=w.as_("district")))
    assert seen["handle"] == handle and seen["status"] == "active" and seen["member_id"] is None
    shown = _ok(_points(w, "district", handle))
    assert (shown["handle"], shown["available_minutes"], shown["reserved_minutes"]) == (
        handle,
        40,
        0,
    )
    # another partner: the handle means nothing to it, its own request stays its own
    assert _points(w, "school", handle).status_code == 404
    assert (
        w.client.get(
            f"/v1/partner/link-requests/{asked['id']}", headers=w.as_("school")
        ).status_code
        == 404
    )
    # … until the member links it too, under a handle of its own
    own = _linked(w, "school", "vol-b", ["read_points"])["handle"]
    assert own != handle and _ok(_points(w, "school", own))["available_minutes"] == 40
    # each partner lists its own links only, with their handles
    district = {
        link["id"]: link["handle"]
        for link in _ok(w.client.get("/v1/partner/links", headers=w.as_("district")))
    }
    school = _ok(w.client.get("/v1/partner/links", headers=w.as_("school")))
    assert district[asked["id"]] == handle and asked["id"] not in {link["id"] for link in school}
    assert own in {link["handle"] for link in school}
    assert w.client.get("/v1/partner/links", headers=w.as_("vol-b")).status_code == 403
    # a person's login is not a partner key
    assert _points(w, "vol-b", handle).status_code == 403


def test_a_link_grants_exactly_the_scopes_asked_and_held(world: World) -> None:
    w = world
    statement_only = _linked(w, "district", "vol-b", ["read_statement"])
    assert statement_only["scopes"] == ["read_statement"]
    response = _points(w, "district", statement_only["handle"])
    assert response.status_code == 403 and "read_points" in response.json()["detail"]
    both = _linked(w, "district", "vol-b", ["read_points", "read_statement"])
    assert both["handle"] == statement_only["handle"]  # one member, one handle per partner
    assert _points(w, "district", both["handle"]).status_code == 200
    # a key asks only for scopes it holds; an unknown scope names the field
    refused = w.client.post(
        "/v1/partner/link-requests",
        headers=w.as_("school"),
        json={"scopes": ["read_statement"], "valid_days": 30},
    )
    assert refused.status_code == 400 and refused.json()["field"] == "scopes"
    unknown = w.client.post(
        "/v1/partner/link-requests",
        headers=w.as_("school"),
        json={"scopes": ["everything"], "valid_days": 30},
    )
    assert unknown.status_code == 400 and unknown.json()["field"] == "scopes"
    too_long = w.client.post(
        "/v1/partner/link-requests",
        headers=w.as_("school"),
        json={"scopes": ["read_points"], "valid_days": 5000},
    )
    assert too_long.status_code == 400 and "valid_days" in too_long.text
    assert _ask(w, "school", ["read_points"], 366)["valid_days"] == 366


def test_revoked_and_expired_links_read_nothing(world: World) -> None:
    w = world
    link = _linked(w, "school", "vol-b", ["read_points"])
    handle = link["handle"]
    assert _points(w, "school", handle).status_code == 200
    # the partner cannot revoke on the member's behalf, an unrelated volunteer cannot see it
    assert (
        w.client.post(f"/v1/links/{link['id']}/revoke", headers=w.as_("school")).status_code == 403
    )
    assert (
        w.client.post(f"/v1/links/{link['id']}/revoke", headers=w.as_("vol-a")).status_code == 404
    )
    revoked = _ok(w.client.post(f"/v1/links/{link['id']}/revoke", headers=w.as_("vol-b")))
    assert revoked["status"] == "revoked" and revoked["revoked_at"]
    response = _points(w, "school", handle)
    assert response.status_code == 403 and "revoked" in response.json()["detail"]
    assert (
        w.client.post(f"/v1/links/{link['id']}/revoke", headers=w.as_("vol-b")).status_code == 409
    )
    relinked = _linked(w, "school", "vol-b", ["read_points"])
    assert relinked["handle"] == handle and _points(w, "school", handle).status_code == 200

    service: PartnerLinks = w.client.app.state.partners
    real_clock = service.clock
    try:
        service.clock = lambda: real_clock() + timedelta(days=31)
        response = _points(w, "school", handle)
        assert response.status_code == 403 and "expired" in response.json()["detail"]
        listed = _ok(w.client.get(f"/v1/members/{w.ids['vol-b']}/links", headers=w.as_("vol-b")))
        assert listed[0]["id"] == relinked["id"] and listed[0]["status"] == "expired"
    finally:
        service.clock = real_clock
    assert _points(w, "school", handle).status_code == 200


def test_a_request_is_decided_once_by_the_member_or_their_proxy(world: World) -> None:
    w = world
    elder = w.ids["elder-a"]
    asked = _ask(w, "district", ["read_points"])
    # staff, an unrelated volunteer and the partner decide nothing for the elder
    for who, status in (("staff-a", 403), ("vol-b", 404), ("district", 403)):
        response = w.client.post(
            f"/v1/links/{asked['id']}/approve", headers=w.as_(who), json={"member_id": elder}
        )
        assert response.status_code == status, (who, response.text)
    approved = _ok(
        w.client.post(
            f"/v1/links/{asked['id']}/approve", headers=w.as_("family-a"), json={"member_id": elder}
        )
    )
    assert approved["member_id"] == elder and approved["status"] == "active"
    again = w.client.post(f"/v1/links/{asked['id']}/approve", headers=w.as_("elder-a"))
    assert again.status_code == 409
    # decided: only those related to the elder see it now
    assert w.client.get(f"/v1/links/{asked['id']}", headers=w.as_("vol-b")).status_code == 404
    assert w.client.get(f"/v1/links/{asked['id']}", headers=w.as_("elder-a")).status_code == 200
    assert w.client.get(f"/v1/links/{asked['id']}", headers=w.as_("b2-admin")).status_code == 404
    # the elder's links: the elder, the proxy, the organisation's staff; not other volunteers
    for who in ("elder-a", "family-a", "staff-a", "b1-admin"):
        listed = _ok(w.client.get(f"/v1/members/{elder}/links", headers=w.as_(who)))
        assert approved["id"] in {link["id"] for link in listed}, who
    assert w.client.get(f"/v1/members/{elder}/links", headers=w.as_("vol-b")).status_code == 404
    assert w.client.get(f"/v1/members/{elder}/links", headers=w.as_("district")).status_code == 404
    # staff revoke for the elder
    assert (
        w.client.post(f"/v1/links/{approved['id']}/revoke", headers=w.as_("staff-b")).status_code
        == 404
    )
    _ok(w.client.post(f"/v1/links/{approved['id']}/revoke", headers=w.as_("staff-a")))
    assert _points(w, "district", approved["handle"]).status_code == 403

    declined_request = _ask(w, "district", ["read_points"])
    declined = _ok(
        w.client.post(f"/v1/links/{declined_request['id']}/decline", headers=w.as_("vol-a"))
    )
    assert declined["status"] == "declined" and declined["handle"] is None
    seen = _ok(
        w.client.get(
            f"/v1/partner/link-requests/{declined_request['id']}", headers=w.as_("district")
        )
    )
    assert seen["status"] == "declined" and seen["handle"] is None
    assert (
        w.client.post(
            f"/v1/links/{declined_request['id']}/approve", headers=w.as_("vol-a")
        ).status_code
        == 409
    )


def test_a_request_nobody_decides_lapses(world: World) -> None:
    w = world
    asked = _ask(w, "school", ["read_points"])
    service: PartnerLinks = w.client.app.state.partners
    real_clock = service.clock
    try:
        service.clock = lambda: real_clock() + timedelta(hours=25)
        response = w.client.post(f"/v1/links/{asked['id']}/approve", headers=w.as_("vol-a"))
        assert response.status_code == 409 and "lapsed" in response.json()["detail"]
    finally:
        service.clock = real_clock
    _ok(w.client.post(f"/v1/links/{asked['id']}/approve", headers=w.as_("vol-a")))


def test_grants_uses_and_revocations_are_in_the_audit_trail(world: World) -> None:
    w = world
    before = w.client.app.state.audit.count()
    link = _linked(w, "district", "vol-b", ["read_points"])
    assert _points(w, "district", link["handle"]).status_code == 200
    assert _points(w, "school", link["handle"]).status_code == 404
    _ok(w.client.post(f"/v1/links/{link['id']}/revoke", headers=w.as_("vol-b")))
    events = [e for e in w.client.app.state.audit.all_events() if e.seq >= before]
    actions = [(e.actor, e.action, e.on_behalf, e.status) for e in events]
    district, school = f"partner:{w.ids['district']}", f"partner:{w.ids['school']}"
    assert (district, "POST /v1/partner/link-requests", None, 201) in actions
    assert (w.ids["vol-b-user"], "POST /v1/links/{link_id}/approve", None, 200) in actions
    assert (district, "GET /v1/partner/members/{handle}/points", w.ids["vol-b"], 200) in actions
    assert (school, "GET /v1/partner/members/{handle}/points", None, 404) in actions
    assert (w.ids["vol-b-user"], "POST /v1/links/{link_id}/revoke", None, 200) in actions
