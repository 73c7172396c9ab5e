"""Screenshots of the main pages at 360 px in both languages for docs/webapp.md:
``make screenshots`` (the same harness as the browser tests: a fresh demo server, Chromium)."""

from __future__ import annotations

import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from playwright.sync_api import Page

from tests.test_web_volunteer import PASSWORDS, Api, dispatched_request, iso
from tests.web_browser import (
    DemoServer,
    launch_chromium,
    login,
    phone_context,
    start_demo_server,
)

OUT = Path(__file__).resolve().parents[1] / "docs" / "screenshots"


def shoot(page: Page, name: str, lang: str) -> None:
    page.wait_for_load_state("networkidle")
    path = OUT / f"{name}-{lang}.png"
    page.screenshot(path=str(path), full_page=True)
    print(path.relative_to(OUT.parents[1]), file=sys.stderr)


def waiting_for_the_elder(server: DemoServer) -> str:
    """A record waiting for the elder's confirmation, and a second elder for her son (the
    family switcher); returns the elder's id."""
    elder_id = str(Api(server, "elder").get("/v1/me")["member"]["id"])
    now = datetime.now(UTC)
    Api(server, "volunteer").post(
        "/v1/records",
        {
            "elder_id": elder_id,
            "service_code": "clean",
            "check_in": iso(now - timedelta(hours=6)),
            "check_out": iso(now - timedelta(hours=5)),
        },
        status=201,
    )
    staff = Api(server, "centre-staff")
    org = staff.get("/v1/me")["roles"][0]["org_id"]
    second = staff.post(
        "/v1/members",
        {"org_id": org, "personal": {"name": "王秀兰", "phone": "13900009876"}, "is_elder": True},
        status=201,
    )["member"]["id"]
    staff.http.post(f"/v1/members/{second}/proxies", json={"username": "family"})
    return elder_id


def elder_pages(page: Page, base: str, lang: str) -> None:
    """The elder's pages in the order she meets them."""
    page.goto(base)
    shoot(page, "elder-page", lang)
    page.goto(f"{base}/ask")
    shoot(page, "elder-ask", lang)
    page.click(f"a.tile[href='{base}/ask/meal']")
    shoot(page, "elder-when", lang)
    page.check("input[name=pay][value=yes]")
    page.click("form.stack button[type=submit]")
    shoot(page, "elder-check", lang)
    page.click("form.stack button.primary")
    shoot(page, "elder-requests", lang)
    page.goto(f"{base}/confirm")
    shoot(page, "elder-confirm", lang)
    page.click(f"form[action='{base}/code'] button")
    shoot(page, "elder-code", lang)
    page.goto(f"{base}/time")
    shoot(page, "elder-time", lang)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as data:
        for server in start_demo_server(Path(data), entries=300):
            request_id = dispatched_request(server, hours_ago=3)
            volunteer_id = Api(server, "volunteer").get("/v1/me")["member"]["id"]
            elder_id = waiting_for_the_elder(server)
            for browser in launch_chromium():
                for lang in ("zh-CN", "en"):
                    context = phone_context(browser, server, lang)
                    page = context.new_page()
                    page.goto("/login")
                    shoot(page, "login", lang)
                    login(page, "volunteer", PASSWORDS["volunteer"])
                    shoot(page, "home", lang)
                    page.goto("/volunteer")
                    shoot(page, "tasks", lang)
                    page.goto(f"/volunteer/visit/{request_id}")
                    page.click("#check-in-form button")
                    shoot(page, "visit", lang)
                    page.goto("/volunteer/hours")
                    shoot(page, "hours", lang)
                    first = page.locator(".cards a").first
                    if first.count():
                        first.click()
                        shoot(page, "receipt", lang)
                    page.goto("/volunteer/give")
                    shoot(page, "give", lang)
                    context.close()
                    elder = phone_context(browser, server, lang)
                    page = elder.new_page()
                    login(page, "elder", PASSWORDS["elder"])
                    shoot(page, "elder-home", lang)
                    elder_pages(page, f"/elder/{elder_id}", lang)
                    elder.close()
                    family = phone_context(browser, server, lang)
                    page = family.new_page()
                    login(page, "family", PASSWORDS["family"])
                    page.goto("/elder")
                    shoot(page, "family-choose", lang)
                    family.close()
            assert volunteer_id


if __name__ == "__main__":
    main()
