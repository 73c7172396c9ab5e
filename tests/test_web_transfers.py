"""Sending time to another district in the browser, against the two-district demo of
``make run-federation`` (demo.federation): its setup step from an empty directory and again,
then both banks served by ``timebank serve`` on loopback, and Debian's Chromium at 360 px.

The volunteer of 鼓楼 sends time to his mother in 秦淮: it settles and both balances shown
change; to an id 秦淮 does not know: void, the time back; a double click sends once; the
volunteer is refused his neighbour's elder's time while her son, her proxy, sends it; every page
is axe-clean in zh-CN and en and does not scroll sideways."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from demo.bank import DEMO_LOGINS
from demo.district import DISTRICT_LOGINS
from demo.federation import TIMEBANK, Deployment, Setup, deployments, setup
from ledger.keys import load_or_create_signing_key
from tests.web_browser import axe_violations, launch_chromium

ENTRIES = 600  # 鼓楼's demo history: the volunteer ends it with 29 minutes, his elder with more
GULOU = {d.username: d.password for d in DEMO_LOGINS}
QINHUAI = {d.username: d.password for d in DISTRICT_LOGINS}
PHONE = {"width": 360, "height": 740}


def two_free_ports() -> int:
    """A port P with P + 1 free too (鼓楼 and 秦淮)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        with socket.socket() as a, socket.socket() as b:
            try:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two consecutive free ports")


@dataclass
class Demo:
    gulou: Deployment
    qinhuai: Deployment
    first: Setup
    again: Setup
    peers_listed: dict[str, str]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    root = tmp_path_factory.mktemp("federation") / "var" / "federation"  # does not exist yet
    port = two_free_ports()
    first = setup(root, ENTRIES, port)
    again = setup(root, ENTRIES, port)
    gulou, qinhuai = deployments(root, port)
    listed = {at.name: at.cli("peers", "list") for at in (gulou, qinhuai)}
    processes = []
    try:
        for at in (gulou, qinhuai):
            log = (root / f"{at.name}.log").open("w")
            processes.append(
                subprocess.Popen(
                    [str(TIMEBANK), "serve", "--host", "127.0.0.1", "--port", str(at.port)],
                    env={**at.env(), "TIMEBANK_AUDIT_SEAL_SECONDS": "3600"},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        for at, process in zip((gulou, qinhuai), processes, strict=True):
            _wait_healthy(at, process)
        yield Demo(gulou, qinhuai, first, again, listed)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_healthy(at: Deployment, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{at.url}/healthz", timeout=2):
                return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((at.root / f"{at.name}.log").read_text()) from None
            time.sleep(0.2)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch_chromium()


def balance(at: Deployment, username: str, password: str, member_id: str) -> int:
    """The member's minutes as the API shows them to the member (or their proxy)."""
    login = urllib.request.Request(
        f"{at.url}/v1/auth/login",
        data=json.dumps({"username": username, "password": password}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(login, timeout=20) as answer:
        token = json.load(answer)["token"]
    ask = urllib.request.Request(
        f"{at.url}/v1/members/{member_id}/balance", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(ask, timeout=20) as answer:
        return int(json.load(answer)["available_minutes"])


def phone(browser: Browser, at: Deployment, lang: str, username: str, password: str) -> Page:
    context = browser.new_context(viewport=PHONE, locale=lang, base_url=at.url)
    context.add_cookies([{"name": "tb_lang", "value": lang, "url": at.url}])
    page = context.new_page()
    page.goto("/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("form.stack button[type=submit]")
    page.wait_for_load_state()
    return page


def clean(page: Page) -> None:
    """axe-core finds nothing and the page does not scroll sideways at 360 px."""
    assert axe_violations(page) == [], page.url
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], page.url


def fill(page: Page, to_member_id: str, minutes: int) -> None:
    page.select_option("#peer", "qinhuai")
    page.fill("#to_member_id", to_member_id)
    page.fill("#hours", "0")
    page.fill("#minutes", str(minutes))
    page.click("form.stack button.primary")
    page.wait_for_load_state()


def test_setup_works_from_an_empty_directory_and_again(demo: Demo) -> None:
    first, again = "\n".join(demo.first.lines), "\n".join(demo.again.lines)
    assert "seeded the demo bank" in first
    assert "peer qinhuai added" in first and "peer gulou added" in first
    assert "database already holds" in again and "seeded the demo bank" not in again
    assert "秦淮 (qinhuai) is a peer already" in again and "鼓楼 (gulou) is a peer already" in again
    assert "added" not in again
    assert demo.first.gulou == demo.again.gulou and demo.first.qinhuai == demo.again.qinhuai
    assert set(demo.first.qinhuai) == {"mother", "elder", "son"}
    for name, other in (("gulou", demo.qinhuai), ("qinhuai", demo.gulou)):
        listed = demo.peers_listed[name]
        assert listed.count(f"log {other.origin}") == 1, listed
        assert "witnesses our log" in listed
    # distinct logs and keys
    keys = {at.cli("key", "show").strip() for at in (demo.gulou, demo.qinhuai)}
    assert len(keys) == 2
    assert {k.split("+")[0] for k in keys} == {demo.gulou.origin, demo.qinhuai.origin}


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_the_volunteer_sends_time_to_his_mother_and_to_an_unknown_id(
    demo: Demo, browser: Browser, lang: str
) -> None:
    me, mother = demo.first.gulou["volunteer"], demo.first.qinhuai["mother"]
    mine = balance(demo.gulou, "volunteer", GULOU["volunteer"], me)
    hers = balance(demo.qinhuai, "mother", QINHUAI["mother"], mother)
    assert mine >= 5, "the demo's volunteer needs minutes to send"
    her_page = phone(browser, demo.qinhuai, lang, "mother", QINHUAI["mother"])
    her_page.goto("/transfers")
    shown_before = her_page.inner_text("#available")
    assert mother in her_page.inner_text("main")  # her member id, to give to her son
    clean(her_page)

    page = phone(browser, demo.gulou, lang, "volunteer", GULOU["volunteer"])
    page.goto("/")
    page.click("a[href='/transfers']")
    assert page.url.endswith(f"/transfers/{me}")  # only his own time: straight to the form
    clean(page)
    mine_shown = page.inner_text("#available")
    label = "存储的时间：" if lang == "zh-CN" else "Stored time:"  # a Chinese colon in Chinese
    assert f"{label} {mine_shown}" in page.inner_text("main")
    # a refusal next to its field: no minutes
    fill(page, mother, 0)
    assert page.locator("#error-minutes").count() == 1
    assert page.get_attribute("#minutes", "aria-invalid") == "true"
    clean(page)
    fill(page, "not an id!", 5)
    assert page.locator("#error-to_member_id").count() == 1
    assert page.get_attribute("#to_member_id", "aria-invalid") == "true"
    assert page.locator("#error-minutes").count() == 0
    fill(page, mother, 5)
    text = page.inner_text("main")
    assert mother in text and "qinhuai" in text  # the check step says where it goes
    clean(page)
    page.click("form.stack button.primary")
    page.wait_for_load_state()
    assert page.get_attribute("#outcome", "data-state") == "settled"
    clean(page)
    assert page.inner_text("#available") != mine_shown
    assert balance(demo.gulou, "volunteer", GULOU["volunteer"], me) == mine - 5
    assert balance(demo.qinhuai, "mother", QINHUAI["mother"], mother) == hers + 5
    her_page.reload()
    assert her_page.inner_text("#available") != shown_before

    # an id 秦淮 does not know: void, and the minutes are back
    page.goto(f"/transfers/{me}")
    fill(page, "nosuchmember0001", 4)
    page.click("form.stack button.primary")
    page.wait_for_load_state()
    assert page.get_attribute("#outcome", "data-state") == "void"
    words = "对方银行没有该编号的有效会员" if lang == "zh-CN" else "no active member with this id"
    assert words in page.inner_text("#outcome")
    clean(page)
    assert balance(demo.gulou, "volunteer", GULOU["volunteer"], me) == mine - 5
    assert balance(demo.qinhuai, "mother", QINHUAI["mother"], mother) == hers + 5
    page.context.close()
    her_page.context.close()


def _post_form(url: str, form: dict[str, str], cookie: str) -> tuple[int, str]:
    """POST the form as a second browser tab would, following the redirect; (status, URL)."""
    request = urllib.request.Request(
        url,
        data=urllib.parse.urlencode(form).encode(),
        headers={"content-type": "application/x-www-form-urlencoded", "cookie": cookie},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return int(answer.status), str(answer.url)
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code), str(exc.url)


def test_a_double_submit_sends_once(demo: Demo, browser: Browser) -> None:
    me, mother = demo.first.gulou["volunteer"], demo.first.qinhuai["mother"]
    mine = balance(demo.gulou, "volunteer", GULOU["volunteer"], me)
    hers = balance(demo.qinhuai, "mother", QINHUAI["mother"], mother)
    page = phone(browser, demo.gulou, "zh-CN", "volunteer", GULOU["volunteer"])
    page.goto(f"/transfers/{me}")
    fill(page, mother, 3)
    form: dict[str, str] = page.evaluate(
        "() => Object.fromEntries(new FormData(document.querySelector('form.stack')))"
    )
    cookie = "; ".join(f"{c['name']}={c['value']}" for c in page.context.cookies())
    # the confirmation sent twice at once (a double tap, two tabs): one transfer, one answer
    url = f"{demo.gulou.url}/transfers/{me}"
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: _post_form(url, form, cookie), range(2)))
    assert answers[0] == answers[1] and answers[0][0] == 200, answers
    assert f"/transfers/{me}/" in answers[0][1]
    # and the browser's own double click on the same confirmation: the same result page
    page.dblclick("form.stack button.primary")
    page.wait_for_selector("#outcome")
    assert page.get_attribute("#outcome", "data-state") == "settled"
    assert page.url == answers[0][1]
    assert balance(demo.gulou, "volunteer", GULOU["volunteer"], me) == mine - 3
    assert balance(demo.qinhuai, "mother", QINHUAI["mother"], mother) == hers + 3
    page.context.close()


def test_only_the_member_or_her_proxy_sends_her_time(demo: Demo, browser: Browser) -> None:
    elder, there = demo.first.gulou["elder"], demo.first.qinhuai["elder"]
    own = demo.first.gulou["family"]
    before = balance(demo.gulou, "family", GULOU["family"], elder)
    hers_there = balance(demo.qinhuai, "elder", QINHUAI["elder"], there)
    # the volunteer is no proxy of hers: refused the page and the post
    intruder = phone(browser, demo.gulou, "en", "volunteer", GULOU["volunteer"])
    answer = intruder.goto(f"/transfers/{elder}")
    assert answer is not None and answer.status == 404
    assert "You do not act for this person." in intruder.inner_text("main")
    token = intruder.get_attribute("meta[name=csrf-token]", "content") or ""
    posted = intruder.request.post(
        f"{demo.gulou.url}/transfers/{elder}",
        form={
            "_csrf_token": token,
            "peer": "qinhuai",
            "to_member_id": there,
            "hours": "0",
            "minutes": "10",
            "once": "intruder0001",
            "confirmed": "1",
        },
    )
    assert posted.status in (403, 404) and "expired" not in posted.text()  # not the CSRF check
    assert balance(demo.gulou, "family", GULOU["family"], elder) == before
    # and the API refuses him the same
    status = _api_send(demo.gulou, "volunteer", GULOU["volunteer"], elder, there, 10)
    assert status in (403, 404)
    intruder.context.close()

    # her son, her family proxy, sends her time to her own record in 秦淮
    page = phone(browser, demo.gulou, "zh-CN", "family", GULOU["family"])
    page.goto("/transfers")
    clean(page)  # himself and his mother
    page.click(f"a[href='/transfers/{elder}']")
    expect(page.locator(".for")).to_have_count(1)  # "for 王*英", once her page has loaded
    clean(page)
    small = page.evaluate(  # 长辈版, a proxy's default: every target at least 60 × 60 px
        "[...document.querySelectorAll('main button, main input, main select, main a.button')]"
        ".filter(e => e.offsetParent !== null).map(e => e.getBoundingClientRect())"
        ".filter(r => r.height < 60 || r.width < 60).length"
    )
    assert small == 0
    fill(page, there, 10)
    clean(page)
    page.click("form.stack button.primary")
    page.wait_for_load_state()
    assert page.get_attribute("#outcome", "data-state") == "settled"
    assert balance(demo.gulou, "family", GULOU["family"], elder) == before - 10
    # the result is hers: under his own member id it is no transfer of his (404)
    answer = page.goto(page.url.replace(f"/transfers/{elder}/", f"/transfers/{own}/"))
    assert answer is not None and answer.status == 404
    assert balance(demo.qinhuai, "elder", QINHUAI["elder"], there) == hers_there + 10
    page.context.close()


def _api_send(
    at: Deployment, username: str, password: str, member: str, to: str, minutes: int
) -> int:
    login = urllib.request.Request(
        f"{at.url}/v1/auth/login",
        data=json.dumps({"username": username, "password": password}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(login, timeout=20) as answer:
        token = json.load(answer)["token"]
    body = {"from_member_id": member, "peer": "qinhuai", "to_member_id": to, "minutes": minutes}
    send = urllib.request.Request(
        f"{at.url}/v1/peer-transfers",
        data=json.dumps(body).encode(),
        headers={
            "content-type": "application/json",
            "Authorization": f"Bearer {token}",
            "Idempotency-Key": f"intruder-{os.getpid()}",
        },
    )
    try:
        with urllib.request.urlopen(send, timeout=20) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code)


def test_held_while_the_peer_cannot_be_reached(
    demo: Demo, browser: Browser, tmp_path: Path
) -> None:
    """A third district whose server is not running: the time stays held, "we will retry".
    (jianye stays registered, its transfers held: the module's last test.)"""
    origin = "jianye.timebank.local/demo"
    log_key = load_or_create_signing_key(tmp_path / "log.key", origin).verifier.to_text()
    request_key = load_or_create_signing_key(tmp_path / "peer.key", f"{origin}/peers")
    closed = two_free_ports()  # nothing listens there
    demo.gulou.cli(
        "peers", "add", "--name", "jianye", "--url", f"http://127.0.0.1:{closed}",
        "--origin", origin, "--log-key", log_key, "--request-key",
        request_key.verifier.to_text(),
    )  # fmt: skip
    me = demo.first.gulou["volunteer"]
    mine = balance(demo.gulou, "volunteer", GULOU["volunteer"], me)
    for lang in ("zh-CN", "en"):
        page = phone(browser, demo.gulou, lang, "volunteer", GULOU["volunteer"])
        page.goto(f"/transfers/{me}")
        page.select_option("#peer", "jianye")
        page.fill("#to_member_id", "somebody0001")
        page.fill("#minutes", "1")
        page.click("form.stack button.primary")
        page.wait_for_load_state()
        page.click("form.stack button.primary")
        page.wait_for_load_state()
        assert page.get_attribute("#outcome", "data-state") == "held"
        words = "我们会重试" if lang == "zh-CN" else "we will retry"
        assert words in page.inner_text("#outcome")
        clean(page)
        page.context.close()
    assert balance(demo.gulou, "volunteer", GULOU["volunteer"], me) == mine - 2
