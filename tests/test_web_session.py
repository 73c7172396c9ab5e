"""Browser logins (server-side sessions in an HttpOnly cookie), CSRF on every form, the CSP,
languages, and the pending volunteer's page — through the real app on both databases."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar.testing import TestClient

from api.app import create_app
from ledger.config import Settings
from ledger.log import Log
from tests.accounts_world import PASSWORD, World, build_world
from tests.web_helpers import browser_login, csrf_token, post_form, shown_forms


@pytest.fixture
def world(settings: Settings, log: Log) -> Iterator[World]:
    yield from build_world(settings, log)


def fresh_client(world: World, base_url: str = "http://testserver.local") -> TestClient[Any]:
    """The world's client as a new browser: no cookies yet."""
    world.client.cookies.clear()
    world.client.base_url = base_url  # type: ignore[assignment]
    return world.client


def test_form_login_opens_a_cookie_session(world: World) -> None:
    client = fresh_client(world)
    response = browser_login(client, "vol-a", PASSWORD)
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("tb_session="))
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie or "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # plain http here; see the TLS test
    home = client.get("/")
    assert home.status_code == 200
    assert 'href="/volunteer"' in home.text


def test_form_without_csrf_token_is_refused(world: World) -> None:
    client = fresh_client(world)
    client.get("/login")  # the CSRF cookie is set, but the form lacks the token
    refused = client.post(
        "/login", data={"username": "vol-a", "password": PASSWORD}, follow_redirects=False
    )
    assert refused.status_code == 403
    assert "tb_session" not in refused.headers.get("set-cookie", "")
    assert "text/html" in refused.headers["content-type"]
    forged = client.post(
        "/login",
        data={"username": "vol-a", "password": PASSWORD, "_csrf_token": "x" * 96},
        follow_redirects=False,
    )
    assert forged.status_code == 403
    assert browser_login(client, "vol-a", PASSWORD).status_code == 303


def test_session_cookie_is_secure_over_tls(world: World) -> None:
    client = fresh_client(world, base_url="https://testserver.local")
    response = browser_login(client, "vol-a", PASSWORD)
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("tb_session="))
    assert "Secure" in cookie


def test_cookie_calls_to_the_api_need_the_csrf_header(world: World) -> None:
    client = fresh_client(world)
    browser_login(client, "vol-a", PASSWORD)
    assert client.get("/v1/me").json()["user"]["username"] == "vol-a"
    enrol = {"enrolment_code": world.enrolment_code("vol-a")}
    refused = client.post("/v1/me/totp", json=enrol)
    assert refused.status_code == 403 and "form has expired" in refused.text
    token = csrf_token(client, "/account")
    allowed = client.post("/v1/me/totp", json=enrol, headers={"X-CSRFToken": token})
    assert allowed.status_code == 201, allowed.text
    # Bearer clients without the cookie are unchanged: no CSRF token needed.
    api = fresh_client(world)
    login = api.post("/v1/auth/login", json={"username": "vol-a", "password": PASSWORD})
    assert login.status_code == 200
    headers = {"Authorization": f"Bearer {login.json()['token']}"}
    assert api.post("/v1/auth/logout", headers=headers).status_code == 204


def test_logout_all_from_the_api_ends_the_browser_session(world: World) -> None:
    client = fresh_client(world)
    browser_login(client, "vol-a", PASSWORD)
    assert client.get("/", follow_redirects=False).status_code == 200
    session = client.cookies["tb_session"]
    client.cookies.clear()
    login = client.post("/v1/auth/login", json={"username": "vol-a", "password": PASSWORD})
    headers = {"Authorization": f"Bearer {login.json()['token']}"}
    assert client.post("/v1/auth/logout-all", headers=headers).status_code == 204
    client.cookies.set("tb_session", session)
    after = client.get("/", follow_redirects=False)
    assert after.status_code == 303
    assert after.headers["location"].startswith("/login")


def test_logout_revokes_the_session_not_just_the_cookie(world: World) -> None:
    client = fresh_client(world)
    response = browser_login(client, "vol-a", PASSWORD)
    token = client.cookies["tb_session"]
    assert world.accounts.authenticate(token).user_id == world.ids["vol-a-user"]
    assert post_form(client, "/logout", {}, page="/account").status_code == 303
    with pytest.raises(Exception, match="revoked"):
        world.accounts.authenticate(token)
    assert response.status_code == 303


def test_desk_sessions_are_shorter(world: World) -> None:
    now = datetime.now(UTC)
    staff = world.accounts.login("staff-a", PASSWORD, None, "t")
    volunteer = world.accounts.login("vol-a", PASSWORD, None, "t")
    assert staff.expires_at - now <= timedelta(hours=4, seconds=5)
    assert volunteer.expires_at - now >= timedelta(hours=11)


def test_login_refusal_in_the_page_language(world: World) -> None:
    client = fresh_client(world)
    zh = browser_login(client, "vol-a", "wrong password")
    assert zh.status_code == 401
    assert "用户名或密码错误" in zh.text
    assert '<html lang="zh-CN"' in zh.text
    client.cookies.set("tb_lang", "en")
    en = browser_login(client, "vol-a", "wrong password")
    assert "wrong username or password" in en.text
    assert '<html lang="en"' in en.text


def test_language_cookie_then_accept_language(world: World) -> None:
    client = fresh_client(world)
    assert '<html lang="zh-CN"' in client.get("/login").text
    english = client.get("/login", headers={"Accept-Language": "en-GB,en;q=0.9,zh;q=0.5"})
    assert '<html lang="en"' in english.text
    token = csrf_token(client)
    chosen = client.post(
        "/prefs",
        data={"lang": "zh-CN", "next": "/login", "_csrf_token": token},
        follow_redirects=False,
    )
    assert chosen.status_code == 303
    page = client.get("/login", headers={"Accept-Language": "en"})
    assert '<html lang="zh-CN"' in page.text  # the toggle wins over the browser
    assert "登录" in page.text


def test_api_problems_follow_the_callers_language(world: World) -> None:
    body = {"username": "vol-a", "password": "wrong password"}
    english = world.client.post("/v1/auth/login", json=body).json()
    assert english["detail"] == "wrong username or password"
    chinese = world.client.post(
        "/v1/auth/login", json=body, headers={"Accept-Language": "zh-CN"}
    ).json()
    assert chinese["detail"] == "用户名或密码错误"
    assert chinese["title"] == "登录信息有误"
    missing = world.client.get("/v1/nothing-here", headers={"Accept-Language": "zh"}).json()
    assert missing["title"] == "未找到"
    invalid = world.client.post(
        "/v1/auth/login", json={"username": 5}, headers={"Accept-Language": "zh"}
    ).json()
    assert invalid["status"] == 400
    assert invalid["title"] == "参数无效"


def test_a_new_volunteer_is_told_what_happens_next(world: World) -> None:
    """Signing up shows the same page whether the username was free or taken, and logging in
    waits for the organisation's approval (the login page says so)."""
    org = world.ids["org_a"]

    def sign_up(username: str) -> Any:
        client = fresh_client(world)
        token = csrf_token(client, "/register")
        return client.post(
            "/register",
            data={
                "organisation": f"b1/{org}",
                "name": "新志愿者",
                "phone": "13900009999",
                "username": username,
                "password": "a long enough password",
                "_csrf_token": token,
            },
            follow_redirects=False,
        )

    free, taken = sign_up("newcomer"), sign_up("vol-a")
    assert free.status_code == taken.status_code == 200
    assert "已收到报名" in free.text and "newcomer" in free.text
    tokens = re.compile(r"[0-9a-f]{40,}")  # each page's own CSRF token
    assert tokens.sub("", free.text).replace("newcomer", "vol-a") == tokens.sub("", taken.text)
    client = fresh_client(world)
    refused = browser_login(client, "newcomer", "a long enough password")
    assert refused.status_code == 401 and "审核通过之前" in refused.text
    approved = browser_login(fresh_client(world), "vol-a", PASSWORD)
    assert approved.status_code == 303


def test_a_refused_sign_up_keeps_what_was_typed_but_the_password(world: World) -> None:
    """A sign-up on a phone with one field wrong comes back with the organisation chosen, the
    name, phone and username as typed and the wrong field marked — never the password, which is
    typed again; with the phone corrected, the same form goes through."""
    client = fresh_client(world)
    offered = re.findall(r'<option value="([^"]+)"', client.get("/register").text)
    typed = {
        "organisation": offered[-1],  # not the first offered
        "name": "张小明",
        "phone": "025-abc",
        "username": "xiaoming",
        "password": "a secret passphrase",
    }
    assert len(offered) > 1
    refused = post_form(client, "/register", typed, page="/register")
    assert refused.status_code == 400 and 'id="error"' in refused.text
    assert shown_forms(refused.text, "/register") == [{**typed, "password": ""}]
    assert typed["password"] not in refused.text
    assert re.search(r'<input id="phone"[^>]*aria-invalid="true"', refused.text)
    assert not re.search(r'<input id="name"[^>]*aria-invalid', refused.text)
    done = post_form(client, "/register", {**typed, "phone": "139 8888 0000"}, page="/register")
    assert done.status_code == 200 and "已收到报名" in done.text


def test_the_sign_up_hint_goes_with_every_wrong_login_and_tells_nothing(world: World) -> None:
    """A sign-up awaiting approval, a name nobody has and a wrong password of an active account
    get the same page, hint included, worded for each of them; an answer given only after the
    right password (here a one-time code for staff with no second factor) has no such hint."""
    tokens = re.compile(r"[0-9a-f]{40,}")  # each page's own CSRF token
    hint = {
        "zh-CN": "请检查用户名和密码，再试一次。刚报名？机构审核通过之前，即使密码正确",
        "en": "Check the username and password and try again. Signed up recently?",
    }
    for language, words in hint.items():
        pages = []
        for username, password in (
            ("pending-a", PASSWORD),
            ("nobody-here", PASSWORD),
            ("vol-a", "wrong password"),
        ):
            client = fresh_client(world)
            client.cookies.set("tb_lang", language)
            page = browser_login(client, username, password)
            assert page.status_code == 401 and words in page.text, (username, page.text)
            pages.append(tokens.sub("", page.text).replace(username, "someone"))
        assert pages[0] == pages[1] == pages[2]
        client = fresh_client(world)
        client.cookies.set("tb_lang", language)
        staff = post_form(
            client, "/login", {"username": "staff-a", "password": PASSWORD, "totp": "123456"}
        )
        assert staff.status_code == 400 and 'class="hint"' not in staff.text
        assert browser_login(fresh_client(world), "vol-a", PASSWORD).status_code == 303


def test_open_redirects_are_refused(world: World) -> None:
    client = fresh_client(world)
    token = csrf_token(client)
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        response = client.post(
            "/login",
            data={"username": "vol-a", "password": PASSWORD, "next": target, "_csrf_token": token},
            follow_redirects=False,
        )
        assert response.headers["location"] == "/", target


def test_every_response_has_a_strict_csp(world: World) -> None:
    for path in ("/login", "/schema", "/v1/log/checkpoint", "/static/app.css"):
        response = world.client.get(path)
        policy = response.headers["content-security-policy"]
        assert "default-src 'self'" in policy
        assert "script-src 'self';" in policy
        assert "unsafe-inline" not in policy.split("style-src")[0]
    schema = world.client.get("/schema").text
    assert "http" not in schema.replace('content="width', "")  # nothing from a CDN


def test_browser_not_found_is_a_page_in_its_language(world: World) -> None:
    page = world.client.get("/no-such-page", headers={"Accept": "text/html"})
    assert page.status_code == 404
    assert "没有这个页面" in page.text
    api = world.client.get("/v1/no-such-thing")
    assert api.headers["content-type"] == "application/problem+json"


def test_settings_are_used(world: World, settings: Settings) -> None:
    assert (settings.data_dir / "web.key").exists()
    assert create_app(settings) is not None
