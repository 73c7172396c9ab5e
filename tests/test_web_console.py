"""The bank administrators' console and the auditor's page in a real browser, zh-CN and en:
an admin changes a weight and grants pool minutes (each change shows its ledger entry); a
reversal asked for by one admin is approved by another (the page offers the asker no approve
button, and the service refuses a forced one); volunteers and staff opening the console or
the audit trail get the API's answer, next to the admin and the auditor succeeding; the
auditor filters events, exports them and sees the recorded ``timebank audit verify``; axe-core
finds nothing on any page."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from demo.bank import DEMO_LOGINS
from tests.web_browser import (
    DemoServer,
    Watch,
    axe_violations,
    launch_chromium,
    login,
    phone_context,
    start_demo_server,
)

PASSWORDS = {d.username: d.password for d in DEMO_LOGINS}
DESK = {"width": 1280, "height": 900}
CONSOLE_PAGES = [
    "/console",
    "/console/catalogue",
    "/console/policy",
    "/console/pool",
    "/console/reversals",
    "/console/partners",
    "/console/orgs",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    yield from start_demo_server(tmp_path_factory.mktemp("console-demo"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch_chromium()


@pytest.fixture(scope="module")
def second_admin(server: DemoServer, browser: Browser) -> tuple[str, str]:
    made = server.cli(
        "admin", "create-user", "--bank", "demo", "--username", "admin-two", "--role", "bank_admin"
    )
    assert made.returncode == 0, made.stderr
    password = re.search(r"one-time password[^:]*: (\S+)", made.stdout)
    assert password, made.stdout
    one_time, own = password.group(1), "admin two passphrase"
    # The first login with the one-time password lands on My account, which asks for a password
    # of one's own before anything else.
    page = open_page(browser, server, "en", "admin-two", one_time)
    assert page.url.endswith("/account"), page.url
    assert page.locator("p.notice").count() == 1
    page.goto("/console")
    assert page.locator("#pool-balance").count() == 0  # no role yet
    page.goto("/account")
    page.fill("#old_password", one_time)
    page.fill("#new_password", own)
    page.click("form[action='/account/password'] button[type=submit]")
    expect(page.locator("p.ok")).to_have_count(1)  # the answer page, once it has loaded
    page.goto("/console")
    assert page.locator("#pool-balance").count() == 1
    page.context.close()
    return "admin-two", own


def open_page(browser: Browser, server: DemoServer, lang: str, who: str, password: str) -> Page:
    context = phone_context(browser, server, lang)
    page = context.new_page()
    page.set_viewport_size(DESK)
    login(page, who, password)
    return page


def api(server: DemoServer, method: str, path: str, token: str | None, lang: str) -> Any:
    request = urllib.request.Request(server.url + path, method=method)
    request.add_header("accept-language", lang)
    if token:
        request.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def token_of(server: DemoServer, username: str, password: str) -> str:
    body = json.dumps({"username": username, "password": password}).encode()
    request = urllib.request.Request(
        server.url + "/v1/auth/login", data=body, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return str(json.loads(answer.read())["token"])


def pool_minutes(page: Page) -> int:
    return int(re.sub(r"\D", "", page.locator("#pool-balance").inner_text()))


@pytest.mark.parametrize(("lang", "weight"), [("zh-CN", 1300), ("en", 1400)])
def test_admin_changes_a_weight_and_grants_pool_minutes(
    server: DemoServer, browser: Browser, lang: str, weight: int
) -> None:
    page = open_page(browser, server, lang, "admin", PASSWORDS["admin"])
    watch = Watch(server.url)
    watch.attach(page)
    assert page.url.endswith("/console")  # the admin lands on the console at /
    page.goto("/console/catalogue")
    row = page.locator("table tbody tr").first
    code = str(row.get_attribute("id")).removeprefix("type-")
    row.locator("input[name=weight_permille]").fill(str(weight))
    row.locator("button[type=submit]").click()
    made = page.locator("#made").inner_text()
    assert f'"id":"service:demo:{code}:' in made
    assert f'"weight":{weight}' in made
    admin = token_of(server, "admin", PASSWORDS["admin"])
    status, types = api(server, "GET", "/v1/catalogue?all=true", admin, lang)
    assert status == 200
    assert {t["code"]: t["weight_permille"] for t in types}[code] == weight

    page.goto("/console/pool")
    before = pool_minutes(page)
    assert api(server, "GET", "/v1/pool", admin, lang)[1]["minutes"] == before
    page.fill("#minutes", "7")
    page.fill("#reason", "priority elder, winter heating")
    page.click("#grant-form button[type=submit]")
    made = page.locator("#made").inner_text()
    assert '"kind":"grant"' in made
    assert '"minutes":-7' in made
    assert pool_minutes(page) == before - 7

    found = {}
    for path in CONSOLE_PAGES:
        page.goto(path)
        violations = axe_violations(page)
        if violations:
            found[path] = violations
    assert found == {}, json.dumps(found, ensure_ascii=False, indent=1)
    assert watch.foreign == [] and watch.csp == []
    page.context.close()


def grant_seq(server: DemoServer, admin: str, key: str) -> int:
    """A fresh grant to reverse, made through the API by the first admin."""
    status, members = api(server, "GET", "/v1/members?limit=200", admin, "en")
    assert status == 200
    for member in members:
        if not member.get("is_elder"):
            continue
        body = json.dumps(
            {"elder_id": member["id"], "minutes": 3, "reason": "to be reversed"}
        ).encode()
        request = urllib.request.Request(
            server.url + "/v1/grants",
            data=body,
            headers={
                "content-type": "application/json",
                "authorization": f"Bearer {admin}",
                "idempotency-key": f"reverse-me-{key}-{member['id']}",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return int(json.loads(answer.read())["seq"])
        except urllib.error.HTTPError:
            continue  # not a priority elder
    raise AssertionError("no priority elder in the demo")


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_a_reversal_needs_a_second_admin(
    server: DemoServer, browser: Browser, second_admin: tuple[str, str], lang: str
) -> None:
    seq = grant_seq(server, token_of(server, "admin", PASSWORDS["admin"]), lang)
    first = open_page(browser, server, lang, "admin", PASSWORDS["admin"])
    first.goto("/console/reversals")
    first.fill("#seq", str(seq))
    first.fill("#reason", "granted twice by mistake")
    with first.expect_navigation():  # the page after the post, not the form still showing
        first.click("#reversal-form button[type=submit]")
    assert first.locator("#error").count() == 0
    card = first.locator(f".card[data-seq='{seq}']")
    card.wait_for()
    assert card.locator("button.approve").count() == 0  # refused on the page, before sending
    assert card.locator(".self-note").count() == 1
    assert axe_violations(first) == []
    # Forced past the page, the service refuses the same administrator.
    reversal_id = str(card.get_attribute("id")).removeprefix("reversal-")
    token = first.locator('meta[name="csrf-token"]').get_attribute("content")
    forced = first.request.post(
        f"/console/reversals/{reversal_id}/approve", form={"_csrf_token": str(token)}
    )
    assert forced.status == 422  # SelfVerification, as POST /v1/reversals/{id}/approve
    assert ("另一位管理员" if lang == "zh-CN" else "second administrator") in forced.text()
    first.context.close()

    second = open_page(browser, server, lang, *second_admin)
    second.goto("/console/reversals")
    card = second.locator(f"#reversal-{reversal_id}")
    card.locator("button.approve").click()
    made = second.locator("#made").inner_text()
    assert '"kind":"reversal"' in made
    assert f'"reverses":{seq}' in made
    assert second.locator(f"#reversal-{reversal_id}").count() == 0
    second.context.close()


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_the_console_and_the_trail_refuse_whom_the_api_refuses(
    server: DemoServer, browser: Browser, lang: str
) -> None:
    for who in ("volunteer", "centre-staff", "auditor"):
        token = token_of(server, who, PASSWORDS[who])
        status, problem = api(server, "GET", "/v1/reversals?status=pending", token, lang)
        assert status == 403
        page = open_page(browser, server, lang, who, PASSWORDS[who])
        for path in ("/console", "/console/pool", "/console/catalogue"):
            answer = page.goto(path)
            assert answer is not None and answer.status == status, (who, path)
            assert problem["detail"] in page.locator("main").inner_text(), (who, path)
        if who != "auditor":
            status, problem = api(server, "GET", "/v1/audit/events", token, lang)
            assert status == 403
            answer = page.goto("/audit")
            assert answer is not None and answer.status == status
            assert problem["detail"] in page.locator("main").inner_text()
            assert page.request.get("/audit/events.jsonl").status == 403
        assert axe_violations(page) == []
        page.context.close()
    # The positive controls: the admin's console and the auditor's trail open.
    admin = open_page(browser, server, lang, "admin", PASSWORDS["admin"])
    assert admin.goto("/console/pool").status == 200  # type: ignore[union-attr]
    admin.context.close()
    auditor = open_page(browser, server, lang, "auditor", PASSWORDS["auditor"])
    assert auditor.url.endswith("/audit")
    auditor.context.close()


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_the_auditor_filters_exports_and_sees_the_last_audit(
    server: DemoServer, browser: Browser, lang: str, tmp_path: Path
) -> None:
    page = open_page(browser, server, lang, "auditor", PASSWORDS["auditor"])
    watch = Watch(server.url)
    watch.attach(page)
    assert page.url.endswith("/audit")
    page.fill("#action", "POST /login")
    page.click("#filters button[type=submit]")
    page.wait_for_url(re.compile(r"/audit\?.*action=POST"))  # the filtered page, not the first
    page.wait_for_load_state()
    actions = page.locator("#events tbody tr td:nth-child(4) code").all_inner_texts()
    assert actions and all(a == "POST /login" for a in actions)
    assert axe_violations(page) == []
    exported = page.request.get("/audit/events.jsonl?action=POST+/login")
    assert exported.status == 200
    events = [json.loads(line) for line in exported.text().splitlines()]
    assert events and {e["action"] for e in events} == {"POST /login"}
    assert all(len(e["hash"]) == 44 for e in events)

    key = tmp_path / "log.vkey"
    with urllib.request.urlopen(server.url + "/v1/log/key", timeout=10) as answer:
        key.write_bytes(answer.read())
    ran = server.cli("audit", "verify", "--url", server.url, "--key", str(key), "--record")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    page.goto("/audit")
    last = page.locator("#last-audit").inner_text()
    assert page.locator("#last-audit").get_attribute("class") == "ok"
    assert ("通过" if lang == "zh-CN" else "timebank audit verify passed") in last
    assert ran.stdout.splitlines()[0] in last
    assert axe_violations(page) == []
    assert watch.foreign == [] and watch.csp == []
    page.context.close()
