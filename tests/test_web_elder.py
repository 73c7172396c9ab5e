"""The elder's pages and her family's in a real browser (Chromium, 360 × 740): the life of an
hour with the elder asking and confirming on her own page, a family proxy switching between
two elders and acting for each (refused for an elder she does not act for), and on every new
page in both languages at the smallest and largest text size: axe-core's WCAG 2.2 A/AA (0
violations), 7:1 contrast (axe's enhanced-contrast rule) and the 长辈版 numbers measured."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, Page, Route, expect

from tests.test_web_volunteer import PASSWORDS, Api, iso, records_of, visit
from tests.web_browser import (
    AXE,
    DemoServer,
    Watch,
    axe_violations,
    launch_chromium,
    login,
    phone_context,
    start_demo_server,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    yield from start_demo_server(tmp_path_factory.mktemp("web-elder"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch_chromium()


def member_id(server: DemoServer, username: str) -> str:
    return str(Api(server, username).get("/v1/me")["member"]["id"])


def ask_on_the_page(page: Page, service: str, part: str, pay: str = "no", day: int = 0) -> None:
    """From the elder's home: the service's big button, the ``day``-th day offered (0 today), a
    part of the day, then the check step and "yes"."""
    page.click("a.button.primary[href$='/ask']")
    page.click(f"a.tile[href$='/ask/{service}']")
    page.locator("input[name=day]").nth(day).check()
    page.check(f"input[name=part][value={part}]")
    page.check(f"input[name=pay][value={pay}]")
    page.click("form.stack button[type=submit]")
    expect(page.locator("dl.facts")).to_be_visible()
    page.click("form.stack button.primary")
    page.wait_for_url("**/requests?asked=1")


def newest_request(server: DemoServer, elder: str) -> dict[str, Any]:
    staff = Api(server, "centre-staff")
    mine = [r for r in staff.get("/v1/requests") if r["elder_id"] == elder]
    return max(mine, key=lambda r: str(r["created_at"]))


def test_the_life_of_an_hour_through_the_elders_page(server: DemoServer, browser: Browser) -> None:
    elder_id = member_id(server, "elder")
    context = phone_context(browser, server, "zh-CN")
    page = context.new_page()
    watch = Watch(server.url)
    watch.attach(page)
    login(page, "elder", PASSWORDS["elder"])
    page.goto("/elder")
    page.wait_for_url(f"**/elder/{elder_id}")
    ask_on_the_page(page, "company", "any")
    asked = newest_request(server, elder_id)
    assert (asked["status"], asked["acting_for"]) == ("open", False)
    assert "等待志愿者接单" in page.locator(".cards").inner_text()

    # The centre's staff dispatch it (their desk pages are another part of the work).
    volunteer_id = member_id(server, "volunteer")
    Api(server, "centre-staff").post(
        f"/v1/requests/{asked['id']}/assign", {"volunteer_id": volunteer_id}
    )
    helper = phone_context(browser, server, "zh-CN").new_page()
    login(helper, "volunteer", PASSWORDS["volunteer"])
    helper.goto("/volunteer/hours")
    before = helper.locator("#balance").inner_text()
    shanghai = ZoneInfo("Asia/Shanghai")
    around = {
        f"{(datetime.now(UTC) - timedelta(hours=1, minutes=m)).astimezone(shanghai):%H:%M}"
        for m in (0, -1)
    }
    visit(helper, asked["id"], checked_in_hours_ago=1)
    shown = helper.locator("#visit-state").inner_text()
    assert any(t in shown for t in around), (shown, around)  # the bank's time, not the phone's
    helper.click("#check-out-form button")
    helper.wait_for_url("**/volunteer?done=1")
    [record] = records_of(server, asked["id"])
    assert record["status"] == "logged" and record["signed_by_device"]

    # "Did the volunteer come?": one big button on her page.
    page.goto(f"/elder/{elder_id}")
    page.click(f"a[href='/elder/{elder_id}/confirm']")
    page.click(f"form[action$='/records/{record['id']}/confirm'] button")
    expect(page.locator(".ok")).to_contain_text("服务已确认")
    assert axe_violations(page) == []
    verified = Api(server, "centre-staff", totp=True).post(f"/v1/records/{record['id']}/verify")
    assert (verified["status"], verified["confirmed_as"]) == ("verified", "elder")

    helper.goto("/volunteer/hours")
    assert helper.locator("#balance").inner_text() != before
    assert helper.locator(f"a[href='/volunteer/hours/{verified['deposit_seq']}']").count() == 1
    page.goto(f"/elder/{elder_id}/requests")
    assert "已完成" in page.locator(".cards").inner_text()
    assert watch.foreign == [] and watch.csp == []
    context.close()


def test_a_family_switches_between_two_elders_and_acts_for_each(
    server: DemoServer, browser: Browser
) -> None:
    first = member_id(server, "elder")
    staff = Api(server, "centre-staff")
    org = staff.get("/v1/me")["roles"][0]["org_id"]
    second = staff.post(
        "/v1/members",
        {"org_id": org, "personal": {"name": "王秀兰", "phone": "13900009876"}, "is_elder": True},
        status=201,
    )["member"]["id"]
    answer = staff.http.post(f"/v1/members/{second}/proxies", json={"username": "family"})
    assert answer.status_code == 204, answer.text
    stranger = staff.post(
        "/v1/members",
        {"org_id": org, "personal": {"name": "赵大爷", "phone": "13900005432"}, "is_elder": True},
        status=201,
    )["member"]["id"]

    context = phone_context(browser, server, "en")
    page = context.new_page()
    login(page, "family", PASSWORDS["family"])
    assert page.locator("a[href='/volunteer']").count() == 1  # her own volunteer pages too
    page.click("a[href='/elder']")
    assert page.locator("h1").inner_text() == "Whom are you helping?"
    assert axe_violations(page) == []
    names = page.locator("main a.big").all_inner_texts()
    assert "王*英" in names and "王*兰" in names  # masked, as a proxy may see them
    for elder, part in ((first, "morning"), (second, "afternoon")):
        page.goto("/elder")
        page.click(f"a[href='/elder/{elder}']")
        assert "For 王*" in page.locator(".for").inner_text()
        ask_on_the_page(page, "meal", part, day=1)  # tomorrow: today's may be over
        asked = newest_request(server, elder)
        assert asked["acting_for"] is True
        page.click(f"a[href='/elder/{elder}']")
    assert (
        newest_request(server, first)["window_start"]
        != newest_request(server, second)["window_start"]
    )
    # The switch on each page; and an elder she does not act for is refused.
    page.goto(f"/elder/{second}/requests")
    page.click(".for a[href='/elder']")
    page.wait_for_url("**/elder")
    refused = page.goto(f"/elder/{stranger}")
    assert refused is not None and refused.status == 404
    assert axe_violations(page) == []
    trail = Api(server, "auditor").get("/v1/audit/events", action="POST /elder/", limit=1000)
    done_for = {e["on_behalf"] for e in trail}
    assert {first, second} <= done_for
    context.close()


def test_her_choices_survive_a_text_size_button_and_change_it(
    server: DemoServer, browser: Browser
) -> None:
    """The header's buttons and "No, change it" come back to the ask form as she filled it;
    while today is the day, a part of today that is over cannot be chosen."""
    elder_id = member_id(server, "elder")
    context = phone_context(browser, server, "zh-CN")
    page = context.new_page()
    login(page, "elder", PASSWORDS["elder"])
    page.goto(f"/elder/{elder_id}/ask/meal")
    over = page.locator("input[name=part][data-over-today]")
    assert all(box.is_disabled() for box in over.all())  # today is the first choice
    page.locator("input[name=day]").nth(1).check()
    assert not any(box.is_disabled() for box in over.all())  # tomorrow's are all there
    chosen = {"part": "morning", "minutes": "120", "pay": "yes"}
    for name, value in chosen.items():
        page.check(f"input[name={name}][value='{value}']")
    day = page.locator("input[name=day]").nth(1).get_attribute("value")

    def choices() -> dict[str, str | None]:
        return {
            name: page.locator(f"input[name={name}]:checked").get_attribute("value")
            for name in ("day", *chosen)
        }

    page.click("header button.size-btn.s3")
    page.wait_for_load_state()
    assert choices() == {"day": day, **chosen}
    page.click("form.stack button[type=submit]")
    expect(page.locator("dl.facts")).to_be_visible()
    page.click("a.big >> text=不对，改一下")
    expect(page.locator("input[name=day]").first).to_be_visible()
    assert choices() == {"day": day, **chosen}
    assert axe_violations(page) == []
    context.close()


def lose_the_first_answer(page: Page, path: str) -> list[int]:
    """The first post to ``path`` reaches the server, but its answer is lost (the page stays
    where it was, as on a weak network), so the elder taps again; the statuses the server
    gave each post, in order."""
    statuses: list[int] = []

    def first_answer_lost(route: Route) -> None:
        answer = route.fetch(max_redirects=0)
        statuses.append(answer.status)
        if len(statuses) == 1:
            route.fulfill(status=204)  # no content: the browser stays on the page
        else:
            route.fulfill(response=answer)

    page.route(f"**{path}", first_answer_lost)
    return statuses


def test_a_second_tap_asks_and_confirms_once(server: DemoServer, browser: Browser) -> None:
    """The ask form's "yes" and "yes, the volunteer came", each tapped again after a lost
    answer: the second post carries the same one-time key, so one request is made and one
    confirmation recorded, and the second tap lands where the first would have."""
    elder_id = member_id(server, "elder")
    context = phone_context(browser, server, "zh-CN")
    page = context.new_page()
    login(page, "elder", PASSWORDS["elder"])
    staff = Api(server, "centre-staff")
    before = [r["id"] for r in staff.get("/v1/requests") if r["elder_id"] == elder_id]
    page.goto(f"/elder/{elder_id}/ask/meal")
    page.locator("input[name=day]").nth(1).check()  # tomorrow: this evening may be over
    page.check("input[name=part][value=evening]")
    page.click("form.stack button[type=submit]")
    expect(page.locator("dl.facts")).to_be_visible()
    statuses = lose_the_first_answer(page, f"/elder/{elder_id}/ask/meal")
    page.click("form.stack button.primary")
    page.wait_for_timeout(500)
    assert statuses == [303] and "/ask/meal" in page.url
    page.click("form.stack button.primary")
    page.wait_for_url("**/requests?asked=1")
    assert statuses == [303, 303]
    after = [r["id"] for r in staff.get("/v1/requests") if r["elder_id"] == elder_id]
    assert len(after) == len(before) + 1

    now = datetime.now(UTC)
    record = Api(server, "volunteer").post(
        "/v1/records",
        {
            "elder_id": elder_id,
            "service_code": "meal",
            "check_in": iso(now - timedelta(hours=9)),
            "check_out": iso(now - timedelta(hours=8, minutes=30)),
        },
        status=201,
    )
    path = f"/elder/{elder_id}/records/{record['id']}/confirm"
    page.goto(f"/elder/{elder_id}/confirm")
    statuses = lose_the_first_answer(page, path)
    button = page.locator(f"form[action='{path}'] button")
    button.click()
    page.wait_for_timeout(500)
    assert statuses == [303]
    button.click()
    expect(page.locator(".ok")).to_contain_text("服务已确认")
    assert statuses == [303, 303]  # not a refusal: the record was already confirmed
    confirmed = staff.get(f"/v1/records/{record['id']}")
    assert (confirmed["status"], confirmed["confirmed_as"]) == ("confirmed", "elder")
    trail = Api(server, "auditor").get(
        "/v1/audit/events", action="POST /elder/{member_id}/records/", limit=1000
    )
    assert [e["status"] for e in trail if record["id"] in e["objects"]] == [303, 303]
    context.close()


def enhanced_contrast(page: Page) -> list[Any]:
    """axe-core's 7:1 rule (WCAG AAA 1.4.6), the 长辈版 floor for body text."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))
    result = page.evaluate(
        "() => window.axe.run(document, {runOnly: {type: 'rule',"
        " values: ['color-contrast-enhanced']}})"
    )
    return [[n["target"] for n in v["nodes"]] for v in result["violations"]]


MEASURE = """() => {
  const shown = e => (e.offsetParent !== null || getComputedStyle(e).position === 'fixed')
    && !e.classList.contains('skip');
  const text = [...document.querySelectorAll(
      'main p, main li, main label, main dt, main dd, main legend, main caption, main th, main td,'
      + ' main figcaption')]
    .filter(shown).map(e => parseFloat(getComputedStyle(e).fontSize));
  const lines = [...document.querySelectorAll('main p, main label, main dd')].filter(shown)
    .map(e => { const s = getComputedStyle(e); return parseFloat(s.lineHeight) / parseFloat(s.fontSize); });
  const targets = [...document.querySelectorAll(
      'a, button, select, input:not([type=radio]):not([type=hidden]), label.choice,'
      + ' label:has(> [type=radio])')]
    .filter(shown).map(e => [e.outerHTML.slice(0, 80), e.getBoundingClientRect()])
    .filter(([, r]) => r.width < 60 || r.height < 60).map(([h]) => h);
  const icons = [...document.querySelectorAll('main svg.icon')]
    .filter(i => !(i.parentElement.innerText || '').trim()).length;
  return {smallest: Math.min(...text), line: Math.min(...lines), small: targets, bare: icons};
}"""


def elder_pages(page: Page, server: DemoServer, elder_id: str) -> Iterator[str]:
    """Each page of the elder's (the two posted steps included), yielded once it is shown."""
    base = f"/elder/{elder_id}"
    for path in ("", "/ask", "/ask/meal", "/confirm", "/requests", "/time"):
        page.goto(base + path)
        yield base + path
    page.goto(base + "/ask/meal")
    page.click("form.stack button[type=submit]")
    expect(page.locator("dl.facts")).to_be_visible()
    yield base + "/ask/meal (the check step)"
    page.goto(base + "/confirm")
    page.click(f"form[action='{base}/code'] button")
    expect(page.locator("#code")).to_be_visible()
    yield base + "/code"
    open_one = next(r for r in Api(server, "elder").get("/v1/requests") if r["status"] == "open")
    page.goto(f"{base}/requests/{open_one['id']}/cancel")
    yield base + "/requests/…/cancel"


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_every_elder_page_passes_axe_and_the_elder_numbers(
    server: DemoServer, browser: Browser, lang: str
) -> None:
    elder_id = member_id(server, "elder")
    elder = Api(server, "elder")
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    elder.post(
        "/v1/requests",
        {
            "elder_id": elder_id,
            "service_code": "meal",
            "window_start": iso(tomorrow),
            "window_end": iso(tomorrow + timedelta(hours=2)),
            "minutes": 60,
        },
        status=201,
    )
    now = datetime.now(UTC) - timedelta(hours=2 if lang == "en" else 0)  # no overlap
    Api(server, "volunteer").post(
        "/v1/records",
        {
            "elder_id": elder_id,
            "service_code": "clean",
            "check_in": iso(now - timedelta(hours=5)),
            "check_out": iso(now - timedelta(hours=4)),
        },
        status=201,
    )
    found: dict[str, Any] = {}
    for size in ("1", "3"):
        context = phone_context(browser, server, lang, tb_size=size)
        page = context.new_page()
        watch = Watch(server.url)
        watch.attach(page)
        login(page, "elder", PASSWORDS["elder"])
        for shown in elder_pages(page, server, elder_id):
            where = f"{shown} size={size}"
            assert page.evaluate("document.documentElement.lang") == lang
            if violations := axe_violations(page):
                found[f"axe {where}"] = violations
            if low := enhanced_contrast(page):
                found[f"7:1 {where}"] = low
            numbers = page.evaluate(MEASURE)
            floor = 20 if size == "1" else 30
            if numbers["smallest"] < floor:
                found[f"font {where}"] = numbers["smallest"]
            if numbers["line"] < 1.3:
                found[f"line {where}"] = numbers["line"]
            if numbers["small"]:
                found[f"targets {where}"] = numbers["small"]
            if numbers["bare"]:
                found[f"icons without words {where}"] = numbers["bare"]
            assert page.locator("footer.call a[href^='tel:']").count() == 1
        assert watch.foreign == [] and watch.csp == []
        context.close()
    assert found == {}, json.dumps(found, ensure_ascii=False, indent=1)


# Where the focused element (or the given one) stands against the call bar and the screen:
# covered when the bar is fixed and overlaps it, outside when it is not wholly on screen.
STANDING = """(target) => {
  const e = target || document.activeElement;
  if (!e || e === document.body) return null;
  const r = e.getBoundingClientRect();
  const bar = document.querySelector('footer.call');
  const fixed = bar && getComputedStyle(bar).position === 'fixed' && !bar.contains(e);
  const b = fixed ? bar.getBoundingClientRect() : null;
  return {element: e.outerHTML.slice(0, 80), covered: !!b && r.bottom > b.top && r.top < b.bottom,
    outside: r.top < 0 || r.bottom > innerHeight};
}"""
NUMBER_LINES = "document.querySelector('footer.call .num').getClientRects().length"


def hidden_by_the_call_bar(page: Page) -> list[dict[str, Any]]:
    """Tab through the page from its top: every element that takes focus, where it stands."""
    found = []
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.evaluate("window.scrollTo(0, 0)")
    for _ in range(60):
        page.keyboard.press("Tab")
        standing = page.evaluate(STANDING)
        if standing is None:
            break
        if standing["covered"] or standing["outside"]:
            found.append(standing)
    return found


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_the_call_bar_never_hides_the_focused_element_nor_a_refusal(
    server: DemoServer, browser: Browser, lang: str
) -> None:
    """On a 360 × 740 phone at the smallest and the largest text size (WCAG 2.4.11): each
    element of each of her pages that takes keyboard focus is on screen and not under the call
    bar; a refused tap (cancelling a request cancelled meanwhile) takes focus to the refusal,
    shown on screen, not under the bar; the centre's number is never broken over lines; the
    code to read out is read digit by digit."""
    elder_id = member_id(server, "elder")
    elder = Api(server, "elder")
    later = datetime.now(UTC) + timedelta(days=2)
    meal = {
        "elder_id": elder_id,
        "service_code": "meal",
        "window_start": iso(later),
        "window_end": iso(later + timedelta(hours=2)),
        "minutes": 60,
    }
    elder.post("/v1/requests", meal, status=201)  # one to show on the cancel page
    found: dict[str, Any] = {}
    for size in ("1", "3"):
        context = phone_context(browser, server, lang, tb_size=size)
        page = context.new_page()
        login(page, "elder", PASSWORDS["elder"])
        for shown in elder_pages(page, server, elder_id):
            if hidden := hidden_by_the_call_bar(page):
                found[f"focus {shown} size={size}"] = hidden
            if page.evaluate(NUMBER_LINES) != 1:
                found[f"number {shown} size={size}"] = page.evaluate(NUMBER_LINES)
            if shown.endswith("/code"):  # read digit by digit, no aria-label on a paragraph
                assert page.locator("#code[aria-label]").count() == 0
                assert re.fullmatch(r"\d( \d){5}", page.inner_text("#code-spoken"))
        asked = elder.post("/v1/requests", meal, status=201)
        page.goto(f"/elder/{elder_id}/requests/{asked['id']}/cancel")
        elder.post(f"/v1/requests/{asked['id']}/cancel", {"reason": "time"})
        page.click("form.stack button.primary")
        refusal = page.locator("main [role=alert]")
        expect(refusal).to_be_visible()
        assert page.evaluate("document.activeElement.getAttribute('role')") == "alert"
        standing = page.evaluate(STANDING)
        if standing["covered"] or standing["outside"]:
            found[f"refusal size={size}"] = standing
        context.close()
    assert found == {}, json.dumps(found, ensure_ascii=False, indent=1)
