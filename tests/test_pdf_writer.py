"""The small PDF writer (partners.pdf) and its reader (audit.pdf_attachment), checked with
poppler and jsQR rather than with themselves: text in both scripts comes out of ``pdftotext``
(parentheses, backslashes and characters outside UCS-2 included), lines wrap within their width,
the QR code drawn as rectangles decodes to its data, the attachment survives ``pdfdetach``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from audit.pdf_attachment import PdfError, read_attachment
from partners.pdf import Attachment, Page, pdf_date, render, text_width, wrap

ROOT = Path(__file__).resolve().parents[1]
JSQR = ROOT / "node_modules" / "jsqr" / "dist" / "jsQR.js"


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing (apt-get install poppler-utils nodejs)", pytrace=False)
    return found


def _write(tmp_path: Path, page: Page, data: bytes = b"{}\n") -> Path:
    path = tmp_path / "out.pdf"
    path.write_bytes(render([page], Attachment("a.json", data, modified=pdf_date(""))))
    return path


def test_text_of_both_scripts_comes_out_as_written(tmp_path: Path) -> None:
    page = Page()
    lines = ["服务证明 (Service) certificate \\ 一星", "名字 王*明 (a) b)", "emoji 😀 here"]
    for i, line in enumerate(lines):
        page.text(60, 700 - 30 * i, line, 12)
    path = _write(tmp_path, page)
    out = subprocess.run(
        [_tool("pdftotext"), str(path), "-"], capture_output=True, check=True, text=True
    ).stdout
    assert lines[0] in out and lines[1] in out, out
    assert "emoji ? here" in out  # outside UCS-2: shown as ?


def test_wrap_keeps_lines_within_the_width() -> None:
    text = "Signed by the bank with its statement key; 每一笔记录都附有公开账本的凭证。" * 3
    lines = wrap(text, 10, 200)
    assert len(lines) > 2 and all(text_width(line, 10) <= 200 for line in lines)
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")
    assert wrap("", 10, 100) == [""]
    assert text_width("中", 10) == 10 and text_width("i", 10) < text_width("M", 10)


def test_the_qr_code_decodes_to_its_data(tmp_path: Path) -> None:
    if not JSQR.exists():
        pytest.fail("jsQR is missing: npm ci", pytrace=False)
    data = "sha256:" + "ab" * 32
    page = Page()
    page.qr(100, 400, 200, data)
    path = _write(tmp_path, page)
    subprocess.run(
        [_tool("pdftoppm"), "-r", "72", "-gray", "-singlefile", str(path), str(tmp_path / "p")],
        check=True,
    )
    script = f"""
const fs = require('fs'); const jsQR = require({str(JSQR)!r});
const raw = fs.readFileSync({str(tmp_path / "p.pgm")!r});
const head = raw.toString('latin1', 0, 40).split(/\\s+/);
const w = +head[1], h = +head[2];
const offset = raw.indexOf(Buffer.from(head[3] + '\\n'), 2) + head[3].length + 1;
const rgba = new Uint8ClampedArray(w * h * 4);
for (let i = 0; i < w * h; i++) {{ const v = raw[offset + i];
  rgba[4*i] = rgba[4*i+1] = rgba[4*i+2] = v; rgba[4*i+3] = 255; }}
const code = jsQR(rgba, w, h); process.stdout.write(code ? code.data : 'NONE');
"""
    done = subprocess.run([_tool("node"), "-e", script], capture_output=True, text=True, check=True)
    assert done.stdout == data


def test_the_attachment_round_trips_and_damage_is_named(tmp_path: Path) -> None:
    data = '{"名字": "王*明"}\n'.encode() * 50
    path = _write(tmp_path, Page(), data)
    pdf = path.read_bytes()
    assert read_attachment(pdf).data == data
    saved = tmp_path / "saved.json"
    subprocess.run([_tool("pdfdetach"), "-save", "1", "-o", str(saved), str(path)], check=True)
    assert saved.read_bytes() == data
    assert render([Page()], Attachment("a.json", data)) == render(
        [Page()], Attachment("a.json", data)
    )
    assert b"/Size %d " % len(data) in pdf
    for damaged, check in (
        (pdf[:-30], "pdf"),
        (b"%PDF-1.7\n", "pdf"),
        (pdf.replace(b"/EmbeddedFiles", b"/EmbeddedFilez"), "pdf attachment"),
        (pdf.replace(b"/Size %d" % len(data), b"/Size %d" % (len(data) + 1)), "pdf attachment"),
    ):
        with pytest.raises(PdfError) as refused:
            read_attachment(damaged)
        assert refused.value.check == check, (check, refused.value)


def test_no_damage_crashes_the_reader() -> None:
    """Whatever byte of a PDF is changed, reading it gives the attachment or a PdfError naming
    the check, never another exception (the auditor's command prints a verdict)."""
    data = b'{"a": 1}\n'
    page = Page()
    page.text(60, 700, "志愿服务证明 (x)", 12)
    pdf = render([page], Attachment("a.json", data))
    outcomes = set()
    for at in range(0, len(pdf), 7):
        for byte in (0x00, 0x28, 0x5B, 0x3C, 0x39):
            damaged = pdf[:at] + bytes([byte]) + pdf[at + 1 :]
            try:
                outcomes.add(read_attachment(damaged).data == data)
            except PdfError as exc:
                outcomes.add(exc.check)
    assert {"pdf", "pdf attachment", "pdf page", True} <= outcomes, outcomes
    with pytest.raises(PdfError, match="nest deeper"):
        read_attachment(pdf.replace(b"/Root", b"/Root " + b"[" * 100, 1))
