"""Searching members by phone or ID number is limited per login (30 in 10 minutes by
default), counted in the database, so a staff login or a stolen session cannot run through
every number: the API answers 429 with Retry-After in the caller's language, the desk shows a
page saying when to try again, each refusal is in the audit trail, and another login searches
on. The accounts service's clock is moved on instead of waiting out the window."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from accounts.base import SecurityPolicy
from ledger.config import ConfigError, Settings
from ledger.log import Log
from tests.accounts_world import PASSWORD, World, build_world
from tests.web_helpers import browser_login, post_form

FOUND = "13800001111"  # vol-a, of org A
SEARCH = f"/v1/members?search={FOUND}"


@pytest.fixture
def world(settings: Settings, log: Log) -> Iterator[World]:
    for w in build_world(settings, log):
        _at(w, datetime.now(UTC))
        yield w


def _at(w: World, moment: datetime) -> None:
    """The accounts service's clock stands at ``moment``."""
    w.accounts.clock = lambda: moment


def _later(w: World, seconds: float) -> None:
    _at(w, w.accounts.clock() + timedelta(seconds=seconds))


def _search(w: World, who: str, **headers: str) -> Any:
    return w.client.get(SEARCH, headers={**w.as_(who), **headers})


def _refusals(w: World, who: str, action: str) -> list[int]:
    events = w.client.app.state.audit.events(bank_id=None, action=action, limit=1000)
    return [e.status for e in events if e.actor == w.ids[who]]


def test_a_login_searches_thirty_times_in_ten_minutes_then_waits(world: World) -> None:
    w = world
    for _ in range(30):
        found = _search(w, "staff-a")
        assert found.status_code == 200, found.text
        assert [m["id"] for m in found.json()] == [w.ids["vol-a"]]
    _later(w, 120)
    refused = _search(w, "staff-a")
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["retry-after"] == "480"  # the window began with the first search
    body = refused.json()
    assert body["type"] == "urn:timebank:problem:search-throttled" and body["field"] == "search"
    assert body["detail"] == "too many searches by phone or ID number; try again in 480 seconds"
    chinese = _search(w, "staff-a", **{"Accept-Language": "zh-CN"}).json()
    assert chinese["title"] == "查询次数太多"
    assert chinese["detail"] == "按手机号或身份证号查询的次数太多，请 480 秒后再试"
    assert _refusals(w, "staff-a", "GET /v1/members") == [200] * 30 + [429, 429]
    # another login of the same organisation is not held back, nor is a list without a search
    assert _search(w, "admin-a").status_code == 200
    assert w.client.get("/v1/members", headers=w.as_("staff-a")).status_code == 200
    _later(w, 480)
    assert _search(w, "staff-a").status_code == 200


def test_the_desk_shares_the_count_and_says_when_to_try_again(world: World) -> None:
    w = world
    w.accounts.policy = replace(w.accounts.policy, member_searches_per_window=2)
    for _ in range(2):
        assert _search(w, "staff-a").status_code == 200
    w.client.cookies.clear()
    assert browser_login(w.client, "staff-a", PASSWORD).status_code == 303
    page = w.client.get(f"/desk/people?search={FOUND}")
    assert page.status_code == 429 and page.headers["retry-after"] == "600"
    assert "按手机号或身份证号查询的次数太多，请 600 秒后再试" in page.text
    assert 'role="alert"' in page.text
    assert _refusals(w, "staff-a", "GET /desk/people") == [429]
    _later(w, 600)
    page = w.client.get(f"/desk/people?search={FOUND}")
    assert page.status_code == 200 and 'role="alert"' not in page.text


def test_the_limit_is_a_setting() -> None:
    policy = SecurityPolicy.from_env(
        {"TIMEBANK_MEMBER_SEARCHES": "100", "TIMEBANK_MEMBER_SEARCH_WINDOW_SECONDS": "3600"}
    )
    assert (policy.member_searches_per_window, policy.member_search_window_seconds) == (100, 3600)
    default = SecurityPolicy.from_env({})
    assert (default.member_searches_per_window, default.member_search_window_seconds) == (30, 600)
    for name, value in (
        ("TIMEBANK_MEMBER_SEARCHES", "0"),
        ("TIMEBANK_MEMBER_SEARCHES", "thirty"),
        ("TIMEBANK_MEMBER_SEARCH_WINDOW_SECONDS", "86401"),
    ):
        with pytest.raises(ConfigError, match=name):
            SecurityPolicy.from_env({name: value})


ELSEWHERE = "13800004444"  # vol-b's, of org B


def _register(w: World, who: str, phone: str | None, **headers: str) -> Any:
    personal: dict[str, str] = {"name": "吴桂兰"}
    if phone is not None:
        personal["phone"] = phone
    return w.client.post(
        "/v1/members",
        headers={**w.as_(who), **headers},
        json={"org_id": w.ids["org_a"], "is_elder": True, "personal": personal},
    )


def test_a_registration_refused_for_a_number_on_file_is_a_search(world: World) -> None:
    """A 409 for a number on file tells staff it is in the bank: each one counts against the
    login's search limit, with the searches; past it a registration with a number is held
    back (429) whether the number is on file or not, else the outcome would tell. The audit
    trail has each attempt and its outcome; another login registers on, and a registration
    that goes through is not counted."""
    w = world
    w.accounts.policy = replace(w.accounts.policy, member_searches_per_window=3)
    for number in ("13700000001", "13700000002", "13700000003", "13700000004"):
        assert _register(w, "admin-a", number).status_code == 201  # not counted
    assert _search(w, "staff-a").status_code == 200
    here = _register(w, "staff-a", FOUND)
    assert here.status_code == 409 and here.json()["field"] == "phone"
    elsewhere = _register(w, "staff-a", ELSEWHERE)
    assert elsewhere.status_code == 409 and elsewhere.json()["field"] == "phone"
    _later(w, 60)
    refused = _register(w, "staff-a", ELSEWHERE, **{"Accept-Language": "zh-CN"})
    assert refused.status_code == 429 and refused.headers["retry-after"] == "540"
    assert refused.json()["type"] == "urn:timebank:problem:search-throttled"
    assert refused.json()["detail"] == "按手机号或身份证号查询的次数太多，请 540 秒后再试"
    assert _register(w, "staff-a", "13700000005").status_code == 429  # a free number too
    assert _search(w, "staff-a").status_code == 429  # one limit
    assert _register(w, "staff-a", None).status_code == 201  # no number: nothing to tell
    assert _register(w, "admin-a", "13700000006").status_code == 201
    assert _register(w, "admin-a", ELSEWHERE).status_code == 409
    assert _search(w, "admin-a").status_code == 200  # 4 registrations and a 409: 2 left
    assert _refusals(w, "staff-a", "POST /v1/members") == [409, 409, 429, 429, 201]
    _later(w, 540)
    assert _register(w, "staff-a", "13700000005").status_code == 201


def test_approving_a_number_on_file_is_a_search(world: World) -> None:
    """Anyone may sign up with any number (taken as pending); staff approving it meet the
    number on file (409): that counts as a search too."""
    w = world
    w.accounts.policy = replace(w.accounts.policy, member_searches_per_window=1)
    from accounts.members import PersonalInput

    pending = [
        w.accounts.self_register(
            "b1", w.ids["org_a"], f"signup-{n}", PASSWORD, PersonalInput("新人", ELSEWHERE)
        )
        for n in range(2)
    ]
    ids = [p.member.id for p in pending if p is not None]
    approve = [f"/v1/members/{i}/approve" for i in ids]
    assert w.client.post(approve[0], headers=w.as_("staff-a")).status_code == 409
    assert w.client.post(approve[1], headers=w.as_("staff-a")).status_code == 429
    assert _search(w, "staff-a").status_code == 429
    assert w.client.post(approve[1], headers=w.as_("admin-a")).status_code == 409
    assert _refusals(w, "staff-a", "POST /v1/members/") == [409, 429]


def test_the_desk_registration_shares_the_count(world: World) -> None:
    w = world
    w.accounts.policy = replace(w.accounts.policy, member_searches_per_window=2)
    w.client.cookies.clear()
    assert browser_login(w.client, "staff-a", PASSWORD).status_code == 303
    w.client.cookies.set("tb_lang", "zh-CN")

    def register(phone: str) -> Any:
        return post_form(
            w.client,
            "/desk/people/new",
            {"org_id": w.ids["org_a"], "kind": "elder", "name": "吴桂兰", "phone": phone},
            "/desk/people/new",
        )

    assert register("13700000001").status_code == 303  # not counted
    assert register(FOUND).status_code == 409
    assert register(ELSEWHERE).status_code == 409
    page = register(ELSEWHERE)
    assert page.status_code == 429 and page.headers["retry-after"] == "600"
    assert "按手机号或身份证号查询的次数太多，请 600 秒后再试" in page.text
    assert register("13700000002").status_code == 429
    assert _refusals(w, "staff-a", "POST /desk/people/new") == [303, 409, 409, 429, 429]
    cookies = dict(w.client.cookies)
    w.client.cookies.clear()
    assert _register(w, "admin-a", "13700000003").status_code == 201  # another login
    w.client.cookies.update(cookies)
    _later(w, 600)
    assert register("13700000002").status_code == 303
