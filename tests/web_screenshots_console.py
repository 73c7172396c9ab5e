"""Screenshots of the public ledger (360 px) and of the bank's console and the auditor's page
(1024 px) in both languages, for docs/webapp.md: ``python -m tests.web_screenshots_console``
(the browser tests' harness: a fresh demo server, Debian's Chromium)."""

from __future__ import annotations

import base64
import json
import sys
import tempfile
import urllib.request
from pathlib import Path

from playwright.sync_api import Page

from demo.bank import DEMO_LOGINS
from tests.web_browser import launch_chromium, login, phone_context, start_demo_server

OUT = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
PASSWORDS = {d.username: d.password for d in DEMO_LOGINS}
DESK = {"width": 1024, "height": 768}


def shoot(page: Page, name: str, lang: str) -> None:
    page.wait_for_load_state("networkidle")
    path = OUT / f"{name}-{lang}.png"
    page.screenshot(path=str(path), full_page=True)
    print(path.relative_to(OUT.parents[1]), file=sys.stderr)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as data:
        for server in start_demo_server(Path(data), entries=300):
            with urllib.request.urlopen(server.url + "/healthz") as got:
                size = int(json.loads(got.read())["tree_size"])
            path = f"/v1/log/leaves?start={size - 100}&end={size}"
            with urllib.request.urlopen(server.url + path) as got:
                leaves = json.loads(got.read())["leaves"]
            moved = [
                leaf["index"]
                for leaf in leaves
                if json.loads(base64.b64decode(leaf["data"]))["kind"] in ("deposit", "gift")
            ]
            with urllib.request.urlopen(f"{server.url}/v1/log/receipt?index={moved[0]}") as got:
                receipt = got.read().decode()
            for browser in launch_chromium():
                for lang in ("zh-CN", "en"):
                    context = phone_context(browser, server, lang)
                    page = context.new_page()
                    page.goto("/transparency")
                    page.wait_for_selector("#receipt-form[data-ready='1']")
                    page.fill("#receipt", receipt)
                    page.click("#receipt-form button[type=submit]")
                    page.locator("#browser-result").wait_for()
                    shoot(page, "transparency", lang)
                    context.close()

                    context = phone_context(browser, server, lang)
                    page = context.new_page()
                    page.set_viewport_size(DESK)
                    login(page, "admin", PASSWORDS["admin"])
                    shoot(page, "console", lang)
                    page.goto("/console/catalogue")
                    row = page.locator("table tbody tr").first
                    row.locator("input[name=weight_permille]").fill("1200")
                    row.locator("button[type=submit]").click()
                    shoot(page, "console-catalogue", lang)
                    page.goto("/console/pool")
                    shoot(page, "console-pool", lang)
                    page.goto("/console/reversals")
                    page.fill("#seq", str(moved[1] if lang == "zh-CN" else moved[2]))
                    page.fill("#reason", "entered twice")
                    page.click("#reversal-form button[type=submit]")
                    shoot(page, "console-reversals", lang)
                    context.close()

                    context = phone_context(browser, server, lang)
                    page = context.new_page()
                    page.set_viewport_size(DESK)
                    login(page, "auditor", PASSWORDS["auditor"])
                    shoot(page, "audit", lang)
                    context.close()


if __name__ == "__main__":
    main()
