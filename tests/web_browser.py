"""The browser harness: the real ``timebank serve`` on a free 127.0.0.1 port over a freshly
seeded demo database, Debian's Chromium driven by Playwright (never ``playwright install``),
and axe-core from npm injected into each page for WCAG 2.2 A/AA checks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, StorageState, sync_playwright

from web.security import SESSION_COOKIE

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
PHONE = {"width": 360, "height": 740}
TIMEBANK = Path(sys.executable).with_name("timebank")


def require_browser() -> None:
    missing = [str(p) for p in (CHROMIUM, AXE) if not p.exists()]
    if not missing:
        return
    message = f"browser tests need {', '.join(missing)} (apt-get install chromium; npm ci)"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class DemoServer:
    url: str
    env: dict[str, str]
    log_path: Path

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(TIMEBANK), *args], env=self.env, capture_output=True, text=True, timeout=120
        )


def start_demo_server(
    data_dir: Path, entries: int = 60, database_url: str | None = None
) -> Iterator[DemoServer]:
    """The demo served on a free port: on SQLite in ``data_dir``, or on ``database_url``."""
    env = {
        **os.environ,
        "TIMEBANK_DATA_DIR": str(data_dir),
        "TIMEBANK_AUDIT_SEAL_SECONDS": "3600",
    }
    env.pop("TIMEBANK_DATABASE_URL", None)
    if database_url is not None:
        env["TIMEBANK_DATABASE_URL"] = database_url
    server = DemoServer(f"http://127.0.0.1:{free_port()}", env, data_dir / "server.log")
    for args in (("migrate",), ("seed", "--demo", "--entries", str(entries))):
        done = server.cli(*args)
        assert done.returncode == 0, done.stderr
    yield from serve(server)


def serve(server: DemoServer) -> Iterator[DemoServer]:
    """``timebank serve`` on ``server``'s port and environment until the caller is done."""
    port = int(server.url.rsplit(":", 1)[1])
    with server.log_path.open("w") as log:
        process = subprocess.Popen(
            [str(TIMEBANK), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=server.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{server.url}/healthz", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(server.log_path.read_text()) from None
                time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def launch_chromium() -> Iterator[Browser]:
    require_browser()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Watch:
    """What a page did that it must not: requests leaving the server, CSP violations."""

    base: str
    foreign: list[str] = field(default_factory=list)
    csp: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        def on_request(request: Any) -> None:
            if not request.url.startswith((self.base, "data:", "blob:")):
                self.foreign.append(request.url)

        def on_console(message: Any) -> None:
            if "Content Security Policy" in message.text:
                self.csp.append(message.text)

        page.on("request", on_request)
        page.on("console", on_console)


def phone_context(
    browser: Browser,
    server: DemoServer,
    lang: str = "zh-CN",
    storage_state: StorageState | None = None,
    **cookies: str,
) -> BrowserContext:
    """A phone's browser in ``lang`` with ``cookies`` set (and ``storage_state``'s, a session
    signed in before, when given)."""
    context = browser.new_context(
        viewport=PHONE, locale=lang, base_url=server.url, storage_state=storage_state
    )
    jar = {"tb_lang": lang, **cookies}
    context.add_cookies([{"name": k, "value": v, "url": server.url} for k, v in jar.items()])
    return context


def login(page: Page, username: str, password: str) -> None:
    page.goto("/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("form.stack button[type=submit]")
    page.wait_for_load_state()


def signed_in(browser: Browser, server: DemoServer, account: tuple[str, str]) -> StorageState:
    """A session of ``account`` (its cookie), for fresh browser contexts to start logged in."""
    context = browser.new_context(base_url=server.url)
    login(context.new_page(), *account)
    session = context.storage_state()
    context.close()
    assert any(c["name"] == SESSION_COOKIE for c in session["cookies"]), account
    return session


def settled(page: Page) -> None:
    """Wait until the page is laid out as it stays: its load event (stylesheets, scripts and
    images in) and its fonts. No page fetches anything after that (the app has no htmx
    requests, lazy images or polling), so waiting for the network to stay idle for half a
    second (``networkidle``) would only add that half second to each visit."""
    page.wait_for_load_state()
    page.evaluate("() => document.fonts.ready.then(() => null)")


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.2 A/AA violations on the page as it stands."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))
    result = page.evaluate(
        "tags => window.axe.run(document, {runOnly: {type: 'tag', values: tags}})", WCAG_TAGS
    )
    return [
        {"id": v["id"], "help": v["help"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result["violations"]
    ]
