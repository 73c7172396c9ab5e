"""The volunteer's pages in a real browser: the whole life of an hour (the elder's side and
the staff act through the API until their pages exist), a check-out made offline and sent
exactly once, and a pending volunteer refused with a clear page."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect
from playwright.sync_api import Error as PlaywrightError

from accounts.totp import code_at
from demo.bank import DEMO_LOGINS, DEMO_STAFF_TOTP_SECRET
from tests.web_browser import (
    DemoServer,
    Watch,
    axe_violations,
    launch_chromium,
    login,
    phone_context,
    start_demo_server,
)
from web.app import STATIC_DIR, shell_version

PASSWORDS = {d.username: d.password for d in DEMO_LOGINS}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    yield from start_demo_server(tmp_path_factory.mktemp("web-volunteer"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch_chromium()


class Api:
    """The elder's side and the centre's staff, through the JSON API."""

    def __init__(self, server: DemoServer, username: str, totp: bool = False) -> None:
        self.http = httpx.Client(base_url=server.url, timeout=30)
        body = {"username": username, "password": PASSWORDS[username]}
        if totp:
            # The next step's code (within the allowed drift): the seed used the current one.
            body["totp"] = code_at(DEMO_STAFF_TOTP_SECRET, int(time.time() // 30) + 1)
        answer = self.http.post("/v1/auth/login", json=body)
        assert answer.status_code == 200, answer.text
        self.http.headers["authorization"] = f"Bearer {answer.json()['token']}"

    def get(self, path: str, **params: Any) -> Any:
        answer = self.http.get(path, params=params)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def post(self, path: str, body: dict[str, Any] | None = None, status: int = 200) -> Any:
        answer = self.http.post(path, json=body or {})
        assert answer.status_code == status, answer.text
        return answer.json() if answer.content else None


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def dispatched_request(server: DemoServer, hours_ago: int) -> str:
    """The elder asks for a visit; the centre's staff dispatch it to the demo volunteer."""
    elder, staff, volunteer = (
        Api(server, "elder"),
        Api(server, "centre-staff"),
        Api(server, "volunteer"),
    )
    elder_id = elder.get("/v1/me")["member"]["id"]
    volunteer_id = volunteer.get("/v1/me")["member"]["id"]
    now = datetime.now(UTC)
    asked = elder.post(
        "/v1/requests",
        {
            "elder_id": elder_id,
            "service_code": "company",
            "window_start": iso(now - timedelta(hours=hours_ago)),
            "window_end": iso(now - timedelta(hours=hours_ago - 2)),
            "minutes": 60,
            "notes": "湖南路12号",
        },
        status=201,
    )
    staff.post(f"/v1/requests/{asked['id']}/assign", {"volunteer_id": volunteer_id})
    return str(asked["id"])


def records_of(server: DemoServer, request_id: str) -> list[dict[str, Any]]:
    staff = Api(server, "centre-staff")
    return [r for r in staff.get("/v1/records") if r["request_id"] == request_id]


def go_offline(page: Page) -> None:
    """No signal, and the page knows it (``navigator.onLine``), before the test taps: once, on
    a loaded CI machine, a check-out tapped right after ``set_offline`` reached the server."""
    page.context.set_offline(True)
    page.wait_for_function("navigator.onLine === false")


def visit(page: Page, request_id: str, checked_in_hours_ago: float) -> None:
    """Check in at the elder's home ``checked_in_hours_ago`` on the phone's clock; the clock
    then moves on by an hour, to check-out time."""
    page.clock.install(time=datetime.now(UTC) - timedelta(hours=checked_in_hours_ago))
    page.goto("/volunteer")
    page.click(f"a[href='/volunteer/visit/{request_id}']")
    page.click("#check-in-form button")
    expect(page.locator("#check-out-form")).to_be_visible()
    page.clock.fast_forward("01:00:00")


def test_the_life_of_an_hour(server: DemoServer, browser: Browser, tmp_path: Path) -> None:
    request_id = dispatched_request(server, hours_ago=4)
    context = phone_context(browser, server, "zh-CN")
    page = context.new_page()
    watch = Watch(server.url)
    watch.attach(page)
    login(page, "volunteer", PASSWORDS["volunteer"])
    page.goto("/volunteer/hours")
    before = page.locator("#balance").inner_text()

    visit(page, request_id, checked_in_hours_ago=3)
    assert axe_violations(page) == []
    page.click("#check-out-form button")
    page.wait_for_url("**/volunteer?done=1")
    assert "记录已发送" in page.locator(".ok").inner_text()
    [record] = records_of(server, request_id)
    assert record["signed_by_device"], "the record is signed by the phone's key"
    assert record["minutes"] == 60
    devices = Api(server, "volunteer").get("/v1/me/devices")
    assert [d["id"] for d in devices if d["id"] == record["signed_by_device"]]

    # The elder confirms, another staff member verifies with TOTP: the hour is deposited.
    Api(server, "elder").post(f"/v1/records/{record['id']}/confirm")
    verified = Api(server, "centre-staff", totp=True).post(f"/v1/records/{record['id']}/verify")
    assert verified["status"] == "verified"

    page.goto("/volunteer/hours")
    assert page.locator("#balance").inner_text() != before
    cards = page.locator(".cards").inner_text()
    assert "探访关爱" in cards and "company" not in cards  # the service's name, not its code
    assert axe_violations(page) == []
    page.click(f"a[href='/volunteer/hours/{verified['deposit_seq']}']")
    expect(page.locator(".qr svg")).to_have_count(1)
    assert axe_violations(page) == []
    with page.expect_download() as download:
        page.click("a[download]")
    receipt = tmp_path / "receipt.tlog-proof"
    download.value.save_as(receipt)
    key = server.cli("key", "show").stdout.strip()
    checked = server.cli("audit", "receipt", str(receipt), "--key", key)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    give_to_the_pool(page, server)
    assert watch.foreign == []
    assert watch.csp == []
    context.close()


def give_to_the_pool(page: Page, server: DemoServer) -> None:
    """Five minutes to the pool, with a confirmation step; the same confirmation posted twice
    gives them once."""
    me = Api(server, "volunteer")
    history = f"/v1/members/{me.get('/v1/me')['member']['id']}/history"
    before = len(me.get(history))
    page.goto("/volunteer/give")
    assert axe_violations(page) == []
    page.fill("#hours", "99999")  # more than he has: said at once, with what he typed kept
    page.fill("#minutes", "7")
    page.click("form.stack button[type=submit]")
    assert page.locator("#error").inner_text() == "超过了您的存储时间"
    assert page.input_value("#hours") == "99999" and page.input_value("#minutes") == "7"
    assert page.get_attribute("#hours", "aria-invalid") == "true"
    assert page.locator("h2").count() == 0  # no "please check" step
    assert axe_violations(page) == []
    page.fill("#hours", "0")
    page.fill("#minutes", "5")
    page.click("form.stack button[type=submit]")
    assert page.locator("h2").inner_text() == "请核对"
    assert axe_violations(page) == []
    form = page.evaluate("Object.fromEntries(new FormData(document.querySelector('form.stack')))")
    page.click("form.stack button[type=submit]")
    page.wait_for_url("**/volunteer/hours")
    assert "捐赠" in page.locator(".cards").inner_text()
    again = page.request.post("/volunteer/give", form=form)
    assert again.ok
    assert len(me.get(history)) == before + 1


def test_an_offline_check_out_is_sent_once_when_back_online(
    server: DemoServer, browser: Browser
) -> None:
    request_id = dispatched_request(server, hours_ago=8)
    context = phone_context(browser, server, "en")
    page = context.new_page()
    login(page, "volunteer", PASSWORDS["volunteer"])
    visit(page, request_id, checked_in_hours_ago=7)

    go_offline(page)
    page.click("#check-out-form button")
    queue = page.locator("#queue")
    expect(queue).to_contain_text("Waiting to send: 1")
    assert "/volunteer/visit/" in page.url
    assert axe_violations(page) == []
    assert records_of(server, request_id) == []

    context.set_offline(False)
    expect(queue).to_be_hidden(timeout=30000)
    page.evaluate("window.dispatchEvent(new Event('online'))")  # a second nudge sends nothing
    page.reload()
    expect(page.locator("#queue")).to_be_hidden()
    records = records_of(server, request_id)
    assert len(records) == 1
    assert records[0]["signed_by_device"]
    outbox = page.evaluate(
        """() => new Promise(done => { const open = indexedDB.open('timebank', 1);
           open.onsuccess = () => { const r = open.result.transaction('outbox')
             .objectStore('outbox').count(); r.onsuccess = () => done(r.result); }; })"""
    )
    assert outbox == 0
    context.close()


def test_the_app_shell_and_the_last_pages_load_offline_with_the_queue_intact(
    server: DemoServer, browser: Browser
) -> None:
    """After a first visit the service worker has the app shell and the last copy of the
    visit page: with no signal, reloading it shows the page (styles and scripts from the
    cache) and the check-out waiting to send; back online, it is sent once."""
    request_id = dispatched_request(server, hours_ago=12)
    context = phone_context(browser, server, "en")
    page = context.new_page()
    login(page, "volunteer", PASSWORDS["volunteer"])
    page.goto("/volunteer")
    assert page.evaluate("window.isSecureContext")
    page.evaluate(
        """() => navigator.serviceWorker.ready.then(() => navigator.serviceWorker.controller
             ? true : new Promise(done => navigator.serviceWorker.addEventListener(
               'controllerchange', () => done(true))))"""
    )
    visit(page, request_id, checked_in_hours_ago=11)  # the visit page, fetched through it
    names = page.evaluate("caches.keys()")
    assert [n for n in names if n.startswith("timebank-shell-")] == [
        f"timebank-shell-{shell_version(STATIC_DIR)}"
    ]
    shell = page.evaluate(
        f"caches.open('timebank-shell-{shell_version(STATIC_DIR)}').then(c => c.keys())"
    )
    assert len(shell) == 7

    go_offline(page)
    page.click("#check-out-form button")
    expect(page.locator("#queue")).to_contain_text("Waiting to send: 1")
    answer = page.reload()
    assert answer is not None and answer.from_service_worker
    expect(page.locator("#check-out-form")).to_be_attached()
    expect(page.locator("#queue")).to_contain_text("Waiting to send: 1")
    styled = page.evaluate("getComputedStyle(document.body).fontFamily")
    assert styled and styled != "Times New Roman"  # app.css came from the cache
    with pytest.raises(PlaywrightError, match="ERR_FAILED"):
        page.goto("/volunteer/hours")  # never visited: no copy, and no signal
    assert records_of(server, request_id) == []

    context.set_offline(False)
    page.goto(f"/volunteer/visit/{request_id}")
    expect(page.locator("#queue")).to_be_hidden(timeout=30000)
    assert len(records_of(server, request_id)) == 1
    context.close()


def test_a_release_renames_the_shell_cache_so_phones_fetch_it_again(
    server: DemoServer, tmp_path: Path
) -> None:
    """The shell is served from the phone's cache first: without a new name for it, a phone
    that installed the app would keep the first release's scripts for ever."""
    worker = httpx.get(f"{server.url}/sw.js")
    assert worker.status_code == 200
    assert worker.headers["cache-control"] == "no-cache"
    assert f'"timebank-shell-{shell_version(STATIC_DIR)}"' in worker.text
    assert "{shell_version}" not in worker.text

    (tmp_path / "vendor").mkdir()
    (tmp_path / "app.js").write_text("one")
    (tmp_path / "vendor" / "lib.js").write_text("two")
    first = shell_version(tmp_path)
    assert shell_version(tmp_path) == first
    (tmp_path / "vendor" / "lib.js").write_text("two, patched")
    assert shell_version(tmp_path) != first
    (tmp_path / "vendor" / "lib.js").write_text("two")
    assert shell_version(tmp_path) == first
    (tmp_path / "vendor" / "lib.js").rename(tmp_path / "vendor" / "lib2.js")
    assert shell_version(tmp_path) != first


def test_a_pending_volunteer_is_refused_with_a_clear_page(
    server: DemoServer, browser: Browser
) -> None:
    context = phone_context(browser, server, "zh-CN")
    page = context.new_page()
    page.goto("/register")
    page.fill("#name", "待审核")
    page.fill("#username", "waiting-vol")
    page.fill("#password", "waiting volunteer pw")
    page.click("form.stack button[type=submit]")
    assert page.locator("h1").inner_text() == "已收到报名"
    assert axe_violations(page) == []
    # Not logged in, and no login before the organisation approves: the volunteer's pages
    # send them to log in, where the refusal says why.
    page.goto("/volunteer")
    assert "/login" in page.url
    login(page, "waiting-vol", "waiting volunteer pw")
    assert page.locator("#error").count() == 1 and page.locator("p.hint").count() == 1
    assert axe_violations(page) == []
    # The same page an approved volunteer gets, for contrast.
    other = phone_context(browser, server, "zh-CN").new_page()
    login(other, "volunteer", PASSWORDS["volunteer"])
    answer = other.goto("/volunteer")
    assert answer is not None and answer.status == 200
    context.close()


def test_logging_out_drops_the_pages_kept_for_a_walk_without_signal(
    server: DemoServer, browser: Browser
) -> None:
    """On a shared phone, the next person must not read the volunteer's hours from the
    service worker's copies once he has logged out."""
    context = phone_context(browser, server, "en")
    page = context.new_page()
    login(page, "volunteer", PASSWORDS["volunteer"])
    page.goto("/volunteer")
    page.evaluate(
        """() => navigator.serviceWorker.ready.then(() => navigator.serviceWorker.controller
             ? true : new Promise(done => navigator.serviceWorker.addEventListener(
               'controllerchange', () => done(true))))"""
    )
    page.goto("/volunteer/hours")
    expect(page.locator("h1")).to_be_visible()
    context.set_offline(True)
    answer = page.goto("/volunteer/hours")  # kept: he may walk on without signal
    assert answer is not None and answer.from_service_worker
    context.set_offline(False)

    page.goto("/")
    page.click("form[action='/logout'] button")
    page.wait_for_url("**/login**")
    context.set_offline(True)
    with pytest.raises(PlaywrightError, match="ERR_FAILED"):
        page.goto("/volunteer/hours")
    context.set_offline(False)
    context.close()


def test_a_double_tap_on_check_out_sends_one_record(server: DemoServer, browser: Browser) -> None:
    """The second tap queued a second record of the same visit, which the server refused as an
    overlap: the volunteer read "refused" about a record that had been logged."""
    request_id = dispatched_request(server, hours_ago=6)
    context = phone_context(browser, server, "en")
    page = context.new_page()
    login(page, "volunteer", PASSWORDS["volunteer"])
    visit(page, request_id, checked_in_hours_ago=5)
    page.dblclick("#check-out-form button")
    page.wait_for_url("**/volunteer?done=1")
    assert page.locator(".ok").count() == 1
    assert len(records_of(server, request_id)) == 1
    context.close()
