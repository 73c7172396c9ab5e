"""Screenshots of the main pages at 360 px in both languages for docs/webapp.md:
``make screenshots`` (the same harness as the browser tests: a fresh demo server, Chromium)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import Page

from tests.test_web_volunteer import PASSWORDS, Api, dispatched_request
from tests.web_browser import launch_chromium, login, phone_context, start_demo_server

OUT = Path(__file__).resolve().parents[1] / "docs" / "screenshots"


def shoot(page: Page, name: str, lang: str) -> None:
    page.wait_for_load_state("networkidle")
    path = OUT / f"{name}-{lang}.png"
    page.screenshot(path=str(path), full_page=True)
    print(path.relative_to(OUT.parents[1]), file=sys.stderr)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as data:
        for server in start_demo_server(Path(data), entries=300):
            request_id = dispatched_request(server, hours_ago=3)
            volunteer_id = Api(server, "volunteer").get("/v1/me")["member"]["id"]
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
                    elder.close()
            assert volunteer_id


if __name__ == "__main__":
    main()
