"""Points and star levels (issue 13, item 2): verified service counted from the ledger (deposits,
less their reversals; gifts and spending aside), shown in the bank's unit and against its star
thresholds, both set by policy and written in the log; the partner API and the volunteer's
"my hours" page show them."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from care.model import Policy, star_thresholds
from partners.points import standing
from tests.accounts_world import PASSWORD, World
from tests.conftest import BACKENDS
from tests.partners_world import partners_world
from tests.web_helpers import browser_login


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    yield from partners_world(request, tmp_path_factory)


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def test_star_levels_follow_the_thresholds() -> None:
    on = Policy(star_levels=True)
    assert standing(on, 100 * 60 - 1).star_level == 0
    assert standing(on, 100 * 60 - 1).next_star_hours == 100
    assert (standing(on, 100 * 60).star_level, standing(on, 100 * 60).star_name) == (1, "一星")
    assert standing(on, 300 * 60).star_level == 2 and standing(on, 300 * 60).next_star_hours == 600
    top = standing(on, 1500 * 60)
    assert (top.star_level, top.star_name, top.next_star_hours) == (5, "五星", None)
    off = standing(Policy(), 1500 * 60)
    assert (off.star_level, off.star_name, off.next_star_hours) == (None, None, None)
    assert standing(Policy(star_levels=True, star_hours="1,2,3,4,5"), 150).star_level == 2


def test_points_are_shown_in_the_banks_unit() -> None:
    assert standing(Policy(points_unit="minutes"), 90).points == 90
    assert str(standing(Policy(points_unit="hours"), 90).points) == "1.50"
    assert str(standing(Policy(points_unit="hours"), 100).points) == "1.66"  # rounded down
    assert standing(Policy(points_unit="points", points_per_hour=10), 90).points == 15
    assert standing(Policy(points_unit="points", points_per_hour=10), 5).points == 0


def test_thresholds_are_five_rising_numbers() -> None:
    assert star_thresholds("100,300,600,1000,1500") == (100, 300, 600, 1000, 1500)
    for bad in ("100,300,600,1000", "100,300,300,1000,1500", "0,1,2,3,4", "a,b,c,d,e", ""):
        with pytest.raises(ValueError, match="star_hours"):
            star_thresholds(bad)


def test_the_policy_sets_points_and_stars_and_the_log_says_so(world: World) -> None:
    w = world
    for body, field in (
        ({"star_hours": "100,50,600,1000,1500"}, "star_hours"),
        ({"points_unit": "coins"}, "points_unit"),
        ({"points_per_hour": 0}, "points_per_hour"),
        ({"star_levels": "yes"}, "star_levels"),
    ):
        refused = w.client.post("/v1/policy", headers=w.as_("b1-admin"), json=body)
        assert refused.status_code == 400 and refused.json()["field"] == field, refused.text
    assert (
        w.client.post(
            "/v1/policy", headers=w.as_("staff-b"), json={"star_levels": True}
        ).status_code
        == 403
    )
    policy = _ok(
        w.client.post(
            "/v1/policy",
            headers=w.as_("b1-admin"),
            json={"star_levels": True, "star_hours": "1,2,3,4,5", "points_unit": "hours"},
        )
    )
    assert (policy["star_levels"], policy["star_hours"], policy["points_unit"]) == (
        True,
        "1,2,3,4,5",
        "hours",
    )
    entry = w.log.entry(policy["ledger_seq"])
    assert entry is not None and entry.request.kind == "policy"
    assert entry.request.body["star_hours"] == "1,2,3,4,5" and entry.request.body["star_levels"]


def _linked_handle(w: World) -> str:
    asked = _ok(
        w.client.post(
            "/v1/partner/link-requests",
            headers=w.as_("district"),
            json={"scopes": ["read_points"], "valid_days": 30},
        ),
        201,
    )
    approved = _ok(w.client.post(f"/v1/links/{asked['id']}/approve", headers=w.as_("vol-b")))
    return str(approved["handle"])


def test_the_partner_sees_verified_service_not_the_balance(world: World) -> None:
    """vol-b was verified for 2 × 30 minutes and donated 20: 40 to spend, 60 of service."""
    w = world
    _ok(
        w.client.post(
            "/v1/policy",
            headers=w.as_("b1-admin"),
            json={"star_levels": True, "star_hours": "1,2,3,4,5", "points_unit": "points"},
        )
    )
    handle = _linked_handle(w)
    shown = _ok(w.client.get(f"/v1/partner/members/{handle}/points", headers=w.as_("district")))
    assert shown["available_minutes"] == 40 and shown["verified_minutes"] == 60
    assert (shown["points"], shown["points_unit"]) == (10, "points")  # 10 points an hour
    assert (shown["star_level"], shown["star_name"], shown["next_star_hours"]) == (1, "一星", 2)

    # a reversed deposit is service that no longer counts
    history = _ok(w.client.get(f"/v1/members/{w.ids['vol-b']}/history", headers=w.as_("vol-b")))
    deposit = next(item for item in history if item["kind"] == "deposit")
    reversal = _ok(
        w.client.post(
            "/v1/reversals",
            headers=w.as_("b1-admin"),
            json={"seq": deposit["seq"], "reason": "entered twice", "reason_code": "duplicate"},
        ),
        201,
    )
    _ok(
        w.client.post(
            f"/v1/reversals/{reversal['id']}/approve",
            headers={**w.as_("b1-admin2"), "Idempotency-Key": secrets.token_hex(8)},
        )
    )
    shown = _ok(w.client.get(f"/v1/partner/members/{handle}/points", headers=w.as_("district")))
    assert shown["available_minutes"] == 10 and shown["verified_minutes"] == 30
    assert (shown["points"], shown["star_level"], shown["star_name"]) == (5, 0, None)

    _ok(w.client.post("/v1/policy", headers=w.as_("b1-admin"), json={"star_levels": False}))
    shown = _ok(w.client.get(f"/v1/partner/members/{handle}/points", headers=w.as_("district")))
    assert shown["star_level"] is None and shown["verified_minutes"] == 30


def test_my_hours_shows_the_star_level_when_the_bank_turns_it_on(world: World) -> None:
    w = world
    w.client.cookies.clear()
    _ok(
        w.client.post(
            "/v1/policy",
            headers=w.as_("b1-admin"),
            json={"star_levels": False, "star_hours": "1,2,3,4,5"},
        )
    )
    assert browser_login(w.client, "family-a", PASSWORD).status_code == 303
    page = w.client.get("/volunteer/hours")
    assert page.status_code == 200 and 'id="star"' not in page.text
    w.client.cookies.clear()
    _ok(w.client.post("/v1/policy", headers=w.as_("b1-admin"), json={"star_levels": True}))
    assert browser_login(w.client, "family-a", PASSWORD).status_code == 303
    page = w.client.get("/volunteer/hours")
    assert page.status_code == 200 and 'id="star"' in page.text and "尚未达到星级" in page.text
    w.client.cookies.clear()
