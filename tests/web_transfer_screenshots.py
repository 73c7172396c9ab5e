"""Screenshots of sending time to another district, at 360 px in zh-CN, for docs/webapp.md:
against a running ``make run-federation`` (``python -m tests.web_transfer_screenshots``). The
demo's family proxy sends 30 minutes of his mother's time to her own record in 秦淮."""

from __future__ import annotations

import json
import sys
import urllib.request

from tests.web_browser import PHONE, launch_chromium
from tests.web_screenshots import OUT, shoot

GULOU, QINHUAI = "http://127.0.0.1:8000", "http://127.0.0.1:8001"


def member_id(base: str, username: str, password: str) -> str:
    login = urllib.request.Request(
        f"{base}/v1/auth/login",
        data=json.dumps({"username": username, "password": password}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(login, timeout=20) as answer:
        token = json.load(answer)["token"]
    me = urllib.request.Request(f"{base}/v1/me", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(me, timeout=20) as answer:
        return str(json.load(answer)["member"]["id"])


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    elder = member_id(GULOU, "elder", "demo-elder-2026")
    there = member_id(QINHUAI, "elder", "demo-elder-2026")
    for browser in launch_chromium():
        context = browser.new_context(viewport=PHONE, locale="zh-CN", base_url=GULOU)
        context.add_cookies([{"name": "tb_lang", "value": "zh-CN", "url": GULOU}])
        page = context.new_page()
        page.goto("/login")
        page.fill("#username", "family")
        page.fill("#password", "demo-family-2026")
        page.click("form.stack button[type=submit]")
        page.goto(f"/transfers/{elder}")
        page.fill("#to_member_id", there)
        page.fill("#minutes", "30")
        shoot(page, "transfer-form", "zh-CN")
        page.click("form.stack button.primary")
        shoot(page, "transfer-check", "zh-CN")
        page.click("form.stack button.primary")
        shoot(page, "transfer-done", "zh-CN")
        print(page.inner_text("#outcome"), file=sys.stderr)
        context.close()


if __name__ == "__main__":
    main()
