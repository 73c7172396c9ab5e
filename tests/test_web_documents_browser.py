"""The statements and certificates pages in Chromium at 360 × 740, in both languages: the demo's
family proxy opens his mother's certificate and statement, axe-core finds no WCAG 2.2 A/AA
violation, the PDF link downloads a PDF whose attached document verifies with ``timebank audit
statement`` and in anyone's browser on ``/transparency``; the demo volunteer, who is not her
proxy, is refused the same pages."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser

from audit.pdf_attachment import read_attachment
from demo.bank import DEMO_LOGINS
from tests.test_web_elder import MEASURE, enhanced_contrast
from tests.web_browser import (
    DemoServer,
    Watch,
    axe_violations,
    launch_chromium,
    login,
    phone_context,
    start_demo_server,
)

PASSWORDS = {d.username: d.password for d in DEMO_LOGINS}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    yield from start_demo_server(tmp_path_factory.mktemp("web-documents"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch_chromium()


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_the_proxy_downloads_the_elders_certificate_and_others_are_refused(
    server: DemoServer, browser: Browser, lang: str, tmp_path: Path
) -> None:
    context = phone_context(browser, server, lang)
    page = context.new_page()
    watch = Watch(server.url)
    watch.attach(page)
    try:
        login(page, "family", PASSWORDS["family"])
        page.goto("/")
        page.click("a[href='/documents']")
        assert page.url.endswith("/documents")
        assert axe_violations(page) == []
        links = page.locator("a[href$='/certificate']")
        assert links.count() == 2  # himself and his mother
        elder_certificate = str(links.nth(1).get_attribute("href"))
        page.goto(elder_certificate + "?name=full")
        assert "王秀英" in page.inner_text("#cert-name")
        assert axe_violations(page) == []
        assert page.evaluate("document.documentElement.scrollWidth") <= 360  # no sideways scroll
        with page.expect_download() as download:
            page.click("#cert-pdf")
        saved = tmp_path / "certificate.pdf"
        download.value.save_as(saved)
        pdf = saved.read_bytes()
        assert pdf.startswith(b"%PDF-1.7") and b"timebank-certificate.json" in pdf
        statement_page = elder_certificate.replace("/certificate", "/statement")
        page.goto(statement_page)
        assert page.locator("#statement-pdf").count() == 1
        assert axe_violations(page) == []
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        assert watch.foreign == [] and watch.csp == []
    finally:
        context.close()

    # the PDF's attachment verifies with the bank's published keys
    keys = tmp_path / "keys"
    keys.mkdir()
    for name, path in (("statement", "/v1/statements/key"), ("log", "/v1/log/key")):
        with urllib.request.urlopen(server.url + path, timeout=10) as response:
            (keys / name).write_bytes(response.read())
    assert read_attachment(pdf).name == "timebank-certificate.json"
    done = server.cli(
        "audit",
        "statement",
        str(saved),
        "--statement-key",
        str(keys / "statement"),
        "--key",
        str(keys / "log"),
    )
    assert done.returncode == 0, done.stdout + done.stderr

    # anyone handed the PDF checks it in their own browser on the public page
    anyone = phone_context(browser, server, lang)
    page = anyone.new_page()
    stripped = tmp_path / "stripped.pdf"
    stripped.write_bytes(pdf.replace(b"/Type /EmbeddedFile ", b"/Type /EmbeddedFilz "))
    try:
        page.goto("/transparency")
        page.wait_for_selector("#statement-form[data-ready='1']", state="attached")
        for chosen, verdict, reason in ((saved, "ok", ""), (stripped, "refused", "pdf")):
            page.evaluate("document.getElementById('statement-result').replaceChildren()")
            page.set_input_files("#statement-file", str(chosen))
            box = page.wait_for_selector("#statement-verdict")
            assert box is not None
            assert box.get_attribute("data-verdict") == verdict, box.inner_text()
            assert box.get_attribute("data-reasons") == reason, box.inner_text()
        assert axe_violations(page) == []
    finally:
        anyone.close()

    # the volunteer is not her proxy: the same pages are refused
    other = phone_context(browser, server, lang)
    page = other.new_page()
    try:
        login(page, "volunteer", PASSWORDS["volunteer"])
        for path in (elder_certificate, statement_page):
            response = page.goto(path)
            assert response is not None and response.status == 404, path
        assert axe_violations(page) == []
        own = page.goto("/documents")
        assert own is not None and own.status == 200
        assert page.locator("a[href$='/certificate']").count() == 1  # only himself
    finally:
        other.close()


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_in_elder_mode_the_documents_meet_the_elder_numbers(
    server: DemoServer, browser: Browser, lang: str
) -> None:
    """The family proxy reads his mother's certificate and statement in 长辈版 (his default), at
    the smallest and the largest text size: the same floor as the elder's own pages (text ≥ 20 px,
    ≥ 30 px at the largest size, line spacing ≥ 1.3, targets ≥ 60 px, 7:1 contrast); in the
    normal mode the same pages keep their smaller, denser layout."""
    found: dict[str, Any] = {}
    for size in ("1", "3"):
        context = phone_context(browser, server, lang, tb_size=size)
        page = context.new_page()
        try:
            login(page, "family", PASSWORDS["family"])
            page.goto("/documents")
            mother = str(page.locator("a[href$='/certificate']").nth(1).get_attribute("href"))
            for path in (
                "/documents",
                mother,
                mother + "?name=nickname&nickname=妈妈",
                mother.replace("/certificate", "/statement"),
                mother.replace("/certificate", "/statement") + "?from=2026-13-01",  # refused
            ):
                page.goto(path)
                where = f"{path} size={size}"
                assert page.evaluate("document.documentElement.classList.contains('elder')")
                if violations := axe_violations(page):
                    found[f"axe {where}"] = violations
                if low := enhanced_contrast(page):
                    found[f"7:1 {where}"] = low
                numbers = page.evaluate(MEASURE)
                if numbers["smallest"] < (20 if size == "1" else 30):
                    found[f"font {where}"] = numbers["smallest"]
                if numbers["line"] < 1.3:
                    found[f"line {where}"] = numbers["line"]
                if numbers["small"]:
                    found[f"targets {where}"] = numbers["small"]
                if page.evaluate("document.documentElement.scrollWidth") > 360:
                    found[f"sideways {where}"] = page.evaluate(
                        "document.documentElement.scrollWidth"
                    )
                if wide := page.evaluate(WIDER_THAN_THE_PHONE):
                    found[f"wider than the phone {where}"] = wide
                if squeezed := page.evaluate(SQUEEZED_ENTRIES):
                    found[f"entries squeezed {where}"] = squeezed
                if cut := page.evaluate(CUT_DATES):
                    found[f"dates cut {where}"] = cut
            page.goto(mother.replace("/certificate", "/statement"))
            page.emulate_media(media="print")  # on paper, the entries as dense as before
            assert page.evaluate(ENTRY_TEXT) == pytest.approx(0.9)
        finally:
            context.close()
    assert found == {}, json.dumps(found, ensure_ascii=False, indent=1)
    normal = phone_context(browser, server, lang, tb_elder="0")
    page = normal.new_page()
    try:
        login(page, "family", PASSWORDS["family"])
        page.goto(mother.replace("/certificate", "/statement"))
        assert not page.evaluate("document.documentElement.classList.contains('elder')")
        assert page.evaluate(ENTRY_TEXT) == pytest.approx(0.9)
    finally:
        normal.close()


ENTRY_TEXT = """() => parseFloat(getComputedStyle(document.querySelector('table.lines td')).fontSize)
  / parseFloat(getComputedStyle(document.documentElement).fontSize)"""  # in rem

# Inside the page, not only the page itself: a table scrolling sideways in its box (zh 337 px in
# 312, en 595) is as hard for her to read as a page that does.
WIDER_THAN_THE_PHONE = """() => {
  const edge = document.querySelector('main').getBoundingClientRect().right;
  return [...document.querySelectorAll('main *')]
    .filter(e => e.getBoundingClientRect().width > 1 && e.getBoundingClientRect().right > edge + 0.5)
    .map(e => e.tagName + ' ' + Math.round(e.getBoundingClientRect().right)).slice(0, 5);
}"""
# An entry's part broken more than twice ("4 小时 12 分钟" one character a line).
SQUEEZED_ENTRIES = """() => [...document.querySelectorAll('table.lines td')]
  .filter(td => td.getBoundingClientRect().height > 2.5 * parseFloat(getComputedStyle(td).lineHeight))
  .map(td => td.innerText).slice(0, 5)"""
# A date field narrower than its date as shown, the calendar button and its padding ("06/05/202").
CUT_DATES = """() => [...document.querySelectorAll('input[type=date]')].filter(i => {
  const s = getComputedStyle(i), pen = document.createElement('canvas').getContext('2d');
  pen.font = `${s.fontWeight} ${s.fontSize} ${s.fontFamily}`;
  const [y, m, d] = i.value.split('-').map(Number);
  const shown = new Date(y, m - 1, d).toLocaleDateString(navigator.language,
    {year: 'numeric', month: '2-digit', day: '2-digit'});
  const need = pen.measureText(shown).width + 1.5 * parseFloat(s.fontSize)
    + parseFloat(s.paddingLeft) + parseFloat(s.paddingRight)
    + parseFloat(s.borderLeftWidth) + parseFloat(s.borderRightWidth);
  return i.getBoundingClientRect().width < need;
}).map(i => i.name + ' ' + i.value)"""
