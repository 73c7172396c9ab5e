"""The catalogs: every message in the code is in both, zh-CN translates every one, and the
placeholders of each translation match its message."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from babel.messages.pofile import read_po

from accounts.errors import InvalidInput
from web.i18n import LOCALE_DIR, describe, describe_error, gettext_for, negotiate

ROOT = Path(__file__).resolve().parents[1]
PLACEHOLDER = re.compile(r"%\(\w+\)s")


def extracted(tmp_path: Path) -> set[str]:
    pot = tmp_path / "messages.pot"
    subprocess.run(
        [
            str(Path(sys.executable).with_name("pybabel")),
            "-q",
            "extract",
            "-F",
            "babel.cfg",
            "-k",
            "N_",
            "-k",
            "translate:2",
            "-k",
            "InvalidInput",
            "-k",
            "WeakPassword",
            "-k",
            "Conflict",
            "-k",
            "Words",
            "-o",
            str(pot),
            ".",
        ],
        cwd=ROOT,
        check=True,
    )
    with pot.open("rb") as handle:
        return {m.id for m in read_po(handle) if m.id}


def catalog(locale: str) -> dict[str, str]:
    with (LOCALE_DIR / locale / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        return {m.id: m.string for m in read_po(handle) if m.id and "fuzzy" not in m.flags}


def test_catalogs_hold_every_message(tmp_path: Path) -> None:
    messages = extracted(tmp_path)
    zh, en = catalog("zh_CN"), catalog("en")
    assert messages - zh.keys() == set(), "run make i18n-extract i18n-update and translate"
    assert messages - en.keys() == set()
    untranslated = [m for m in messages if not zh[m]]
    assert untranslated == []
    wrong = [m for m in messages if set(PLACEHOLDER.findall(m)) != set(PLACEHOLDER.findall(zh[m]))]
    assert wrong == []


def test_negotiation() -> None:
    assert negotiate(None, None) == "zh-CN"
    assert negotiate(None, None, "en") == "en"
    assert negotiate("en", "zh-CN") == "en"
    assert negotiate("xx", "en-GB,zh;q=0.8") == "en"
    assert negotiate(None, "fr, zh-TW;q=0.5, en;q=0.4") == "zh-CN"
    assert negotiate(None, "en;q=0, zh;q=0.1") == "zh-CN"


def test_domain_messages_are_translated_with_their_values() -> None:
    title, detail = describe(
        "login-throttled", "too many login attempts; try again in 31 seconds", "zh-CN"
    )
    assert (title, detail) == ("登录尝试过多", "登录尝试次数过多，请 31 秒后再试")
    assert describe("invalid-input", "name must not be empty", "zh-CN")[1] == "姓名不能为空"
    # A message without a translation keeps its English words after a translated title.
    assert describe("conflict", "something new", "zh-CN") == ("状态冲突", "状态冲突: something new")
    assert describe("conflict", "something new", "en") == ("Conflict", "something new")
    assert gettext_for("en")("Log in") == "Log in"


def test_a_refusal_without_values_keeps_a_percent_sign_of_its_translation() -> None:
    """A translation may hold a bare "%" (代为确认：占比（%）): with nothing to fill in, it is
    shown as written, not taken for a placeholder (a 500)."""
    share = InvalidInput("Staff confirming: share, %", field="staff_share_percent")
    assert describe_error(share, "zh-CN")[1] == "代为确认：占比（%）"
    days = InvalidInput("%(field)s must be a whole number", field="days")
    assert describe_error(days, "zh-CN")[1] == "回看天数 须为整数"
