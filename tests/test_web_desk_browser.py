"""The centre's day in a real browser (Debian's Chromium), in Chinese and in English: staff
register an elder without a phone, ask for a service for her and dispatch it; the volunteer
serves it (through the API, as their phone does); staff confirm for her; another staff member
steps up with TOTP and verifies. axe-core finds no WCAG 2.2 A/AA violation on any desk page;
the printed slip and statement are rendered to PDF and read back with pdftotext; a volunteer
opening the dispatch board gets the API's answer, next to staff using it."""

from __future__ import annotations

import base64
import html
import io
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from nacl.public import PrivateKey, SealedBox
from playwright.sync_api import Browser, Page

from accounts.totp import code_at
from demo.bank import DEMO_LOGINS, DEMO_STAFF_TOTP_SECRET
from tests.test_web_volunteer import Api
from tests.web_browser import (
    DemoServer,
    Watch,
    axe_violations,
    launch_chromium,
    login,
    phone_context,
    settled,
    start_demo_server,
)

PASSWORDS = {d.username: d.password for d in DEMO_LOGINS}
DESKTOP = {"width": 1280, "height": 800}
SHANGHAI = ZoneInfo("Asia/Shanghai")
WORDS = {
    "zh-CN": {"slip": "服务单", "statement": "月度对账单", "deposit": "提供服务"},
    "en": {"slip": "Service slip", "statement": "Monthly statement", "deposit": "Service given"},
}


@pytest.fixture(scope="module", params=["zh-CN", "en"])
def lang(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, lang: str) -> Iterator[DemoServer]:
    """A fresh demo per language: the demo staff's TOTP codes are used once each."""
    yield from start_demo_server(tmp_path_factory.mktemp(f"web-desk-{lang}"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch_chromium()


class Checked:
    """Every page visited: axe-core's violations, foreign requests and CSP reports."""

    def __init__(self, page: Page, server: DemoServer) -> None:
        self.page = page
        self.watch = Watch(server.url)
        self.watch.attach(page)
        self.found: dict[str, object] = {}

    def axe(self, what: str) -> None:
        settled(self.page)
        violations = axe_violations(self.page)
        if violations:
            self.found[what] = violations

    def done(self) -> None:
        assert self.found == {}, json.dumps(self.found, ensure_ascii=False, indent=1)
        assert self.watch.foreign == [] and self.watch.csp == []


def submit(page: Page, selector: str) -> None:
    with page.expect_navigation():
        page.click(selector)


def pdf_text(page: Page, tmp_path: Path, name: str) -> str:
    pdf = tmp_path / f"{name}.pdf"
    page.emulate_media(media="print")
    pdf.write_bytes(page.pdf(format="A4", print_background=True))
    page.emulate_media(media="screen")
    done = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
    )
    return done.stdout


def test_a_centres_day(server: DemoServer, browser: Browser, lang: str, tmp_path: Path) -> None:
    if shutil.which("pdftotext") is None:
        pytest.fail("pdftotext is missing: apt-get install poppler-utils", pytrace=False)
    words = WORDS[lang]
    context = browser.new_context(viewport=DESKTOP, locale=lang, base_url=server.url)
    context.add_cookies([{"name": "tb_lang", "value": lang, "url": server.url}])
    page = context.new_page()
    check = Checked(page, server)

    # Staff land on their desk.
    login(page, "centre-admin", PASSWORDS["centre-admin"])
    assert page.url.endswith("/desk")
    check.axe("desk")
    for path in ("/desk/staff", "/desk/totp"):  # the admin's staff list, no second factor yet
        page.goto(path)
        check.axe(path)
    page.goto("/desk")

    # Register an elder without a phone.
    page.click("a[href='/desk/people/new']")
    check.axe("register")
    page.fill("#name", "钱桂兰")
    page.fill("#birth_date", "1938-05-06")
    page.fill("#address", "南京市鼓楼区宁海路5号")
    submit(page, "form.stack button.primary")
    assert "done=registered" in page.url, page.inner_text("main")
    assert "钱*兰" in page.inner_text("h1")
    check.axe("person")
    elder_page = page.url.split("?")[0]

    # Ask for a service for her, yesterday 09:00-11:00 in the bank's time zone: first with the
    # end before the start, refused with all that was typed kept and the end marked.
    yesterday = (datetime.now(SHANGHAI) - timedelta(days=1)).date()
    typed = {"#day": yesterday.isoformat(), "#start": "09:00", "#end": "08:00", "#minutes": "60"}
    typed["#notes"] = "宁海路5号 三楼，上楼前请先打电话"
    for field, value in typed.items():
        page.fill(field, value)
    submit(page, "form[action$='/request'] button.primary")
    assert page.locator("#error").count() == 1
    assert {field: page.input_value(field) for field in typed} == typed
    assert page.get_attribute("#end", "aria-invalid") == "true"
    check.axe("a refused request")
    page.fill("#end", "11:00")
    submit(page, "form[action$='/request'] button.primary")
    assert "/desk/dispatch/" in page.url
    request_id = page.url.rsplit("/", 1)[1]
    check.axe("assign")

    # Dispatch it to the demo volunteer, suggested with their load against the daily cap.
    volunteer = Api(server, "volunteer")
    volunteer_id = volunteer.get("/v1/me")["member"]["id"]
    assert page.locator(f"#v-{volunteer_id}").count() == 1
    page.check(f"#v-{volunteer_id}")
    submit(page, "form[action$='/assign'] button.primary")
    assert page.url.endswith("/desk/dispatch?done=assigned")
    row = page.locator(f"#req-{request_id}")
    assert "钱*兰" in row.inner_text() and "李*强" in row.inner_text()
    check.axe("board")

    # The printed slip, as PDF.
    page.goto(f"/desk/requests/{request_id}/slip")
    check.axe("slip")
    text = pdf_text(page, tmp_path, "slip")
    for expected in (words["slip"], "钱*兰", "李*强", "宁海路5号"):
        assert expected in text, (expected, text)

    # The volunteer serves her and logs the record from the phone (the API).
    start = datetime.combine(yesterday, datetime.min.time(), SHANGHAI) + timedelta(hours=9.5)
    elder_id = elder_page.rsplit("/", 1)[1]
    record = volunteer.post(
        "/v1/records",
        {
            "elder_id": elder_id,
            "service_code": service_code(server, request_id),
            "check_in": start.astimezone(UTC).isoformat(),
            "check_out": (start + timedelta(hours=1)).astimezone(UTC).isoformat(),
            "request_id": request_id,
        },
        status=201,
    )

    # Staff confirm for her (she has no phone).
    page.goto("/desk/records")
    check.axe("records")
    submit(page, f"form[action='/desk/records/{record['id']}/confirm'] button")
    assert page.url.endswith("done=confirmed")
    assert page.locator(f"form[action='/desk/records/{record['id']}/verify']").count() == 0
    check.axe("records after confirming")
    context.close()

    # Another staff member verifies, after the page asks for the one-time code.
    context = browser.new_context(viewport=DESKTOP, locale=lang, base_url=server.url)
    context.add_cookies([{"name": "tb_lang", "value": lang, "url": server.url}])
    page = context.new_page()
    check_2 = Checked(page, server)
    login(page, "centre-staff", PASSWORDS["centre-staff"])
    page.goto("/desk/records")
    assert page.locator("form[action='/desk/step-up']").is_visible()
    check_2.axe("records asking for the code")
    page.fill("#step-password", PASSWORDS["centre-staff"])
    page.fill("#step-totp", code_at(DEMO_STAFF_TOTP_SECRET, int(time.time() // 30) + 1))
    submit(page, "form[action='/desk/step-up'] button")
    submit(page, f"form[action='/desk/records/{record['id']}/verify'] button")
    assert page.url.endswith("done=verified")
    check_2.axe("records after verifying")
    verified = Api(server, "centre-admin").get(f"/v1/records/{record['id']}")
    assert verified["status"] == "verified"
    assert verified["confirmed_as"] == "staff_for_elder"

    # The volunteer's monthly statement with the deposit and its receipt, as PDF.
    page.goto(f"/desk/people/{volunteer_id}/statement")
    check_2.axe("statement")
    assert page.locator(".receipt-qr svg").count() >= 1
    text = pdf_text(page, tmp_path, "statement")
    assert words["statement"] in text and words["deposit"] in text, text
    page.goto(elder_page)
    page.goto("/desk/people")
    check_2.axe("people")
    # The demo elder's page lists her family proxy, with the button that ends it.
    demo_elder = Api(server, "elder").get("/v1/me")["member"]["id"]
    page.goto(f"/desk/people/{demo_elder}")
    assert page.locator("input[type=hidden][name=username][value=family]").count() == 1
    check_2.axe("an elder with a family proxy")
    for path in ("/desk/staff", "/desk/totp"):
        page.goto(path)
        check_2.axe(path)
    check.done()
    check_2.done()
    context.close()


def service_code(server: DemoServer, request_id: str) -> str:
    admin = Api(server, "centre-admin")
    kind = admin.get(f"/v1/requests/{request_id}")["service_type_id"]
    return str(next(t["code"] for t in admin.get("/v1/catalogue") if t["id"] == kind))


def test_a_volunteer_gets_the_apis_answer_on_the_board(
    server: DemoServer, browser: Browser, lang: str
) -> None:
    volunteer = Api(server, "volunteer")
    tomorrow = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    some_request = Api(server, "centre-admin").post(
        "/v1/requests",
        {
            "elder_id": Api(server, "elder").get("/v1/me")["member"]["id"],
            "service_code": "company",
            "window_start": tomorrow.isoformat(),
            "window_end": (tomorrow + timedelta(hours=2)).isoformat(),
            "minutes": 60,
        },
        status=201,
    )["id"]
    refused = volunteer.http.post(
        f"/v1/requests/{some_request}/assign",
        json={"volunteer_id": volunteer.get("/v1/me")["member"]["id"]},
        headers={"accept-language": lang},
    )
    assert refused.status_code == 403
    detail = refused.json()["detail"]
    for who, status in (("volunteer", 403), ("centre-staff", 200)):
        context = phone_context(browser, server, lang)
        page = context.new_page()
        login(page, who, PASSWORDS[who])
        answer = page.goto("/desk/dispatch")
        assert answer is not None and answer.status == status, who
        if status == 403:
            assert detail in html.unescape(page.content())
        settled(page)
        assert axe_violations(page) == [], who  # the board at 360 px, and the refusal
        context.close()


def test_the_visits_page_shows_the_months_coverage_and_who_is_still_to_visit(
    server: DemoServer, browser: Browser, lang: str
) -> None:
    """The figures of GET /v1/stats/coverage, in a table with the elders still to visit; the
    same page refused to a volunteer; a month that is not one is refused in the page's
    language, with the field marked."""
    figures = Api(server, "centre-admin").get("/v1/stats/coverage")
    centre = figures["organisations"]
    assert len(centre) == 1 and centre[0]["priority_elders"] > centre[0]["visited"] > 0
    context = browser.new_context(viewport=DESKTOP, locale=lang, base_url=server.url)
    context.add_cookies([{"name": "tb_lang", "value": lang, "url": server.url}])
    page = context.new_page()
    check = Checked(page, server)
    login(page, "centre-admin", PASSWORDS["centre-admin"])
    tile = page.locator("a[href='/desk/visits#unvisited'] .big-number")
    assert tile.inner_text() == str(centre[0]["priority_elders"] - centre[0]["visited"])
    page.click("a[href='/desk/visits#unvisited']")
    check.axe("visits")
    chart = page.locator("svg.chart")
    assert figures["month"] in chart.locator("title").text_content()
    assert chart.locator("rect.bar").count() == 2  # the centre and the total (both above 0)
    cells = page.locator("table.figures tbody tr").first.locator("td").all_inner_texts()
    assert cells[:2] == [str(centre[0]["priority_elders"]), str(centre[0]["visited"])]
    cards = page.locator("#unvisited + ul.cards > li")
    assert cards.count() == len(figures["unvisited"]) > 0
    first = figures["unvisited"][0]
    assert first["name"] in cards.first.inner_text()
    with page.expect_download() as csv_download:
        page.click("a[href^='/v1/exports/coverage.csv']")
    coverage_csv = Path(csv_download.value.path()).read_bytes()
    assert coverage_csv.startswith(b"\xef\xbb\xbf") and b"\r\n" in coverage_csv
    header = coverage_csv.decode("utf-8-sig").splitlines()[0]
    assert header == (
        "机构,重点老人,已探访,探访率"
        if lang == "zh-CN"
        else "organisation,priority elders,visited,rate"
    )
    with page.expect_download() as xlsx_download:
        page.click("a[href^='/v1/exports/coverage.xlsx']")
    assert xlsx_download.value.suggested_filename.endswith(".xlsx")
    sheet = openpyxl.load_workbook(io.BytesIO(Path(xlsx_download.value.path()).read_bytes())).active
    assert sheet is not None
    sheet_rows = list(sheet.iter_rows(values_only=True))
    assert list(sheet_rows[0]) == header.split(",")
    assert sheet_rows[1][1:3] == (centre[0]["priority_elders"], centre[0]["visited"])
    key = PrivateKey.generate()
    page.fill("#recipient_key", base64.b64encode(bytes(key.public_key)).decode())
    with page.expect_download() as sealed_download:
        page.click("#sealed-export button[type=submit]:not([formaction])")
    box = Path(sealed_download.value.path()).read_bytes()
    listed = SealedBox(key).decrypt(box).decode("utf-8-sig").splitlines()
    assert len(listed) == 1 + len(figures["unvisited"])  # the header and every one not visited
    with page.expect_download() as sealed_xlsx:
        page.click("#sealed-export button[formaction='/v1/exports/unvisited.xlsx']")
    assert sealed_xlsx.value.suggested_filename.endswith(".xlsx.sealed")
    document = SealedBox(key).decrypt(Path(sealed_xlsx.value.path()).read_bytes())
    sealed_sheet = openpyxl.load_workbook(io.BytesIO(document)).active
    assert sealed_sheet is not None and sealed_sheet.max_row == 1 + len(figures["unvisited"])
    answer = page.goto("/desk/visits?month=2026-13")
    assert answer is not None and answer.status == 400
    assert page.get_attribute("#month", "aria-invalid") == "true"
    assert ("YYYY-MM 格式" if lang == "zh-CN" else "month must be YYYY-MM") in page.inner_text(
        "#error"
    )
    check.axe("visits, refused")
    check.done()
    phone = phone_context(browser, server, lang).new_page()  # a staff member on a phone
    phone_check = Checked(phone, server)
    login(phone, "centre-admin", PASSWORDS["centre-admin"])
    phone.goto("/desk/visits")
    phone_check.axe("visits on a phone")
    phone_check.done()
    assert phone.evaluate("document.documentElement.scrollWidth") <= phone.viewport_size["width"]
    volunteer = browser.new_context(viewport=DESKTOP, locale=lang, base_url=server.url).new_page()
    login(volunteer, "volunteer", PASSWORDS["volunteer"])
    refused = volunteer.goto("/desk/visits")
    assert refused is not None and refused.status == 403


def test_the_signals_page_shows_what_the_api_finds_to_admins_and_auditors(
    server: DemoServer, browser: Browser, lang: str
) -> None:
    """The demo's month is quiet with the default thresholds; lowered ones on the page show
    the signal the API shows (the centre's admin confirming for elders), with its records, to
    the bank admin by name and to the auditor by id; a volunteer gets the API's 403; a number
    that is not one is refused in the page's language with the field marked."""
    lowered = "staff_share_percent=20&staff_min_confirmations=5"
    api = Api(server, "admin").get(
        "/v1/stats/signals", staff_share_percent=20, staff_min_confirmations=5
    )
    (expected,) = api["signals"]
    context = browser.new_context(viewport=DESKTOP, locale=lang, base_url=server.url)
    context.add_cookies([{"name": "tb_lang", "value": lang, "url": server.url}])
    page = context.new_page()
    check = Checked(page, server)
    login(page, "admin", PASSWORDS["admin"])
    page.goto("/console")
    page.click("nav a[href='/signals']")
    check.axe("signals, quiet")
    assert page.locator("#signals").inner_text() == (
        "按这些阈值，此时间范围内没有监管信号。"
        if lang == "zh-CN"
        else "No signal in this window with these thresholds."
    )
    page.click("#thresholds summary")
    page.fill("#t-staff_share_percent", "20")
    page.fill("#t-staff_min_confirmations", "5")
    submit(page, "#thresholds button")
    check.axe("signals, one")
    card = page.locator("#signals li.signal")
    assert card.count() == 1
    text = card.inner_text()
    assert "centre-admin" in text and str(expected["measured"]) in text
    card.locator("details summary").first.click()
    assert card.locator("ul.ids li").count() == len(expected["records"])
    answer = page.goto("/signals?days=abc")
    assert answer is not None and answer.status == 400
    assert page.get_attribute("#t-days", "aria-invalid") == "true"
    assert ("须为整数" if lang == "zh-CN" else "days must be a whole number") in page.inner_text(
        "#error"
    )
    check.axe("signals, refused")
    check.done()
    auditor = browser.new_context(viewport=DESKTOP, locale=lang, base_url=server.url).new_page()
    login(auditor, "auditor", PASSWORDS["auditor"])
    auditor.goto(f"/signals?{lowered}")
    shown = auditor.locator("#signals li.signal")
    assert shown.count() == 1 and "centre-admin" not in shown.inner_text()
    assert expected["subjects"][0] in shown.inner_text()
    volunteer = browser.new_context(viewport=DESKTOP, locale=lang, base_url=server.url).new_page()
    login(volunteer, "volunteer", PASSWORDS["volunteer"])
    refused = volunteer.goto("/signals")
    assert refused is not None and refused.status == 403
