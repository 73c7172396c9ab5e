"""XLSX exports of the statistics (reports.xlsxfile, /v1/exports/*.xlsx): the CSV's columns and
rows in a workbook, numbers as numbers, times as times, every text cell a string (never a
formula), sealed to the recipient when it carries personal data, every export audited.
Real SQLite and PostgreSQL; each workbook read back with openpyxl."""

from __future__ import annotations

import base64
import io
import re
import tempfile
import zipfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl.public import PrivateKey
from openpyxl import load_workbook
from openpyxl.worksheet.worksheet import Worksheet

import reports.exports
from accounts.errors import Forbidden
from ledger.config import Settings
from ledger.log import Log
from reports.csvfile import Cell, neutralised, opened
from reports.exports import Export, Exports
from reports.xlsxfile import MEDIA_TYPE, xlsx_bytes
from tests.accounts_world import World, build_world
from tests.stats_world import SHANGHAI, Month, local, open_month
from tests.test_stats_exports import HEADER, build, export_events, read

ATTACKS = ('=HYPERLINK("http://x","点我")', "+1+1", "-2+3", "@SUM(A1)", "=1", "#N/A")


def sheet_of(document: bytes) -> Worksheet:
    assert document.startswith(b"PK\x03\x04")  # a zip: what Excel opens
    sheet = load_workbook(io.BytesIO(document)).active
    assert isinstance(sheet, Worksheet)
    return sheet


def values(document: bytes) -> list[list[object]]:
    return [list(row) for row in sheet_of(document).iter_rows(values_only=True)]


def sheet_xml(document: bytes) -> str:
    return zipfile.ZipFile(io.BytesIO(document)).read("xl/worksheets/sheet1.xml").decode()


@given(st.lists(st.lists(st.text(max_size=12), min_size=3, max_size=3), max_size=8))
def test_any_text_reads_back_as_the_same_string_never_a_formula(rows: list[list[str]]) -> None:
    document = xlsx_bytes(HEADER, rows, "2026-03")
    sheet = sheet_of(document)
    back = [[c.value for c in row] for row in sheet.iter_rows(min_row=2, max_col=3)]
    assert [c.value for c in sheet[1]] == HEADER
    controls = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
    lines = re.compile(r"\r\n?")
    expected = [[lines.sub("\n", controls.sub("\ufffd", c)) or None for c in row] for row in rows]
    assert back == expected
    assert all(c.data_type == "s" for row in sheet.iter_rows() for c in row if c.value)
    assert "<f>" not in sheet_xml(document)


def test_formula_text_stays_text_and_numbers_and_times_keep_their_type() -> None:
    at = datetime(2026, 3, 1, 8, 30, tzinfo=SHANGHAI)
    rows = [[attack, 60, at] for attack in ATTACKS] + [["鼓楼社区服务中心", 0.6667, None]]
    document = xlsx_bytes(["机构", "分钟", "时间"], rows, "2026-03")
    sheet = sheet_of(document)
    assert [c.value for c in sheet[1]] == ["机构", "分钟", "时间"]
    for index, attack in enumerate(ATTACKS, 2):
        cell = sheet.cell(index, 1)
        assert cell.value == attack and cell.data_type == "s"  # not "f", not the error "e"
        assert cell.quotePrefix == attack.startswith(("=", "+", "-", "@"))  # stays text if edited
    assert "<f>" not in sheet_xml(document) and 't="e"' not in sheet_xml(document)
    minutes, time = sheet.cell(2, 2), sheet.cell(2, 3)
    assert minutes.value == 60 and minutes.data_type == "n"
    assert time.value == datetime(2026, 3, 1, 8, 30) and time.is_date  # the bank's wall clock
    assert time.number_format == "yyyy-mm-dd hh:mm:ss"
    last = len(ATTACKS) + 2
    assert [sheet.cell(last, i).value for i in (1, 2, 3)] == ["鼓楼社区服务中心", 0.6667, None]
    assert sheet.freeze_panes == "A2"
    assert sheet.column_dimensions["C"].width >= 19  # a time is not shown as ####


def test_a_workbook_leaves_no_temporary_file_made_or_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where openpyxl keeps the rows

    def failing() -> Iterator[list[Cell]]:
        yield ["中心a", 1, None]
        raise ConnectionError("the database went away")

    with pytest.raises(ConnectionError):
        xlsx_bytes(HEADER, failing(), "2026-03")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == []
    made = xlsx_bytes(HEADER, [["中心a", 1, None]] * 3, "2026-03")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert len(values(made)) == 4 and left == []


def as_csv_cell(value: object) -> str:
    """What the CSV writes for the value the workbook holds (the cross-check of the formats)."""
    if isinstance(value, str | int | float | datetime) or value is None:
        shown = neutralised(
            value.replace(tzinfo=SHANGHAI) if isinstance(value, datetime) else value
        )
        return str(shown)
    raise AssertionError(f"unexpected cell {value!r}")


@pytest.fixture
def month(db_url: str) -> Iterator[Month]:
    yield from open_month(db_url)


def exports_of(m: Month) -> Exports:
    return Exports(m.accounts.store, m.accounts, m.coverage, m.care.policy, clock=m.clock)


def content(export: Export) -> bytes:
    return b"".join(export.chunks)


def test_the_records_workbook_has_the_csvs_rows_page_by_page(
    month: Month, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = month
    attack = '=HYPERLINK("http://x","点我")'
    m.care.upsert_service_type(m.people["admin"], "evil", attack, "evil", "nursing", 1000)
    records = build(m)
    evil = m.visit("e3", local(2026, 3, 30, 9), service="evil")
    m.clock.now = local(2026, 4, 3)
    monkeypatch.setattr(reports.exports, "PAGE", 2)  # five records: three pages, the last short
    exports = exports_of(m)
    export = exports.records_export(m.people["admin"], "2026-03", None, None, HEADER, "xlsx")
    assert export.filename == "服务记录-service-records-2026-03.xlsx" and export.sealed_to is None
    assert export.media_type == MEDIA_TYPE
    document = content(export)
    sheet = sheet_of(document)
    assert sheet.title == "2026-03"
    rows = values(document)
    assert rows[0] == HEADER + [None] * (len(reports.exports.RECORD_COLUMNS) - len(HEADER))
    assert [r[0] for r in rows[1:]] == [*records[:2], records[3], evil, records[2]]
    first = rows[1]
    assert first[1:4] == ["中心a", "nursing", "护理"]
    assert first[4:7] == [datetime(2026, 3, 1, 0, 30), datetime(2026, 3, 1, 1, 30), 60]
    assert first[7:9] == ["verified", "elder"] and first[11] == 60
    assert isinstance(first[10], int)  # the deposit's entry: a number, not text
    assert rows[3][7] == "rejected" and rows[3][10] is None
    evil_cell = sheet.cell(5, 4)
    assert evil_cell.value == attack and evil_cell.data_type == "s" and evil_cell.quotePrefix

    csv = exports.records_export(m.people["admin"], "2026-03", None, None, HEADER)
    csv_rows = read(content(csv))[1:]
    assert [[as_csv_cell(v) for v in row] for row in rows[1:]] == csv_rows
    assert csv_rows[3][3] == "'" + attack  # the CSV's apostrophe; the workbook needs none

    staff = exports.records_export(m.people["staff-b"], "2026-03", None, None, HEADER, "xlsx")
    assert [r[0] for r in values(content(staff))[1:]] == [evil, records[2]]  # theirs only


def test_the_coverage_workbook_has_the_figures_as_numbers(month: Month) -> None:
    m = month
    build(m)
    export = exports_of(m).coverage_export(m.people["admin"], "2026-03", None, HEADER, "xlsx")
    assert export.filename == "探访覆盖率-visit-coverage-2026-03.xlsx"
    assert values(content(export))[1:] == [
        ["中心a", 2, 1, 0.5],
        ["中心b", 2, 1, 0.5],
        [None, 4, 2, 0.5],
    ]
    with pytest.raises(Forbidden):
        exports_of(m).coverage_export(m.people["staff-a"], "2026-03", m.ids["b"], HEADER, "xlsx")


def test_sealed_workbooks_open_only_with_the_recipients_key(month: Month) -> None:
    m = month
    build(m)
    key, other = PrivateKey.generate(), PrivateKey.generate()
    exports = exports_of(m)
    unvisited = exports.unvisited_export(
        m.people["admin"], "2026-03", None, key.public_key, HEADER, "xlsx"
    )
    assert unvisited.filename == "待探访老人-unvisited-2026-03.xlsx.sealed"
    assert unvisited.media_type == "application/octet-stream"
    box = content(unvisited)
    assert b"PK\x03\x04" not in box  # ciphertext at rest
    with pytest.raises(ValueError, match="not sealed to this key"):
        opened(other, box)
    listed = values(opened(key, box))[1:]
    assert {r[0] for r in listed} == {m.ids["e2"], m.ids["e4"]}
    assert {r[4] for r in listed} == {"disabled", "advanced_age"}
    assert all(r[5:] in ([], [None]) for r in listed)  # neither was ever visited: no time
    named = exports.records_export(
        m.people["staff-a"], "2026-03", None, key.public_key, HEADER, "xlsx"
    )
    assert named.filename.endswith(".xlsx.sealed")
    rows = values(opened(key, content(named)))[1:]
    assert len(rows) == 3 and all(str(r[-2]).startswith("志") for r in rows)
    assert all(str(r[-1]).startswith("长") and r[-1] != "长者e1" for r in rows)  # masked
    for refused in (
        lambda: exports.unvisited_export(
            m.people["auditor"], "2026-03", None, key.public_key, [], "xlsx"
        ),
        lambda: exports.records_export(
            m.people["auditor"], "2026-03", None, key.public_key, [], "xlsx"
        ),
    ):
        with pytest.raises(Forbidden):
            refused()


@pytest.fixture
def world(settings: Settings, log: Log) -> Iterator[World]:
    yield from build_world(settings, log)


def test_over_http_workbooks_come_translated_sealed_and_recorded(world: World) -> None:
    w = world
    zh = {**w.as_("staff-a"), "Accept-Language": "zh-CN"}
    answer = w.client.get("/v1/exports/coverage.xlsx?month=2026-03", headers=zh)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == MEDIA_TYPE
    disposition = answer.headers["content-disposition"]
    assert disposition.isascii() and disposition.endswith("-visit-coverage-2026-03.xlsx")
    assert "filename*=UTF-8''%E6%8E%A2%E8%AE%BF%E8%A6%86%E7%9B%96%E7%8E%87-" in disposition
    assert answer.headers["cache-control"] == "no-store"
    assert values(answer.content)[0] == ["机构", "重点老人", "已探访", "探访率"]
    other_org = w.client.get(
        "/v1/exports/coverage.xlsx", params={"org_id": w.ids["org_b"]}, headers=zh
    )
    assert other_org.status_code == 403  # the same call for their own org succeeded above
    english = w.client.get("/v1/exports/records.xlsx?month=2026-03", headers=w.as_("staff-a"))
    assert english.status_code == 200
    assert values(english.content)[0][:2] == ["record id", "organisation"]

    missing = w.client.get("/v1/exports/unvisited.xlsx?month=2026-03", headers=zh)
    assert missing.status_code == 400 and missing.json()["field"] == "recipient_key"
    assert "公钥" in missing.json()["detail"]
    key, wrong = PrivateKey.generate(), PrivateKey.generate()
    public = base64.urlsafe_b64encode(bytes(key.public_key)).decode()
    params = {"month": "2026-03", "recipient_key": public}
    box = w.client.get("/v1/exports/unvisited.xlsx", params=params, headers=zh)
    assert box.status_code == 200 and box.headers["x-sealed-to"] == public[:11]
    assert box.headers["content-disposition"].endswith("-unvisited-2026-03.xlsx.sealed")
    assert values(opened(key, box.content))[0][0] == "成员编号"
    with pytest.raises(ValueError, match="not sealed to this key"):
        opened(wrong, box.content)
    refused = w.client.get("/v1/exports/unvisited.xlsx", params=params, headers=w.as_("auditor"))
    assert refused.status_code == 403
    named = w.client.get("/v1/exports/records.xlsx", params=params, headers=w.as_("auditor"))
    assert named.status_code == 403  # names are not for auditors: only the plain records
    plain = w.client.get("/v1/exports/records.xlsx?month=2026-03", headers=w.as_("auditor"))
    assert plain.status_code == 200 and values(plain.content)[0][0] == "record id"

    events = export_events(w)
    staff, auditor = w.ids["staff-a"], w.ids["auditor"]
    assert (staff, "GET /v1/exports/coverage.xlsx", 200, ["month:2026-03"]) in events
    assert (staff, "GET /v1/exports/records.xlsx", 200, ["month:2026-03"]) in events
    assert (staff, "GET /v1/exports/unvisited.xlsx", 400, ["month:2026-03"]) in events
    assert (
        staff,
        "GET /v1/exports/unvisited.xlsx",
        200,
        ["month:2026-03", f"sealed-to:{public[:11]}"],
    ) in events
    assert (
        auditor,
        "GET /v1/exports/unvisited.xlsx",
        403,
        ["month:2026-03", f"sealed-to:{public[:11]}"],
    ) in events
    assert (auditor, "GET /v1/exports/records.xlsx", 200, ["month:2026-03"]) in events
