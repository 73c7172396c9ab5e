"""CSV exports of the statistics (reports.csvfile, reports.exports, /v1/exports/…): files a
spreadsheet on Windows opens with Chinese intact and no formula run, streamed page by page,
sealed to the recipient when they carry personal data, and every export in the audit trail.
Real SQLite and PostgreSQL; the CSV read back with Python's csv module and by a spreadsheet,
LibreOffice Calc (``calc_reads``)."""

from __future__ import annotations

import base64
import csv
import io
import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import openpyxl
import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl.public import PrivateKey

import reports.exports
from accounts.errors import Forbidden, InvalidInput
from audit.trail import AuditTrail
from ledger.config import Settings
from ledger.log import Log
from reports.csvfile import (
    BOM,
    attachment,
    csv_bytes,
    neutralised,
    opened,
    recipient_key,
    sealed,
)
from reports.exports import Exports
from tests.accounts_world import World, build_world
from tests.stats_world import SHANGHAI, Month, local, open_month

HEADER = ["a", "b", "c"]


def read(document: bytes) -> list[list[str]]:
    text = document.decode("utf-8")
    assert text.startswith(BOM)
    return list(csv.reader(io.StringIO(text[1:], newline="")))


@given(st.lists(st.lists(st.text(max_size=12), min_size=3, max_size=3), max_size=8))
def test_any_text_reads_back_the_same_except_a_formula_start_gets_an_apostrophe(
    rows: list[list[str]],
) -> None:
    back = read(csv_bytes(HEADER, rows))
    assert back[0] == HEADER
    expected = [
        ["'" + c if c.startswith(("=", "+", "-", "@", "\t", "\r")) else c for c in row]
        for row in rows
    ]
    assert back[1:] == expected


def test_lines_end_in_crlf_and_chinese_is_utf8_after_a_bom() -> None:
    document = csv_bytes(["机构", "人数"], [["鼓楼社区服务中心", 33], ['说"好",再见', -5]])
    assert document.startswith(b"\xef\xbb\xbf")
    assert document.count(b"\r\n") == 3 and b"\n" not in document.replace(b"\r\n", b"")
    assert read(document) == [["机构", "人数"], ["鼓楼社区服务中心", "33"], ['说"好",再见', "-5"]]


def test_formula_cells_are_neutralised_and_numbers_are_not() -> None:
    for attack in ('=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1"):
        assert neutralised(attack) == "'" + attack
    assert neutralised(-60) == -60 and neutralised(0.5) == 0.5 and neutralised(None) == ""
    assert neutralised(datetime(2026, 3, 1, 8, 30, tzinfo=SHANGHAI)) == "2026-03-01 08:30:00"


def test_a_chinese_file_name_is_sent_plain_and_as_rfc5987() -> None:
    value = attachment("探访覆盖率-2026-03.csv")
    assert value.startswith('attachment; filename="')
    assert "filename*=UTF-8''%E6%8E%A2%E8%AE%BF" in value
    assert value.isascii() and '"_____-2026-03.csv"' in value


def test_a_sealed_export_opens_only_with_the_recipients_key() -> None:
    mine, other = PrivateKey.generate(), PrivateKey.generate()
    text = base64.b64encode(bytes(mine.public_key)).decode()
    box = sealed(recipient_key(text), b"secret,csv")
    assert opened(mine, box) == b"secret,csv"
    with pytest.raises(ValueError, match="not sealed to this key"):
        opened(other, box)
    changed = box[:-1] + bytes([box[-1] ^ 1])
    with pytest.raises(ValueError, match="or it was changed"):
        opened(mine, changed)
    url_safe = base64.urlsafe_b64encode(bytes(mine.public_key)).decode().rstrip("=")
    assert bytes(recipient_key(url_safe)) == bytes(mine.public_key)
    for bad in (None, "", "!!!", base64.b64encode(b"short").decode()):
        with pytest.raises(InvalidInput) as caught:
            recipient_key(bad)
        assert caught.value.field == "recipient_key"


@pytest.fixture
def month(db_url: str) -> Iterator[Month]:
    yield from open_month(db_url)


def exports_of(m: Month) -> Exports:
    return Exports(m.accounts.store, m.accounts, m.coverage, m.care.policy, clock=m.clock)


def build(m: Month) -> list[str]:
    """March: three visits at a, one at b (one of them is a rejected record), three elders not
    visited; a name that begins like a formula."""
    m.elder("e1", "a", "living_alone")
    m.elder("e2", "a", "disabled")
    m.elder("e3", "b", "low_income")
    m.elder("e4", "b", "advanced_age")
    records = [
        m.visit("e1", local(2026, 3, 1, 0, 30)),
        m.visit("e1", local(2026, 3, 9, 10)),
        m.visit("e3", local(2026, 3, 31, 23)),
        m.visit("e2", local(2026, 3, 20, 10), verify=False),
    ]
    m.care.reject(m.people["staff-a"], records[-1], "no such visit")
    m.visit("e1", local(2026, 4, 1, 0, 5))  # April in Shanghai: not in March's export
    m.clock.now = local(2026, 4, 3)
    return records


def text_of(export: reports.exports.Export) -> bytes:
    return b"".join(export.chunks)


def test_the_records_export_is_the_month_in_the_banks_time_zone_page_by_page(
    month: Month, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = month
    records = build(m)
    monkeypatch.setattr(reports.exports, "PAGE", 2)  # four records: two full pages, one empty
    export = exports_of(m).records_export(m.people["admin"], "2026-03", None, None, HEADER)
    assert export.filename == "服务记录-service-records-2026-03.csv" and export.sealed_to is None
    rows = read(text_of(export))[1:]
    assert [r[0] for r in rows] == [*records[:2], records[3], records[2]]  # by check-in
    first = rows[0]
    assert first[1] == "中心a" and first[2:4] == ["nursing", "护理"]
    assert first[4:7] == ["2026-03-01 00:30:00", "2026-03-01 01:30:00", "60"]
    assert first[7:9] == ["verified", "elder"] and first[11] == "60"
    assert rows[2][7] == "rejected" and rows[2][10] == ""
    assert len(first) == len(reports.exports.RECORD_COLUMNS)
    staff = exports_of(m).records_export(m.people["staff-b"], "2026-03", None, None, HEADER)
    assert [r[0] for r in read(text_of(staff))[1:]] == [records[2]]  # their organisation only
    auditor = exports_of(m).records_export(m.people["auditor"], "2026-03", None, None, HEADER)
    assert len(read(text_of(auditor))) == 5


def test_names_and_the_elders_to_visit_are_sealed_and_for_staff_and_admins(month: Month) -> None:
    m = month
    build(m)
    key = PrivateKey.generate()
    exports = exports_of(m)
    named = exports.records_export(m.people["staff-a"], "2026-03", None, key.public_key, HEADER)
    assert named.filename.endswith(".csv.sealed") and named.media_type == "application/octet-stream"
    rows = read(opened(key, text_of(named)))[1:]
    assert len(rows) == 3 and all(r[-2].startswith("志") and r[-1].startswith("长") for r in rows)
    assert all("志愿者" not in r and "长者e1" not in r for r in rows)  # masked, never whole
    unvisited = exports.unvisited_export(m.people["admin"], "2026-03", None, key.public_key, HEADER)
    listed = read(opened(key, text_of(unvisited)))[1:]
    assert {r[0] for r in listed} == {m.ids["e2"], m.ids["e4"]}  # e2's record was rejected
    assert {r[4] for r in listed} == {"disabled", "advanced_age"}
    for refused in (
        lambda: exports.unvisited_export(m.people["auditor"], "2026-03", None, key.public_key, []),
        lambda: exports.records_export(m.people["auditor"], "2026-03", None, key.public_key, []),
        lambda: exports.unvisited_export(m.people["vol"], "2026-03", None, key.public_key, []),
    ):
        with pytest.raises(Forbidden):
            refused()


def test_the_coverage_export_has_the_figures_of_the_coverage(month: Month) -> None:
    m = month
    build(m)
    export = exports_of(m).coverage_export(m.people["admin"], "2026-03", None, HEADER)
    rows = read(text_of(export))
    assert rows[1:] == [
        ["中心a", "2", "1", "0.5"],
        ["中心b", "2", "1", "0.5"],
        ["", "4", "2", "0.5"],
    ]
    with pytest.raises(Forbidden):
        exports_of(m).coverage_export(m.people["staff-a"], "2026-03", m.ids["b"], HEADER)
    with pytest.raises(InvalidInput):
        exports_of(m).records_export(m.people["admin"], "2026-13", None, None, HEADER)


@pytest.fixture
def world(settings: Settings, log: Log) -> Iterator[World]:
    yield from build_world(settings, log)


def export_events(w: World) -> list[tuple[str, str, int, list[str]]]:
    trail: AuditTrail = w.client.app.state.audit
    return [
        (e.actor, e.action, e.status, list(e.objects))
        for e in trail.events(bank_id=None, action="GET /v1/exports/", limit=1000)
    ]


def test_over_http_files_come_translated_sealed_and_recorded(world: World) -> None:
    w = world
    zh = {**w.as_("staff-a"), "Accept-Language": "zh-CN"}
    answer = w.client.get("/v1/exports/coverage.csv?month=2026-03", headers=zh)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv")
    assert "filename*=UTF-8''" in answer.headers["content-disposition"]
    assert answer.headers["cache-control"] == "no-store"
    assert read(answer.content)[0] == ["机构", "重点老人", "已探访", "探访率"]
    english = w.client.get("/v1/exports/records.csv?month=2026-03", headers=w.as_("staff-a"))
    assert read(english.content)[0][:2] == ["record id", "organisation"]

    missing = w.client.get("/v1/exports/unvisited.csv?month=2026-03", headers=zh)
    assert missing.status_code == 400 and missing.json()["field"] == "recipient_key"
    assert "公钥" in missing.json()["detail"]
    key = PrivateKey.generate()
    public = base64.urlsafe_b64encode(bytes(key.public_key)).decode()
    box = w.client.get(
        "/v1/exports/unvisited.csv",
        params={"month": "2026-03", "recipient_key": public},
        headers=zh,
    )
    assert box.status_code == 200 and box.headers["x-sealed-to"] == public[:11]
    assert read(opened(key, box.content))[0][0] == "成员编号"
    refused = w.client.get(
        "/v1/exports/unvisited.csv", params={"recipient_key": public}, headers=w.as_("auditor")
    )
    assert refused.status_code == 403

    events = export_events(w)
    staff, auditor = w.ids["staff-a"], w.ids["auditor"]
    assert (staff, "GET /v1/exports/coverage.csv", 200, ["month:2026-03"]) in events
    assert (staff, "GET /v1/exports/unvisited.csv", 400, ["month:2026-03"]) in events
    assert (
        staff,
        "GET /v1/exports/unvisited.csv",
        200,
        ["month:2026-03", f"sealed-to:{public[:11]}"],
    ) in events
    assert (auditor, "GET /v1/exports/unvisited.csv", 403, [f"sealed-to:{public[:11]}"]) in events


def calc_reads(tmp_path: Path, document: bytes) -> list[list[object]]:
    """The CSV as LibreOffice Calc imports it (told the file is UTF-8, as its import dialog
    asks; Excel reads the BOM), through a real conversion to XLSX read back by openpyxl:
    (value, cell type) per cell, so a formula would show as type 'f'."""
    soffice = shutil.which("soffice")
    if soffice is None:
        message = "LibreOffice Calc (Debian's libreoffice-calc-nogui) is not installed"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI requires it", pytrace=False)
        pytest.skip(message)
    source = tmp_path / "export.csv"
    source.write_bytes(document)
    subprocess.run(
        [
            soffice,
            f"-env:UserInstallation=file://{tmp_path / 'profile'}",  # one profile per test
            "--headless",
            "--norestore",
            "--infilter=CSV:44,34,76,1",  # comma, double quote, UTF-8, from line 1
            "--convert-to",
            "xlsx",
            "--outdir",
            str(tmp_path),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    sheet = openpyxl.load_workbook(tmp_path / "export.xlsx").active
    assert sheet is not None
    return [[(cell.value, cell.data_type) for cell in row] for row in sheet.iter_rows()]


def test_libreoffice_calc_reads_chinese_numbers_and_formula_lookalikes_as_written(
    tmp_path: Path,
) -> None:
    document = csv_bytes(
        ["机构", "人数", "备注"],
        [
            ["鼓楼社区服务中心", 33, '=HYPERLINK("http://x","点我")'],
            ['说"好",再见', -5, "+1+1"],
            ["@SUM(A1)", 60, "-2+3"],
        ],
    )
    cells = calc_reads(tmp_path, document)
    assert cells[0] == [("机构", "s"), ("人数", "s"), ("备注", "s")]  # the BOM is not a character
    assert cells[1] == [
        ("鼓楼社区服务中心", "s"),
        (33, "n"),
        ('\'=HYPERLINK("http://x","点我")', "s"),  # text, shown with its apostrophe: no formula
    ]
    assert cells[2] == [('说"好",再见', "s"), (-5, "n"), ("'+1+1", "s")]
    assert cells[3] == [("'@SUM(A1)", "s"), (60, "n"), ("'-2+3", "s")]
    # The same cell not neutralised is a formula to Calc: what the apostrophe prevents.
    (tmp_path / "raw").mkdir()
    raw = calc_reads(tmp_path / "raw", BOM.encode() + b"a\r\n=1+1\r\n")
    assert raw[1] == [("=1+1", "f")]


def test_libreoffice_calc_reads_the_records_export_as_the_csv_module_does(
    month: Month, tmp_path: Path
) -> None:
    m = month
    build(m)
    export = exports_of(m).records_export(m.people["admin"], "2026-03", None, None, HEADER)
    document = text_of(export)
    rows = read(document)
    cells = calc_reads(tmp_path, document)
    assert len(cells) == len(rows) == 5
    for row, calc in zip(rows, cells, strict=True):
        assert all(kind != "f" for _, kind in calc)  # nothing became a formula
        shown = ["" if value is None else str(value) for value, _ in calc]
        width = max(len(row), len(shown))  # a sheet is a rectangle: short rows end in blanks
        assert shown + [""] * (width - len(shown)) == row + [""] * (width - len(row))
    assert cells[1][1] == ("中心a", "s") and cells[1][6] == (60, "n")
