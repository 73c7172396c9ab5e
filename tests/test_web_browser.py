"""The web app in a real browser at 360 × 740: axe-core finds no WCAG 2.2 A/AA violation on any
page in either language or text size, nothing is fetched from another server, the CSP is never
violated, the text sizes and 长辈版 targets are what the layout promises, and the core forms work
with JavaScript switched off."""

from __future__ import annotations

import json
from collections.abc import Iterator

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
    settled,
    signed_in,
    start_demo_server,
)

PASSWORDS = {d.username: d.password for d in DEMO_LOGINS}
PENDING = ("pending-vol", "pending volunteer pw")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    for running in start_demo_server(tmp_path_factory.mktemp("web-demo")):
        registered = running.cli("admin", "--help")  # the CLI talks to the same data
        assert registered.returncode == 0
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch_chromium()


def sign_up_pending(page: Page) -> None:
    page.goto("/register")
    page.fill("#name", "新来的志愿者")
    page.fill("#username", PENDING[0])
    page.fill("#password", PENDING[1])
    page.click("form.stack button[type=submit]")
    page.wait_for_load_state()


def pages_for(who: str | None) -> list[str]:
    if who is None:
        return ["/login", "/register", "/transparency", "/no-such-page"]
    if who == "volunteer":
        return [
            "/",
            "/account",
            "/volunteer",
            "/volunteer/hours",
            "/volunteer/give",
            "/volunteer/certificate",
        ]
    return ["/", "/account", "/volunteer"]  # the last one refuses them, with a page


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_every_page_passes_axe_without_foreign_requests(
    server: DemoServer, browser: Browser, lang: str
) -> None:
    """Each page × {size 1, size 3} × {plain, 长辈版} for anonymous, volunteer, elder, family,
    staff and a pending volunteer."""
    found: dict[str, object] = {}
    for who in (None, "volunteer", "elder", "family", "centre-staff", "pending"):
        session = None  # a demo login signs in once, its contexts start with that session
        if who is not None and who != "pending":
            session = signed_in(browser, server, (who, PASSWORDS[who]))
        for size in ("1", "3"):
            for elder in ("0", "1"):
                context = phone_context(
                    browser, server, lang, storage_state=session, tb_size=size, tb_elder=elder
                )
                page = context.new_page()
                watch = Watch(server.url)
                watch.attach(page)
                if who == "pending":
                    page.goto("/login")
                    if size == "1" and elder == "0" and lang == "zh-CN":
                        sign_up_pending(page)
                    else:
                        login(page, *PENDING)
                for path in pages_for(who):
                    page.goto(path)
                    settled(page)
                    assert page.evaluate("document.documentElement.lang") == lang
                    violations = axe_violations(page)
                    if violations:
                        found[f"{who} {path} size={size} elder={elder}"] = violations
                assert watch.foreign == [], watch.foreign
                assert watch.csp == [], watch.csp
                context.close()
    assert found == {}, json.dumps(found, ensure_ascii=False, indent=1)


def test_text_sizes_and_elder_targets(server: DemoServer, browser: Browser) -> None:
    sizes = {}
    for size, elder in (("1", "0"), ("3", "0"), ("1", "1"), ("3", "1")):
        context = phone_context(browser, server, "zh-CN", tb_size=size, tb_elder=elder)
        page = context.new_page()
        login(page, "elder", PASSWORDS["elder"])
        sizes[(size, elder)] = page.evaluate(
            "parseFloat(getComputedStyle(document.querySelector('main p, main a, main li'))"
            ".fontSize)"
        )
        if elder == "1":
            line = page.evaluate(
                "(() => { const s = getComputedStyle(document.body);"
                " return parseFloat(s.lineHeight) / parseFloat(s.fontSize); })()"
            )
            assert line >= 1.3
            small = page.evaluate(
                "[...document.querySelectorAll('button, a.big, .call-btn, input, select')]"
                ".filter(e => e.offsetParent !== null)"
                ".map(e => e.getBoundingClientRect())"
                ".filter(r => r.height < 60 || r.width < 60).length"
            )
            assert small == 0
        context.close()
    assert sizes[("3", "0")] >= 30
    assert sizes[("1", "1")] >= 20
    assert sizes[("3", "1")] >= 30
    assert sizes[("1", "0")] < sizes[("3", "0")]


def test_call_the_centre_shows_the_organisations_number(
    server: DemoServer, browser: Browser
) -> None:
    context = phone_context(browser, server, "zh-CN")
    page = context.new_page()
    login(page, "elder", PASSWORDS["elder"])
    link = page.locator("footer.call a")
    assert link.get_attribute("href") == "tel:025-83210000"
    assert "025-8321 0000" in link.inner_text()
    assert link.bounding_box() is not None
    context.close()


def test_core_forms_work_without_javascript(server: DemoServer, browser: Browser) -> None:
    context = browser.new_context(
        viewport={"width": 360, "height": 740},
        java_script_enabled=False,
        base_url=server.url,
        locale="zh-CN",
    )
    page = context.new_page()
    page.goto("/login")
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    page.click("button[name=lang][value=en]")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    login(page, "volunteer", PASSWORDS["volunteer"])
    assert page.url.endswith("/")
    assert page.locator("a[href='/volunteer']").count() == 1
    page.goto("/account")
    page.fill("#old_password", "not the password")
    page.fill("#new_password", "another long password")
    page.click("form[action='/account/password'] button")
    assert "current password is wrong" in page.locator(".error").inner_text()
    page.click("form[action='/logout'] button")
    assert "/login" in page.url
    page.goto("/")
    assert "/login" in page.url
    context.close()


def test_pending_volunteer_is_told_why(server: DemoServer, browser: Browser) -> None:
    context = phone_context(browser, server, "en")
    page = context.new_page()
    page.goto("/register")
    page.fill("#name", "Someone New")
    page.fill("#username", "pending-en")
    page.fill("#password", "pending volunteer pw")
    page.click("form.stack button[type=submit]")
    assert page.locator("h1").inner_text() == "Registration received"
    assert axe_violations(page) == []
    login(page, "pending-en", "pending volunteer pw")  # not before the centre approves
    assert page.locator("#error").count() == 1
    assert "Until your organisation has approved you" in page.locator("p.hint").inner_text()
    context.close()


def test_a_sign_up_with_a_ten_digit_mobile_is_refused_then_taken(
    server: DemoServer, browser: Browser
) -> None:
    """The sign-up page in Chinese: a mobile missing a digit is refused, the phone field marked
    and kept as typed; with the digit added (spaces as typed), the same form goes through."""
    context = phone_context(browser, server, "zh-CN")
    page = context.new_page()
    page.goto("/register")
    page.fill("#name", "新来的")
    page.fill("#phone", "139 0000 123")
    page.fill("#username", "mobile-vol")
    page.fill("#password", "mobile volunteer pw")
    page.click("form.stack button[type=submit]")
    assert "手机号须为 11 位数字，以 1 开头" in page.locator("#error").inner_text()
    assert page.locator("#phone").get_attribute("aria-invalid") == "true"
    assert page.locator("#phone").input_value() == "139 0000 123"
    assert page.locator("#name").get_attribute("aria-invalid") is None
    assert axe_violations(page) == []
    page.fill("#phone", "139 0000 1234")
    page.fill("#password", "mobile volunteer pw")
    page.click("form.stack button[type=submit]")
    expect(page.locator("h1")).to_have_text("已收到报名")
    context.close()


def test_openapi_page_is_served_locally(server: DemoServer, browser: Browser) -> None:
    context = browser.new_context(base_url=server.url)
    page = context.new_page()
    watch = Watch(server.url)
    watch.attach(page)
    page.goto("/schema")
    page.wait_for_selector(".swagger-ui .info .title", timeout=30000)
    assert "Timebank" in page.locator(".swagger-ui .info .title").inner_text()
    assert watch.foreign == []
    assert watch.csp == []
    context.close()


def test_axe_harness_reports_violations(browser: Browser) -> None:
    """The checks above can fail: the same harness finds a missing alt text and label."""
    page = browser.new_page()
    page.set_content('<html lang="en"><body><img src="data:,"><input></body></html>')
    assert {"image-alt", "label"} <= {v["id"] for v in axe_violations(page)}
    page.close()
