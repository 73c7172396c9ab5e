"""Role boundaries in a real browser (Chromium), for every demo login and every page of the
centre's desk, the bank's console and the auditor's page: a page answers a login as the API
answers it for the same action, with the same words in the same language, and each refusal is
next to the same page opening for a login the API allows."""

from __future__ import annotations

import html
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from playwright.sync_api import Browser

from tests.test_web_volunteer import PASSWORDS, Api, iso
from tests.web_browser import (
    DemoServer,
    axe_violations,
    launch_chromium,
    login,
    phone_context,
    start_demo_server,
)

DESK_PAGES = ("/desk", "/desk/dispatch", "/desk/records", "/desk/people", "/desk/people/new")
CONSOLE_PAGES = (
    "/console",
    "/console/catalogue",
    "/console/policy",
    "/console/pool",
    "/console/reversals",
    "/console/partners",
    "/console/orgs",
)
AUDIT_PAGES = ("/audit", "/audit/events.jsonl")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    yield from start_demo_server(tmp_path_factory.mktemp("web-roles"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch_chromium()


def api_answer(server: DemoServer, who: str, lang: str, method: str, path: str) -> httpx.Response:
    """The API's answer to ``who`` for the action a page stands for (no state is changed:
    an assignment names a volunteer who does not exist, so an allowed caller gets 404 for
    the volunteer, after the access check)."""
    caller = Api(server, who)
    body = {"volunteer_id": "no-such-volunteer"} if method == "POST" else None
    return caller.http.request(method, path, json=body, headers={"accept-language": lang})


def refusal_to_dispatch(server: DemoServer, lang: str, request_id: str) -> str:
    """The API's words for a volunteer who tries to dispatch (the desk's refusal)."""
    answer = api_answer(server, "volunteer", lang, "POST", f"/v1/requests/{request_id}/assign")
    assert answer.status_code == 403
    return str(answer.json()["detail"])


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_each_staff_page_answers_every_login_as_the_api_does(
    server: DemoServer, browser: Browser, lang: str
) -> None:
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    request_id = Api(server, "centre-staff").post(
        "/v1/requests",
        {
            "elder_id": Api(server, "elder").get("/v1/me")["member"]["id"],
            "service_code": "company",
            "window_start": iso(tomorrow),
            "window_end": iso(tomorrow + timedelta(hours=2)),
            "minutes": 60,
        },
        status=201,
    )["id"]
    actions = {
        DESK_PAGES: ("POST", f"/v1/requests/{request_id}/assign"),
        CONSOLE_PAGES: ("GET", "/v1/reversals?status=pending"),
        AUDIT_PAGES: ("GET", "/v1/audit/events?limit=1"),
    }
    opened: dict[str, set[str]] = {}
    for who in sorted(PASSWORDS):
        context = phone_context(browser, server, lang)
        page = context.new_page()
        login(page, who, PASSWORDS[who])
        for pages, (method, path) in actions.items():
            answer = api_answer(server, who, lang, method, path)
            # allowed: the list, or the assignment past its access check (refused only for
            # the volunteer who does not exist)
            allowed = answer.status_code == 200 or answer.json().get("field") == "volunteer_id"
            for shown in pages:
                if shown.endswith(".jsonl"):  # a download: fetched with the page's session
                    status = page.request.get(shown).status
                    assert status == (200 if allowed else 403), (who, shown, status)
                    if allowed:
                        opened.setdefault(shown, set()).add(who)
                    continue
                got = page.goto(shown)
                assert got is not None, (who, shown)
                if allowed:
                    assert got.status == 200, (who, shown, got.status)
                    opened.setdefault(shown, set()).add(who)
                    continue
                assert got.status == 403, (who, shown, got.status)
                text = html.unescape(page.locator("main").inner_text())
                if answer.status_code == 403:
                    assert answer.json()["detail"] in text, (who, shown, text)
                else:  # the auditor does not even see the request (404): not staff, then
                    assert (who, answer.status_code) == ("auditor", 404), answer.text
                    assert refusal_to_dispatch(server, lang, request_id) in text, (who, shown, text)
            assert axe_violations(page) == [], (who, page.url)
        context.close()
    staff = {"admin", "centre-admin", "centre-staff"}
    assert opened == {
        **{shown: staff for shown in DESK_PAGES},
        **{shown: {"admin"} for shown in CONSOLE_PAGES},
        **{shown: {"auditor"} for shown in AUDIT_PAGES},
    }
