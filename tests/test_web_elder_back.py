"""Back in a real browser (Chromium, 360 × 740) after the elder's forms: after asking, and after
showing a code, Back and a header button land on pages, never on Chrome's "Confirm Form
Resubmission" (ERR_CACHE_MISS) or a 405; the code stays the same when reloaded."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect

from tests.test_web_elder import member_id
from tests.test_web_volunteer import PASSWORDS
from tests.web_browser import DemoServer, launch_chromium, login, phone_context, start_demo_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    yield from start_demo_server(tmp_path_factory.mktemp("web-elder-back"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch_chromium()


def test_back_after_asking_and_after_the_code_shows_pages(
    server: DemoServer, browser: Browser
) -> None:
    base = f"/elder/{member_id(server, 'elder')}"
    page = phone_context(browser, server, "zh-CN").new_page()
    login(page, "elder", PASSWORDS["elder"])
    page.goto(f"{base}/ask/company")
    page.locator("input[name=day]").nth(1).check()  # tomorrow: this evening may be over
    page.check("input[name=part][value=evening]")
    page.click("form.stack button[type=submit]")
    expect(page.locator("dl.facts")).to_be_visible()
    page.click("button.size-btn.s3")  # the largest text: still the check step, her choices
    expect(page.locator("dl.facts")).to_be_visible()
    assert "part=evening" in page.url
    page.click("form.stack button.primary")
    page.wait_for_url("**/requests?asked=1")
    back = page.go_back()
    assert back is not None and back.status == 200
    expect(page.locator("dl.facts")).to_be_visible()
    page.goto(f"{base}/confirm")
    page.click(f"form[action='{base}/code'] button")
    shown = page.locator("#code")
    expect(shown).to_be_visible()
    code = shown.inner_text()
    page.reload()
    assert page.locator("#code").inner_text() == code
    page.goto(base)
    back = page.go_back()
    assert back is not None and back.status == 200
    assert page.locator("#code").inner_text() == code
    page.click("button.size-btn.s1")
    assert page.locator("#code").inner_text() == code
