"""The public transparency page in a real browser: the latest checkpoint and the log's key
without a login, and the receipt checker that verifies in the browser. A real receipt verifies;
a changed index, a changed entry byte, a wrong key and a forged signature are refused with the
reason; and every answer is the one ``timebank audit receipt`` gives for the same file. Without
JavaScript the server runs the auditor's check and says so. axe-core on every state of the
page, both languages."""

from __future__ import annotations

import base64
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import segno
from playwright.sync_api import Browser, Page

from ledger.note import Signer
from tests.test_web_volunteer import Api
from tests.web_browser import (
    DemoServer,
    Watch,
    axe_violations,
    launch_chromium,
    phone_context,
    start_demo_server,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    yield from start_demo_server(tmp_path_factory.mktemp("public-demo"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch_chromium()


def fetch(server: DemoServer, path: str) -> str:
    with urllib.request.urlopen(server.url + path, timeout=10) as answer:
        return str(answer.read().decode())


def deposit_receipt(server: DemoServer) -> tuple[int, str]:
    """A real receipt, as the server serves it, for the first deposit of the demo log."""
    size = int(json.loads(fetch(server, "/healthz"))["tree_size"])
    leaves = json.loads(fetch(server, f"/v1/log/leaves?start={max(size - 60, 0)}&end={size}"))
    for leaf in leaves["leaves"]:
        entry = json.loads(base64.b64decode(leaf["data"]))
        if entry["kind"] == "deposit":
            return int(leaf["index"]), fetch(server, f"/v1/log/receipt?index={leaf['index']}")
    raise AssertionError("the demo log has no deposit")


def variants(server: DemoServer) -> dict[str, tuple[str, str]]:
    """name -> (receipt text, verifier key): the real one and four that must be refused."""
    key = fetch(server, "/v1/log/key").strip()
    index, real = deposit_receipt(server)
    lines = real.split("\n")
    extra_line = next(i for i, line in enumerate(lines) if line.startswith("extra "))
    leaf = base64.b64decode(lines[extra_line][6:])
    changed = leaf.replace(b'"time":"20', b'"time":"19', 1)
    assert changed != leaf
    entry_changed = list(lines)
    entry_changed[extra_line] = "extra " + base64.b64encode(changed).decode()
    signature_line = next(i for i, line in enumerate(lines) if line.startswith("— "))
    name, sig = lines[signature_line][2:].split(" ")
    raw = bytearray(base64.b64decode(sig))
    raw[10] ^= 0x01  # a bit of the Ed25519 signature, after the 4-byte key id
    forged = list(lines)
    forged[signature_line] = f"— {name} {base64.b64encode(bytes(raw)).decode()}"
    wrong_key = Signer.generate(key.split("+")[0]).verifier.to_text()
    return {
        "real": (real, key),
        "index": (real.replace(f"\nindex {index}\n", f"\nindex {index + 1}\n"), key),
        "entry": ("\n".join(entry_changed), key),
        "key": (real, wrong_key),
        "signature": ("\n".join(forged), key),
    }


EXPECTED = {
    "real": set(),
    "index": {"seq", "inclusion"},
    "entry": {"inclusion"},
    "key": {"unsigned"},
    "signature": {"signature"},
}


def check_in_browser(page: Page, receipt: str, key: str) -> tuple[str, set[str], str]:
    page.fill("#receipt", receipt)
    page.fill("#key", key)
    page.click("#receipt-form button[type=submit]")
    result = page.locator("#browser-result")
    result.wait_for()
    reasons = set((result.get_attribute("data-reasons") or "").split())
    return str(result.get_attribute("data-verdict")), reasons, result.inner_text()


def cli_verdict(server: DemoServer, tmp: Path, name: str, receipt: str, key: str) -> str:
    path = tmp / f"{name}.txt"
    path.write_text(receipt, encoding="utf-8")
    done = server.cli("audit", "receipt", str(path), "--key", key)
    assert done.returncode in (0, 1), done.stderr
    return "ok" if done.returncode == 0 else "refused"


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_receipts_checked_in_the_browser_agree_with_the_cli(
    server: DemoServer, browser: Browser, lang: str, tmp_path: Path
) -> None:
    context = phone_context(browser, server, lang)
    page = context.new_page()
    watch = Watch(server.url)
    watch.attach(page)
    checks: list[str] = []
    page.on("request", lambda r: checks.append(r.url) if r.method == "POST" else None)
    page.goto("/login")
    page.click("a[href='/transparency']")
    assert page.locator("#log-key").inner_text().strip() == fetch(server, "/v1/log/key").strip()
    assert int(page.locator("#tree-size").inner_text()) >= 60
    page.wait_for_selector("#receipt-form[data-ready='1']")
    found = {}
    for name, (receipt, key) in variants(server).items():
        verdict, reasons, text = check_in_browser(page, receipt, key)
        assert verdict == cli_verdict(server, tmp_path, name, receipt, key), (name, text)
        assert verdict == ("ok" if name == "real" else "refused"), (name, text)
        assert reasons == EXPECTED[name], (name, text)
        if name == "real":
            assert ("存入" if lang == "zh-CN" else "deposit") in text
            assert ("服务器" if lang == "zh-CN" else "server was not") in text
        violations = axe_violations(page)
        if violations:
            found[name] = violations
    assert checks == []  # nothing was sent to the server to check
    assert watch.foreign == [] and watch.csp == []
    assert found == {}, json.dumps(found, ensure_ascii=False, indent=1)
    context.close()


def test_the_no_javascript_check_is_the_servers_and_says_so(
    server: DemoServer, browser: Browser
) -> None:
    context = browser.new_context(java_script_enabled=False, base_url=server.url, locale="en")
    context.add_cookies([{"name": "tb_lang", "value": "en", "url": server.url}])
    page = context.new_page()
    cases = variants(server)
    for name in ("real", "signature"):
        receipt, key = cases[name]
        page.goto("/transparency")
        page.fill("#receipt", receipt)
        page.fill("#key", key)
        page.click("#receipt-form button[type=submit]")
        result = page.locator("#server-result").inner_text()
        assert "ran on the server" in result
        assert ("The receipt is valid." in result) == (name == "real"), result
    context.close()


def test_a_garbled_paste_is_refused_with_the_reason(server: DemoServer, browser: Browser) -> None:
    context = phone_context(browser, server, "en")
    page = context.new_page()
    page.goto("/transparency")
    page.wait_for_selector("#receipt-form[data-ready='1']")
    verdict, reasons, text = check_in_browser(page, "hello", page.input_value("#key"))
    assert (verdict, reasons) == ("refused", {"format"})
    assert "not a c2sp.org/tlog-proof@v1 receipt" in text
    context.close()


def qr_png(receipt: str, path: Path) -> Path:
    """The receipt's QR code as a picture, made as the "My hours" page makes it (segno)."""
    segno.make(receipt, error="l", micro=False).save(str(path), kind="png", scale=4, border=4)
    return path


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_a_picture_of_a_receipts_qr_code_is_read_and_checked(
    server: DemoServer, browser: Browser, lang: str, tmp_path: Path
) -> None:
    """Choosing a picture of a receipt's QR code (a photo or a screenshot) reads it in the
    browser with the vendored jsQR and checks it: the real receipt verifies, one with a
    changed entry byte or a forged signature is refused with the reason the CLI gives; a
    picture without a code says so. Nothing is posted, nothing is fetched from elsewhere."""
    context = phone_context(browser, server, lang)
    page = context.new_page()
    watch = Watch(server.url)
    watch.attach(page)
    posted: list[str] = []
    page.on("request", lambda r: posted.append(r.url) if r.method == "POST" else None)
    page.goto("/transparency")
    page.wait_for_selector("#receipt-form[data-ready='1']")
    picker = page.locator("#receipt-image")
    assert picker.is_visible()
    assert (picker.get_attribute("accept"), picker.get_attribute("capture")) == (
        "image/*",
        "environment",
    )
    assert axe_violations(page) == []
    cases = variants(server)
    for name in ("real", "entry", "signature"):
        receipt, key = cases[name]
        page.fill("#receipt", "")
        page.fill("#key", key)
        page.locator("#result").evaluate("e => e.replaceChildren()")
        picker.set_input_files(str(qr_png(receipt, tmp_path / f"{name}.png")))
        result = page.locator("#browser-result")
        result.wait_for()
        assert page.input_value("#receipt") == receipt  # the text the code carries
        verdict = result.get_attribute("data-verdict")
        reasons = set((result.get_attribute("data-reasons") or "").split())
        assert verdict == cli_verdict(server, tmp_path, name, receipt, key), name
        assert (verdict, reasons) == ("ok" if name == "real" else "refused", EXPECTED[name])
        assert axe_violations(page) == [], name
    page.screenshot(
        path=str(tmp_path / "no-code.png"), clip={"x": 0, "y": 0, "width": 200, "height": 200}
    )
    picker.set_input_files(str(tmp_path / "no-code.png"))
    page.locator("#scan-result").wait_for()
    assert ("没有" if lang == "zh-CN" else "No QR code") in page.inner_text("#scan-result")
    assert posted == [] and watch.foreign == [] and watch.csp == []
    context.close()


def signed_documents(server: DemoServer) -> dict[str, tuple[str, str]]:
    """name -> (document JSON, statement key): the demo elder's statement (her son asks) and
    certificate, and changed copies that must be refused."""
    api = Api(server, "family")
    elder = next(g["member_id"] for g in api.get("/v1/me")["roles"] if g["role"] == "family_proxy")
    statement = api.get(f"/v1/members/{elder}/statement", **{"from": "2026-01-01"})
    assert statement["entries"], "the demo elder has entries (the demo's exchange)"
    certificate = api.get(f"/v1/members/{elder}/certificate")
    key = fetch(server, "/v1/statements/key").strip()
    minutes = json.loads(json.dumps(statement))
    minutes["entries"][0]["minutes"] += 1
    totals = json.loads(json.dumps(statement))
    totals["totals"]["net"] += 60
    forged = json.loads(json.dumps(statement))
    raw = bytearray(base64.b64decode(forged["signature"]["value"]))
    raw[3] ^= 0x01
    forged["signature"]["value"] = base64.b64encode(bytes(raw)).decode()
    other = Signer.generate(key.split("+")[0]).verifier.to_text()
    text = lambda document: json.dumps(document, ensure_ascii=False)  # noqa: E731
    return {
        "statement": (text(statement), key),
        "certificate": (text(certificate), key),
        "minutes": (text(minutes), key),
        "totals": (text(totals), key),
        "signature": (text(forged), key),
        "key": (text(statement), other),
    }


STATEMENT_EXPECTED = {
    "statement": set(),
    "certificate": set(),
    "minutes": {"signature-bad", "entry"},
    "totals": {"signature-bad", "totals"},
    "signature": {"signature-bad"},
    "key": {"signature-key", "signature-bad"},
}


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_statements_checked_in_the_browser_agree_with_the_cli(
    server: DemoServer, browser: Browser, lang: str, tmp_path: Path
) -> None:
    context = phone_context(browser, server, lang)
    page = context.new_page()
    watch = Watch(server.url)
    watch.attach(page)
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    page.goto("/transparency")
    page.wait_for_selector("#statement-form[data-ready='1']")
    assert page.input_value("#statement-key") == fetch(server, "/v1/statements/key").strip()
    log_key = fetch(server, "/v1/log/key").strip()
    found = {}
    for name, (document, key) in signed_documents(server).items():
        page.fill("#statement", document)
        page.fill("#statement-key", key)
        page.click("#statement-form button[type=submit]")
        result = page.locator("#statement-verdict")
        result.wait_for()
        verdict = result.get_attribute("data-verdict")
        reasons = set((result.get_attribute("data-reasons") or "").split())
        path = tmp_path / f"{name}.json"
        path.write_text(document, encoding="utf-8")
        done = server.cli("audit", "statement", str(path), "--statement-key", key, "--key", log_key)
        assert done.returncode in (0, 1), done.stderr
        assert verdict == ("ok" if done.returncode == 0 else "refused"), (name, done.stdout)
        assert reasons == STATEMENT_EXPECTED[name], (name, result.inner_text())
        if not reasons:
            assert ("服务器" if lang == "zh-CN" else "server was not") in result.inner_text()
        violations = axe_violations(page)
        if violations:
            found[name] = violations
        result.evaluate("node => node.remove()")
    assert posts == []  # the browser checked: nothing was sent
    assert watch.foreign == [] and watch.csp == []
    assert found == {}, json.dumps(found, ensure_ascii=False, indent=1)
    context.close()


def test_without_javascript_the_server_checks_a_statement_and_says_so(
    server: DemoServer, browser: Browser
) -> None:
    context = browser.new_context(java_script_enabled=False, base_url=server.url, locale="en")
    context.add_cookies([{"name": "tb_lang", "value": "en", "url": server.url}])
    page = context.new_page()
    cases = signed_documents(server)
    for name in ("statement", "signature"):
        document, _ = cases[name]
        page.goto("/transparency")
        page.fill("#statement", document)
        page.click("#statement-form button[type=submit]")
        result = page.locator("#statement-server-result").inner_text()
        assert "ran on the server" in result
        assert ("The document is valid." in result) == (name == "statement"), result
    context.close()


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_the_statistics_page_on_a_phone(server: DemoServer, browser: Browser, lang: str) -> None:
    """The demo's two published half years on a 360 px phone: axe finds nothing, nothing
    scrolls sideways but the wide table (a focusable region), the ages are youngest first."""
    context = phone_context(browser, server, lang)
    page = context.new_page()
    page.goto("/statistics")
    assert page.locator("section[id^='report-']").count() == 2
    assert axe_violations(page) == []
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    ages = page.locator("section[id^='report-']").first.locator("table").first
    assert ages.locator("tbody th").all_inner_texts() == [
        "0–89",
        "90–179",
        "180–364",
        "365–729",
        "730+",
    ]
    context.close()
