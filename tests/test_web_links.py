"""The consent pages: a person logs in, approves a partner's request at ``/links/{id}`` (a
family proxy for the elder), sees the link on ``/links`` and revokes it there; forms carry
CSRF tokens and work without JavaScript; both pages pass axe in both languages."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient
from playwright.sync_api import Browser

from demo.bank import DEMO_LOGINS
from ledger.entry import EntryRequest, Posting
from tests.accounts_world import PASSWORD, World
from tests.partners_world import partners_world
from tests.web_browser import (
    DemoServer,
    Watch,
    axe_violations,
    launch_chromium,
    login,
    phone_context,
    start_demo_server,
)
from tests.web_helpers import browser_login, post_form

PASSWORDS = {d.username: d.password for d in DEMO_LOGINS}


@pytest.fixture(scope="module", params=["sqlite"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    yield from partners_world(request, tmp_path_factory)


def _ask(client: TestClient[Any], token: str) -> str:
    response = client.post(
        "/v1/partner/link-requests",
        headers={"Authorization": f"Bearer {token}"},
        json={"scopes": ["read_points", "read_statement"], "valid_days": 30},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _points(w: World, handle: str) -> int:
    return int(
        w.client.get(f"/v1/partner/members/{handle}/points", headers=w.as_("district")).status_code
    )


def test_a_proxy_approves_for_the_elder_and_revokes_on_the_page(world: World) -> None:
    w = world
    w.client.cookies.clear()  # a browser session's cookie makes every POST need a CSRF token
    link = _ask(w.client, w.tokens["district"])
    assert w.client.get(f"/links/{link}", follow_redirects=False).status_code == 303  # log in
    assert browser_login(w.client, "family-a", PASSWORD).status_code == 303
    page = w.client.get(f"/links/{link}")
    assert page.status_code == 200 and "district platform" in page.text
    assert (
        "查看您的时间余额" in page.text and "查看您已核实服务时长的明细" in page.text
    )  # zh-CN default
    assert f'<option value="{w.ids["elder-a"]}">' in page.text  # the proxy may choose the elder
    # without the CSRF token the form is refused and nothing is decided
    forged = w.client.post(
        f"/links/{link}/approve", data={"member_id": w.ids["elder-a"]}, follow_redirects=False
    )
    assert forged.status_code == 403
    assert (
        w.client.get(f"/v1/links/{link}", headers=w.as_("family-a")).json()["status"] == "pending"
    )
    done = post_form(
        w.client, f"/links/{link}/approve", {"member_id": w.ids["elder-a"]}, f"/links/{link}"
    )
    assert done.status_code == 303 and done.headers["location"] == "/links"
    approved = w.client.get(f"/v1/links/{link}", headers=w.as_("family-a")).json()
    assert approved["status"] == "active" and approved["member_id"] == w.ids["elder-a"]
    assert _points(w, approved["handle"]) == 200
    listing = w.client.get("/links")
    assert "district platform" in listing.text and f"/links/{link}/revoke" in listing.text
    # the button says what the page promises: 撤销立即生效 … 撤销授权, not 吊销 (a key's word)
    assert "撤销立即生效" in listing.text and ">撤销授权</button>" in listing.text
    revoked = post_form(w.client, f"/links/{link}/revoke", {}, "/links")
    assert revoked.status_code == 303
    assert _points(w, approved["handle"]) == 403
    assert f"/links/{link}/revoke" not in w.client.get("/links").text


def test_staff_see_the_request_but_cannot_decide_it(world: World) -> None:
    w = world
    w.client.cookies.clear()  # a browser session's cookie makes every POST need a CSRF token
    link = _ask(w.client, w.tokens["district"])
    assert browser_login(w.client, "staff-a", PASSWORD).status_code == 303
    page = w.client.get(f"/links/{link}")
    assert page.status_code == 200 and "只有成员本人或老人的家属代理人可以决定此请求" in page.text
    refused = post_form(w.client, f"/links/{link}/approve", {}, f"/links/{link}")
    assert refused.status_code == 403 and 'role="alert"' in refused.text
    assert browser_login(w.client, "vol-a", PASSWORD).status_code == 303
    assert post_form(w.client, f"/links/{link}/approve", {}, f"/links/{link}").status_code == 303
    assert w.client.get(f"/v1/links/{link}", headers=w.as_("vol-a")).json()["status"] == "active"


def test_a_proxy_confirms_and_declines_exchanges_on_the_page(world: World) -> None:
    w = world
    w.client.cookies.clear()  # a browser session's cookie makes every POST need a CSRF token
    admin = w.accounts.principal_for_user(w.ids["b1-admin"])
    _, meals = w.accounts.create_partner_key(admin, "助餐服务商", ["request_exchange"])
    headers = {"Authorization": f"Bearer {meals}"}
    asked = w.client.post(
        "/v1/partner/link-requests",
        headers=headers,
        json={"scopes": ["request_exchange"], "valid_days": 30},
    ).json()
    handle = w.client.post(
        f"/v1/links/{asked['id']}/approve",
        headers=w.as_("family-a"),
        json={"member_id": w.ids["elder-a"]},
    ).json()["handle"]
    account = w.accounts.member(w.ids["elder-a"]).ledger_account
    w.log.append(
        EntryRequest(
            "deposit",
            "test-fund:web-exchange",
            (Posting(f"{account.split(':')[0]}:issuance", -5), Posting(account, 5)),
        )
    )
    ids = []
    for reference, description in (("web-1", "午餐送餐"), ("web-2", "助浴")):
        made = w.client.post(
            "/v1/partner/exchanges",
            headers=headers,
            json={
                "handle": handle,
                "minutes": 5,
                "reference": reference,
                "description": description,
            },
        )
        assert made.status_code == 201, made.text
        ids.append(made.json()["id"])
    assert w.client.get("/exchanges", follow_redirects=False).status_code == 303  # log in
    assert browser_login(w.client, "family-a", PASSWORD).status_code == 303
    page = w.client.get("/exchanges")
    assert page.status_code == 200 and "午餐送餐" in page.text and "确认并支付" in page.text
    # without the CSRF token nothing is confirmed
    forged = w.client.post(f"/exchanges/{ids[0]}/confirm", follow_redirects=False)
    assert forged.status_code == 403
    done = post_form(w.client, f"/exchanges/{ids[0]}/confirm", {}, "/exchanges")
    assert done.status_code == 303 and done.headers["location"] == "/exchanges"
    declined = post_form(w.client, f"/exchanges/{ids[1]}/decline", {}, "/exchanges")
    assert declined.status_code == 303
    states = [
        w.client.get(f"/v1/exchanges/{i}", headers=w.as_("family-a")).json()["status"] for i in ids
    ]
    assert states == ["confirmed", "declined"]
    assert w.log.balances([account])[account] == 0
    # confirming again is refused on the page, with the reason
    again = post_form(w.client, f"/exchanges/{ids[0]}/confirm", {}, "/exchanges")
    assert again.status_code == 409 and 'role="alert"' in again.text
    # another member sees none of them, and cannot confirm one
    assert browser_login(w.client, "vol-a", PASSWORD).status_code == 303
    assert "午餐送餐" not in w.client.get("/exchanges").text


# ---------------------------------------------------------------- in a browser


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    yield from start_demo_server(tmp_path_factory.mktemp("links-demo"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch_chromium()


def _http(server: DemoServer, path: str, token: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        server.url + path,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_consent_pages_pass_axe(server: DemoServer, browser: Browser, lang: str) -> None:
    admin = _http(
        server, "/v1/auth/login", "", {"username": "admin", "password": PASSWORDS["admin"]}
    )["token"]
    key = _http(
        server,
        "/v1/partner-keys",
        admin,
        {"name": "鼓楼区智慧养老服务平台", "scopes": ["read_points", "request_exchange"]},
    )["key"]
    link = _http(
        server, "/v1/partner/link-requests", key, {"scopes": ["read_points", "request_exchange"]}
    )["id"]
    context = phone_context(browser, server, lang)
    page = context.new_page()
    watch = Watch(server.url)
    watch.attach(page)
    login(page, "family", PASSWORDS["family"])
    page.goto(f"/links/{link}")
    assert "鼓楼区智慧养老服务平台" in page.content()
    assert axe_violations(page) == []
    page.click(f"form[action='/links/{link}/approve'] button[type=submit]")
    page.wait_for_load_state()
    assert page.url.endswith("/links")
    assert axe_violations(page) == []
    with urllib.request.urlopen(
        urllib.request.Request(
            f"{server.url}/v1/partner/link-requests/{link}",
            headers={"Authorization": f"Bearer {key}"},
        ),
        timeout=30,
    ) as response:
        handle = json.loads(response.read())["handle"]
    body = {"handle": handle, "minutes": 10, "reference": f"axe-{lang}", "description": "午餐送餐"}
    exchange = _http(server, "/v1/partner/exchanges", key, body)["id"]
    page.goto("/exchanges")
    assert "午餐送餐" in page.content()
    assert axe_violations(page) == []
    # the family member linked for himself and has no minutes: refused, with the reason
    page.click(f"form[action='/exchanges/{exchange}/confirm'] button[type=submit]")
    page.wait_for_load_state()
    assert page.locator("[role=alert]").count() == 1
    assert axe_violations(page) == []
    page.click(f"form[action='/exchanges/{exchange}/decline'] button[type=submit]")
    page.wait_for_load_state()
    assert page.url.endswith("/exchanges")
    assert f"/exchanges/{exchange}/confirm" not in page.content()
    page.goto("/links")
    page.click(f"form[action='/links/{link}/revoke'] button[type=submit]")
    page.wait_for_load_state()
    assert f"/links/{link}/revoke" not in page.content()
    assert watch.foreign == [] and watch.csp == []
    context.close()
