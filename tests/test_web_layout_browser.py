"""Layout in a real browser (Debian's Chromium) with the longest free text the app accepts: a
member's name of 100 letters with no space, notes, addresses, health notes and reasons of
hundreds of characters with no break. On a phone (360 × 740), a tablet (768 × 1024) and a
laptop (1280 × 800), no page of the elder, the volunteer, the desk or the console scrolls
sideways; axe-core finds nothing on them at the phone's width, at each text size (the pages'
only width rule, two columns of cards from 800 px, hides nothing, and axe's rules are of the
document, not its width). At the largest text size of 长辈版 the elder's main
action (我要服务) starts on the first screen of a phone, with every header control on screen,
large enough to tap and not hidden by the call bar."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page

from demo.bank import DEMO_LOGINS
from tests.web_browser import (
    PHONE,
    DemoServer,
    axe_violations,
    launch_chromium,
    login,
    phone_context,
    settled,
    signed_in,
    start_demo_server,
)

PASSWORDS = {d.username: d.password for d in DEMO_LOGINS}
VIEWPORTS = {
    "phone": {"width": 360, "height": 740},
    "tablet": {"width": 768, "height": 1024},
    "laptop": {"width": 1280, "height": 800},
}
# No space, no hyphen, nothing a browser would break at on its own.
ELDER_NAME = ("Wolfeschlegelsteinhausenbergerdorff" * 3)[:100]
VOLUNTEER_NAME = ("Hubertblaineoftheriverbankandthemeadows" * 3)[:100]
NOTE = ("Ninghairoad5building3floor2pleasecallbeforeclimbingthestairs" * 10)[:500]
HEALTH = ("Diabetictakesinsulinat8and18hearingaidleftear" * 20)[:600]
ADDRESS = ("Gulouqunanjingshininghairoad5hao" * 10)[:300]
ORG_NAME = ("Guloushequfuwuzhongxinbranchofthenorthernriverside" * 5)[:200]
ELDER_LOGIN = ("long-elder", "long elder password 2026")
VOLUNTEER_LOGIN = ("long-volunteer", "long volunteer password 2026")


class Client:
    """One login on the JSON API."""

    def __init__(self, server: DemoServer, username: str, password: str) -> None:
        self.http = httpx.Client(base_url=server.url, timeout=30)
        answer = self.http.post("/v1/auth/login", json={"username": username, "password": password})
        assert answer.status_code == 200, answer.text
        self.http.headers["authorization"] = f"Bearer {answer.json()['token']}"

    def get(self, path: str) -> Any:
        answer = self.http.get(path)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def post(self, path: str, body: dict[str, Any], status: int = 200) -> Any:
        answer = self.http.post(path, json=body)
        assert answer.status_code == status, answer.text
        return answer.json()


@dataclass
class Long:
    """The ids of what was made with the longest texts."""

    elder: str
    volunteer: str
    assigned: str
    open: str
    served: str


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    yield from start_demo_server(tmp_path_factory.mktemp("web-layout"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch_chromium()


@pytest.fixture(scope="module")
def long(server: DemoServer) -> Long:
    return make_long(server)


def make_long(server: DemoServer) -> Long:
    """An elder and a volunteer with 100-letter names, registered by the centre; requests for
    her with 500 characters of notes (open, dispatched to him, served and waiting for her
    word, cancelled with a 500-character reason); an organisation, a service and a partner key
    with the longest names the console takes."""
    staff = Client(server, "centre-admin", PASSWORDS["centre-admin"])
    org = staff.get("/v1/me")["roles"][0]["org_id"]
    elder = staff.post(
        "/v1/members",
        {
            "org_id": org,
            "personal": {
                "name": ELDER_NAME,
                "address": ADDRESS,
                "health_notes": HEALTH,
                "birth_date": "1940-03-04",
            },
            "is_elder": True,
            "username": ELDER_LOGIN[0],
            "password": ELDER_LOGIN[1],
        },
        status=201,
    )["member"]["id"]
    volunteer = staff.post(
        "/v1/members",
        {
            "org_id": org,
            "personal": {"name": VOLUNTEER_NAME, "address": ADDRESS},
            "is_volunteer": True,
            "username": VOLUNTEER_LOGIN[0],
            "password": VOLUNTEER_LOGIN[1],
        },
        status=201,
    )["member"]["id"]
    now = datetime.now(UTC).replace(microsecond=0)

    def ask(start: datetime) -> str:
        body = {
            "elder_id": elder,
            "service_code": "company",
            "window_start": iso(start),
            "window_end": iso(start + timedelta(hours=2)),
            "minutes": 60,
            "notes": NOTE,
        }
        return str(staff.post("/v1/requests", body, status=201)["id"])

    assigned, open_one, served, cancelled = (
        ask(now + timedelta(days=1)),
        ask(now + timedelta(days=2)),
        ask(now - timedelta(hours=5)),
        ask(now + timedelta(days=3)),
    )
    for request_id in (assigned, served):
        staff.post(f"/v1/requests/{request_id}/assign", {"volunteer_id": volunteer})
    staff.post(f"/v1/requests/{cancelled}/cancel", {"reason": NOTE})
    Client(server, *VOLUNTEER_LOGIN).post(
        "/v1/records",
        {
            "elder_id": elder,
            "service_code": "company",
            "check_in": iso(now - timedelta(hours=4)),
            "check_out": iso(now - timedelta(hours=3)),
            "request_id": served,
        },
        status=201,
    )
    admin = Client(server, "admin", PASSWORDS["admin"])
    admin.post("/v1/orgs", {"name": ORG_NAME, "kind": "service_station"}, status=201)
    admin.post(
        "/v1/catalogue",
        {
            "code": "long",
            "name_zh": ELDER_NAME,
            "name_en": VOLUNTEER_NAME,
            "category": "company",
            "weight_permille": 1000,
        },
    )
    admin.post("/v1/partner-keys", {"name": ELDER_NAME, "scopes": ["read_points"]}, status=201)
    return Long(elder, volunteer, assigned, open_one, served)


def pages(long: Long) -> dict[str, tuple[tuple[str, str], list[str]]]:
    """Who logs in, and the pages showing the long texts to them."""
    return {
        "elder": (
            ELDER_LOGIN,
            [
                f"/elder/{long.elder}",
                f"/elder/{long.elder}/requests",
                f"/elder/{long.elder}/confirm",
                f"/elder/{long.elder}/time",
                "/documents",
                f"/documents/{long.elder}/statement",
                "/account",
            ],
        ),
        "volunteer": (
            VOLUNTEER_LOGIN,
            [
                "/",
                "/volunteer",
                f"/volunteer/visit/{long.assigned}",
                "/volunteer/hours",
                "/volunteer/certificate",
                "/volunteer/give",
                f"/documents/{long.volunteer}/certificate",
            ],
        ),
        "desk": (
            ("centre-admin", PASSWORDS["centre-admin"]),
            [
                "/desk",
                "/desk/dispatch",
                f"/desk/dispatch/{long.open}",
                "/desk/people",
                f"/desk/people/{long.elder}",
                f"/desk/people/{long.volunteer}",
                "/desk/records",
                f"/desk/requests/{long.assigned}/slip",
                f"/desk/people/{long.elder}/statement",
                "/desk/visits",
                "/desk/staff",
            ],
        ),
        "console": (
            ("admin", PASSWORDS["admin"]),
            [
                "/console",
                "/console/orgs",
                "/console/catalogue",
                "/console/partners",
                "/console/pool",
                "/console/reversals",
            ],
        ),
    }


def too_wide(page: Page, tables: bool) -> str | None:
    """What sticks out of a page that scrolls sideways, or (``tables``) of a table's box (a
    table in a .table-wrap would scroll inside it), or None if nothing does."""
    return page.evaluate(
        """tables => {
          const limit = window.innerWidth;
          const wider = !tables ? [] : [...document.querySelectorAll('table')]
            .filter(t => t.offsetWidth > t.parentElement.clientWidth + 1)
            .map(t => `table ${t.offsetWidth} > ${t.parentElement.clientWidth}`);
          if (document.documentElement.scrollWidth <= limit) return wider.join() || null;
          const wide = [...document.querySelectorAll('body *')]
            .filter(e => e.getBoundingClientRect().right > limit + 1)
            .map(e => e.tagName.toLowerCase() + (e.className ? '.' + e.className : '')
                      + (e.id ? '#' + e.id : ''));
          return `${document.documentElement.scrollWidth} > ${limit}: ${wide.slice(0, 6)}`;
        }""",
        tables,
    )


def reveal(page: Page) -> None:
    """Staff read the elder's address and health notes (with a reason, as they must)."""
    page.fill("#reveal_reason", "checking the layout of a long address")
    with page.expect_navigation():
        page.click("form[action$='/reveal'] button")


def sizes(who: str, device: str) -> tuple[str, ...]:
    """Every text size on a phone; on larger screens the desk and console at the usual one."""
    return ("1", "3") if device == "phone" or who in ("elder", "volunteer") else ("1",)


@pytest.mark.parametrize("who", ["elder", "volunteer", "desk", "console"])
def test_long_names_and_notes_never_make_a_page_scroll_sideways(
    server: DemoServer, browser: Browser, long: Long, who: str
) -> None:
    """On a phone a wide table (the dispatch board's seven columns) may scroll inside its own
    box, as designed; on a tablet or laptop every table fits, its long names wrapping."""
    account, paths = pages(long)[who]
    session = signed_in(browser, server, account)
    wide: dict[str, str] = {}
    found: dict[str, object] = {}
    for device, viewport in VIEWPORTS.items():
        for size in sizes(who, device):
            context = browser.new_context(
                viewport=viewport, locale="zh-CN", base_url=server.url, storage_state=session
            )
            context.add_cookies(
                [
                    {"name": name, "value": value, "url": server.url}
                    for name, value in (("tb_lang", "zh-CN"), ("tb_size", size))
                ]
            )
            page = context.new_page()
            for path in paths:
                answer = page.goto(path)
                assert answer is not None and answer.status == 200, (path, answer and answer.status)
                settled(page)
                if path == f"/desk/people/{long.elder}":
                    assert ELDER_NAME[:1] in page.inner_text("h1")
                    reveal(page)
                    assert ADDRESS in page.inner_text("main")
                problem = too_wide(page, tables=device != "phone")
                if problem:
                    wide[f"{path} {device} size={size}"] = problem
                if device == "phone":
                    violations = axe_violations(page)
                    if violations:
                        found[f"{path} {device} size={size}"] = violations
            context.close()
    assert wide == {}, json.dumps(wide, ensure_ascii=False, indent=1)
    assert found == {}, json.dumps(found, ensure_ascii=False, indent=1)


def test_the_long_texts_are_on_the_pages(server: DemoServer, browser: Browser, long: Long) -> None:
    """The pages above do show the long texts (the test above would pass on pages without)."""
    context = phone_context(browser, server, "zh-CN")
    page = context.new_page()
    login(page, *ELDER_LOGIN)
    page.goto(f"/elder/{long.elder}/requests")
    assert NOTE in page.inner_text("main")
    page.goto(f"/elder/{long.elder}")
    assert ELDER_NAME in page.inner_text("h1")
    context.close()
    context = phone_context(browser, server, "zh-CN")
    page = context.new_page()
    login(page, *VOLUNTEER_LOGIN)
    page.goto(f"/volunteer/visit/{long.assigned}")
    assert NOTE in page.inner_text("main")
    context.close()
    context = phone_context(browser, server, "zh-CN")
    page = context.new_page()
    login(page, "centre-admin", PASSWORDS["centre-admin"])
    page.goto("/desk/dispatch")
    assert NOTE in page.inner_text("main")
    page.goto("/desk/people")
    assert ELDER_NAME[0] + "*" * 98 + ELDER_NAME[-1] in page.inner_text("main")
    context.close()


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_the_main_action_starts_on_a_phones_first_screen_at_every_size(
    server: DemoServer, browser: Browser, lang: str
) -> None:
    """The elder's home in 长辈版 at 360 × 740, for her and for her son acting for her: at each
    text size the top of 我要服务 is on the first screen and nothing covers it there (the call
    bar is fixed at the bottom at size 1); every header control is on screen and at least
    60 px square; nothing scrolls sideways; axe-core finds nothing."""
    found: dict[str, object] = {}
    for who in ("elder", "family"):
        session = signed_in(browser, server, (who, PASSWORDS[who]))
        for size in ("1", "2", "3"):
            context = phone_context(
                browser, server, lang, storage_state=session, tb_size=size, tb_elder="1"
            )
            page = context.new_page()
            page.goto("/elder")
            settled(page)
            where = f"{who} size={size}"
            assert page.evaluate("document.documentElement.className") == f"size-{size} elder"
            action = page.locator("main a.button.primary[href$='/ask']")
            box = action.bounding_box()
            assert box is not None and box["y"] + 10 < PHONE["height"], (
                where,
                box,
                page.locator("header.top").bounding_box(),
            )
            hit = page.evaluate(
                "([x, y]) => document.elementFromPoint(x, y)?.closest('a')?.getAttribute('href')",
                [box["x"] + box["width"] / 2, box["y"] + 10],
            )
            assert hit is not None and hit.endswith("/ask"), (where, hit)
            controls = page.locator("header.top a, header.top button")
            assert controls.count() == 6  # the bank's name, the language, 3 sizes, 长辈版
            for i in range(controls.count()):
                control = controls.nth(i)
                assert control.is_visible(), (where, i)
                rect = control.bounding_box()
                assert rect is not None, (where, i)
                assert rect["width"] >= 60 and rect["height"] >= 60, (where, i, rect)
                assert rect["x"] >= 0 and rect["x"] + rect["width"] <= 360, (where, i, rect)
            assert too_wide(page, tables=True) is None, where
            violations = axe_violations(page)
            if violations:
                found[where] = violations
            context.close()
    assert found == {}, json.dumps(found, ensure_ascii=False, indent=1)
