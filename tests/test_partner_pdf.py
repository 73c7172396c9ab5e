"""Statements and certificates as PDF (issue 13): the page reads in zh-CN and English (poppler's
``pdftotext``), the signed JSON is attached (``pdfdetach``) and ``timebank audit statement``
verifies the PDF itself, naming the check when the attachment is missing or tampered; the same
bytes for the same document; the PDF routes keep the JSON routes' rules; the web pages let a
family proxy issue the elder's documents and refuse anyone else."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import shutil
import subprocess
import zlib
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from audit.pdf_attachment import read_attachment, verify_pdf
from cli.main import main
from partners.pdf import Attachment, Page, render
from tests.accounts_world import PASSWORD, World
from tests.conftest import BACKENDS
from tests.partners_world import partners_world
from tests.test_partner_statements import _keys, _linked, _ok, _problems
from tests.web_helpers import browser_login
from web.document_pdf import document_bytes, document_pdf

PDF = "application/pdf"
SHANGHAI = ZoneInfo("Asia/Shanghai")  # the policy's time zone, by default


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    for w in partners_world(request, tmp_path_factory):
        _ok(
            w.client.post(
                "/v1/policy",
                headers=w.as_("b1-admin"),
                json={"star_levels": True, "star_hours": "1,2,3,4,5"},
            )
        )
        yield w


def _poppler(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        pytest.fail(f"{tool} is missing: apt-get install poppler-utils", pytrace=False)
    return found


def _text(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "page.pdf"
    path.write_bytes(pdf)
    done = subprocess.run(
        [_poppler("pdftotext"), "-layout", str(path), "-"], capture_output=True, check=True
    )
    return done.stdout.decode()


def _detach(pdf: bytes, tmp_path: Path) -> tuple[str, bytes]:
    path = tmp_path / "detach.pdf"
    path.write_bytes(pdf)
    listed = subprocess.run(
        [_poppler("pdfdetach"), "-list", str(path)], capture_output=True, check=True, text=True
    ).stdout
    out = tmp_path / "attached.json"
    subprocess.run([_poppler("pdfdetach"), "-save", "1", "-o", str(out), str(path)], check=True)
    return listed, out.read_bytes()


def _pdf(w: World, path: str, who: str, lang: str = "en") -> bytes:
    response = w.client.get(path, headers={**w.as_(who), "accept-language": lang})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == PDF
    assert "attachment" in response.headers["content-disposition"]
    return response.content


def _audit(w: World, path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    key = w.client.get("/v1/statements/key").text.strip()
    log_key = w.client.get("/v1/log/key").text.strip()
    capsys.readouterr()
    code = main(["audit", "statement", str(path), "--statement-key", key, "--key", log_key])
    return code, capsys.readouterr().out


def test_the_certificate_pdf_reads_in_both_languages_and_carries_the_signed_json(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    w = world
    path = f"/v1/members/{w.ids['vol-b']}/certificate.pdf"
    zh = _text(_pdf(w, path, "vol-b", "zh-CN"), tmp_path)
    for shown in ("志愿服务证明", "赵*", "1.00 小时", "一星", "Org B", "期间"):
        assert shown in zh, (shown, zh)
    en_pdf = _pdf(w, path, "vol-b", "en")
    en = _text(en_pdf, tmp_path)
    for shown in ("Service certificate", "赵*", "1.00 hours", "One star", "Verified service"):
        assert shown in en, (shown, en)

    listed, attached = _detach(en_pdf, tmp_path)
    assert "timebank-certificate.json" in listed
    document = json.loads(attached)
    assert document["format"] == "timebank-certificate/v1" and _problems(w, document) == []
    assert attached == document_bytes(document)  # the very file the web page downloads
    digest = hashlib.sha256(attached).hexdigest()
    assert digest[:32] in en and digest[32:] in en  # printed under the QR code

    saved = tmp_path / "certificate.pdf"
    saved.write_bytes(en_pdf)
    code, out = _audit(w, saved, capsys)
    assert code == 0 and f"SHA-256 {digest}" in out, out


def test_the_same_document_gives_the_same_bytes(world: World) -> None:
    w = world
    document = _ok(w.client.get(f"/v1/members/{w.ids['vol-b']}/statement", headers=w.as_("vol-b")))
    first = document_pdf(document, "zh-CN", SHANGHAI)
    assert first == document_pdf(copy.deepcopy(document), "zh-CN", SHANGHAI)
    assert first != document_pdf(document, "en", SHANGHAI)
    assert read_attachment(first).data == document_bytes(document)


def test_the_statement_pdf_lists_the_entries(world: World, tmp_path: Path) -> None:
    w = world
    path = f"/v1/members/{w.ids['vol-b']}/statement.pdf"
    pdf = _pdf(w, path, "vol-b", "zh-CN")
    text = _text(pdf, tmp_path)
    statement = json.loads(_detach(pdf, tmp_path)[1])
    assert statement["format"] == "timebank-statement/v1" and _problems(w, statement) == []
    assert "已签名的对账单" in text and w.ids["vol-b-account"] in text
    for entry in statement["entries"]:
        assert re.search(rf"^\s*{entry['seq']}\s", text, re.M), (entry, text)
    en = _text(_pdf(w, path, "vol-b", "en"), tmp_path)
    assert "Signed statement" in en and "deposit" in en and "0 h 40 min" in en, en
    key, policy = _keys(w)
    for language in ("zh-CN", "en"):  # the page shows what the attachment says
        report = verify_pdf(document_pdf(statement, language, SHANGHAI), key, policy)
        assert report.ok, [f"{p.where}: {p.message}" for p in report.problems]
    long_name = "长" * 20  # a nickname wraps on the page and still matches
    cert = _ok(
        w.client.get(
            f"/v1/members/{w.ids['vol-b']}/certificate?name=nickname&nickname={long_name}",
            headers=w.as_("vol-b"),
        )
    )
    report = verify_pdf(document_pdf(cert, "zh-CN", SHANGHAI), key, policy)
    assert report.ok, [f"{p.where}: {p.message}" for p in report.problems]
    # a period with nothing in it still prints, and still verifies
    empty = _pdf(w, f"{path}?from=2020-01-01&to=2020-01-31", "vol-b")
    assert "Nothing moved in this period." in _text(empty, tmp_path)
    assert _problems(w, json.loads(read_attachment(empty).data)) == []


def test_the_audit_names_what_is_wrong_with_a_pdf(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    w = world
    pdf = _pdf(w, f"/v1/members/{w.ids['vol-b']}/certificate.pdf", "vol-b")
    document = json.loads(read_attachment(pdf).data)
    path = tmp_path / "tampered.pdf"

    # the attached JSON changed (and the PDF rebuilt around it): the bank's signature fails
    changed = copy.deepcopy(document)
    changed["service"]["cumulative_hours"] = "99.00"
    path.write_bytes(document_pdf(changed, "en", SHANGHAI))
    code, out = _audit(w, path, capsys)
    assert code == 1 and "signature: does not verify" in out, out

    # the attached stream's bytes changed in place: the attachment check names it
    start = pdf.index(b"/Type /EmbeddedFile")
    at = pdf.index(b"stream\n", start) + len(b"stream\n") + 40
    path.write_bytes(pdf[:at] + bytes([pdf[at] ^ 0xFF]) + pdf[at + 1 :])
    code, out = _audit(w, path, capsys)
    assert code == 1 and "pdf attachment:" in out, out

    # a recompressed, changed file of the same length: caught by its checksum, then signature
    stream_at = pdf.index(b"stream\n", start) + len(b"stream\n")
    length = int(re.search(rb"/Length (\d+)", pdf[start:stream_at]).group(1))  # type: ignore[union-attr]
    data = read_attachment(pdf).data.replace(b'"1.00"', b'"9.00"', 1)
    packed = zlib.compress(data, 9)
    if len(packed) == length:
        path.write_bytes(pdf[:stream_at] + packed + pdf[stream_at + length :])
        code, out = _audit(w, path, capsys)
        assert code == 1 and "/CheckSum" in out, out

    # a page of someone else's making around the genuine attachment: the page check names it
    page = Page()
    page.text(60, 700, "志愿服务证明 赵* 100.00 小时", 20)
    path.write_bytes(
        render([page], Attachment("timebank-certificate.json", document_bytes(document)))
    )
    code, out = _audit(w, path, capsys)
    assert code == 1 and "pdf page: does not show the SHA-256 of the attached document" in out, out

    # no attachment at all: refused, naming the check
    path.write_bytes(pdf.replace(b"/EmbeddedFiles", b"/EmbeddedFilez"))
    code, out = _audit(w, path, capsys)
    assert code == 1 and "pdf attachment: there is no signed document" in out, out
    path.write_bytes(b"%PDF-1.7\nnothing of ours\n")
    code, out = _audit(w, path, capsys)
    assert code == 1 and "pdf:" in out, out

    # and the intact one passes, so the refusals above are the tampering's
    path.write_bytes(pdf)
    assert _audit(w, path, capsys)[0] == 0


def test_the_pdf_routes_keep_the_json_routes_rules(world: World) -> None:
    w = world
    vol_b, elder = w.ids["vol-b"], w.ids["elder-a"]
    for kind in ("statement.pdf", "certificate.pdf"):
        assert w.client.get(f"/v1/members/{vol_b}/{kind}", headers=w.as_("vol-b")).is_success
        other = w.client.get(f"/v1/members/{elder}/{kind}", headers=w.as_("vol-b"))
        assert other.status_code == 404, other.text
        assert other.headers["content-type"].startswith("application/problem+json")
        proxy = w.client.get(f"/v1/members/{elder}/{kind}", headers=w.as_("family-a"))
        assert proxy.status_code == 200 and proxy.content.startswith(b"%PDF-1.7")
        assert w.client.get(f"/v1/members/{vol_b}/{kind}").status_code == 401
    full = w.client.get(f"/v1/members/{elder}/certificate.pdf?name=full", headers=w.as_("family-a"))
    assert json.loads(read_attachment(full.content).data)["member"]["name"] == "王秀英"
    staff = w.client.get(f"/v1/members/{vol_b}/certificate.pdf?name=full", headers=w.as_("staff-b"))
    assert staff.status_code == 403 and staff.json()["field"] == "name"
    bad = w.client.get(
        f"/v1/members/{vol_b}/statement.pdf?from=yesterday",
        headers={**w.as_("vol-b"), "accept-language": "zh-CN"},
    )
    assert bad.status_code == 400 and bad.json()["field"] == "from"

    # a partner: only through a link granting read_statement
    points_only = _linked(w, "school", "vol-b", ["read_points"])
    refused = w.client.get(
        f"/v1/partner/members/{points_only}/statement.pdf", headers=w.as_("school")
    )
    assert refused.status_code == 403, refused.text
    handle = _linked(w, "district", "vol-b", ["read_statement"])
    for kind in ("statement.pdf", "certificate.pdf"):
        got = w.client.get(f"/v1/partner/members/{handle}/{kind}", headers=w.as_("district"))
        assert got.status_code == 200 and got.headers["content-type"] == PDF
        document = json.loads(read_attachment(got.content).data)
        assert _problems(w, document) == []
    cert = json.loads(
        read_attachment(
            w.client.get(
                f"/v1/partner/members/{handle}/certificate.pdf", headers=w.as_("district")
            ).content
        ).data
    )
    assert cert["member"]["name"] == "赵*"

    # every PDF issued is in the audit trail, as the JSON ones are
    events = _ok(
        w.client.get(
            "/v1/audit/events?action=GET%20/v1/members/&limit=1000", headers=w.as_("auditor")
        )
    )
    actions = {(e["action"], e["status"]) for e in events}
    assert ("GET /v1/members/{member_id}/certificate.pdf", 200) in actions
    assert ("GET /v1/members/{member_id}/statement.pdf", 404) in actions


def _web(w: World, who: str, path: str) -> Any:
    w.client.cookies.clear()
    assert browser_login(w.client, who, PASSWORD).status_code == 303
    return w.client.get(path, headers={"accept-language": "zh-CN"})


def test_a_family_proxy_issues_the_elders_documents_on_the_web(world: World) -> None:
    w = world
    elder = w.ids["elder-a"]
    try:
        index = _web(w, "family-a", "/documents")
        assert index.status_code == 200 and f"/documents/{elder}/certificate" in index.text
        page = w.client.get(f"/documents/{elder}/certificate?name=full")
        assert page.status_code == 200 and "王秀英" in page.text, page.text
        link = re.search(r'id="cert-pdf" href="([^"]+)"', page.text)
        assert link is not None
        pdf = w.client.get(link.group(1).replace("&amp;", "&"))
        assert pdf.status_code == 200 and pdf.headers["content-type"] == PDF
        assert json.loads(read_attachment(pdf.content).data)["member"]["name"] == "王秀英"
        statement = w.client.get(f"/documents/{elder}/statement")
        assert statement.status_code == 200 and 'id="statement-pdf"' in statement.text
        bad = w.client.get(f"/documents/{elder}/statement?from=2020-13-01")
        assert bad.status_code == 400 and "YYYY-MM-DD" in bad.text

        # not her proxy: refused, page and PDF alike
        index = _web(w, "vol-b", "/documents")
        assert index.status_code == 200 and f"/documents/{elder}/" not in index.text
        for path in (
            f"/documents/{elder}/certificate",
            f"/documents/{elder}/statement",
            f"/v1/members/{elder}/certificate.pdf",
        ):
            refused = w.client.get(path)
            assert refused.status_code == 404, (path, refused.text)
        own = w.client.get(f"/documents/{w.ids['vol-b']}/certificate")
        assert own.status_code == 200 and "赵*" in own.text
    finally:
        w.client.cookies.clear()
    events = _ok(
        w.client.get(
            "/v1/audit/events?action=GET%20/documents/&limit=100", headers=w.as_("auditor")
        )
    )
    statuses = [e["status"] for e in events if e["action"].endswith("/certificate")]
    assert 200 in statuses and 404 in statuses, events


def _local(value: str) -> str:
    return f"{datetime.fromisoformat(value).astimezone(SHANGHAI):%Y-%m-%d %H:%M}"


def _downloaded(page: str, link: str) -> Any:
    """The signed JSON a page offers as a download (a data: URL)."""
    found = re.search(rf'id="{link}" href="data:application/json;base64,([^"]+)"', page)
    assert found is not None, page
    return json.loads(base64.b64decode(found.group(1)))


def test_statements_and_certificates_read_in_the_banks_local_time(
    world: World, tmp_path: Path
) -> None:
    """As her other pages (and the bank's policy): issued at and each entry's time in the bank's
    time zone, on the page and in the PDF, not UTC; the entries counted in the table's caption;
    whose statement in words (本人, the elder's masked name), not the ledger account's id."""
    w = world
    member = w.ids["vol-b"]
    try:
        page = _web(w, "vol-b", f"/documents/{member}/statement")
        assert page.status_code == 200
        document = _downloaded(page.text, "statement-download")
        assert document["entries"]
        issued = f"{_local(document['issued_at'])} (UTC+08:00)"
        assert f'id="statement-issued">{issued} · ' in page.text
        for entry in document["entries"]:
            assert f"<td>{_local(entry['time'])}</td>" in page.text, entry
        assert "UTC ·" not in page.text and "(UTC)" not in page.text
        assert f"明细（共 {document['totals']['entries']} 条）" in page.text
        assert 'id="statement-account">我自己<' in page.text
        assert w.ids["vol-b-account"] not in page.text
        certificate = w.client.get(f"/documents/{member}/certificate")
        signed = _downloaded(certificate.text, "cert-download")
        assert f'id="cert-issued">{_local(signed["issued_at"])} (UTC+08:00) · ' in certificate.text
        elders = _web(w, "family-a", f"/documents/{w.ids['elder-a']}/statement")
        assert 'id="statement-account">王*英<' in elders.text
        assert w.ids["elder-a-account"] not in elders.text
    finally:
        w.client.cookies.clear()
    pdf = _pdf(w, f"/v1/members/{member}/statement.pdf", "vol-b", "zh-CN")
    text = _text(pdf, tmp_path)
    printed = json.loads(read_attachment(pdf).data)
    assert f"{_local(printed['issued_at'])} (UTC+08:00)" in text, text
    for entry in printed["entries"]:
        assert _local(entry["time"]) in text, (entry, text)
    assert "(UTC)" not in text and " UTC\n" not in text
