"""The signed JSON attached to a statement's or certificate's PDF, read back for
``timebank audit statement FILE.pdf``.

It parses only what ``partners.pdf`` writes (one cross-reference table, objects in it, the
attachment as a Flate stream named in the catalog's ``/EmbeddedFiles``): anything else is
refused with the check that failed, never guessed at. The page a person reads is a rendering;
what is verified is the attached document, whose SHA-256 the page's QR code carries.
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from audit.report import AuditReport, Policy
from audit.statement import verify_document
from ledger.note import Verifier

PDF_MAGIC = b"%PDF-"
MAX_ATTACHMENT = 64 * 1024 * 1024
MAX_DEPTH = 8  # ours nest 4 deep
TOKEN = re.compile(
    rb"\s*(?:(<<|>>|\[|\])|(/[^\s/<>\[\]()]*)|(<[0-9A-Fa-f\s]*>)|(\()|"
    rb"(-?\d+(?:\.\d+)?)(?:\s+(\d+)\s+R\b)?|(true|false|null))"
)


class PdfError(ValueError):
    """What is wrong with the PDF, and which check found it."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(message)
        self.check = check


@dataclass(frozen=True)
class Ref:
    number: int


@dataclass(frozen=True)
class Attached:
    name: str
    data: bytes
    pages: list[str]  # the text each page shows


def _literal(data: bytes, at: int) -> tuple[bytes, int]:
    out, depth, i = bytearray(), 1, at
    while i < len(data):
        c = data[i : i + 1]
        if c == b"\\":
            out += data[i + 1 : i + 2]
            i += 2
            continue
        depth += {b"(": 1, b")": -1}.get(c, 0)
        if depth == 0:
            return bytes(out), i + 1
        out += c
        i += 1
    raise PdfError("pdf", "a string does not end")


def _value(data: bytes, at: int, depth: int = 0) -> tuple[Any, int]:
    """One PDF object at ``at`` (dictionaries, arrays, names, numbers, strings, references)."""
    if depth > MAX_DEPTH:
        raise PdfError("pdf", f"objects nest deeper than {MAX_DEPTH} at offset {at}")
    match = TOKEN.match(data, at)
    if match is None:
        raise PdfError("pdf", f"unexpected bytes at offset {at}")
    end = match.end()
    bracket, name, hexa, paren, number, generation, word = match.groups()
    if bracket in (b"<<", b"["):
        closing = b">>" if bracket == b"<<" else b"]"
        items: list[Any] = []
        while True:
            close = re.compile(rb"\s*" + re.escape(closing)).match(data, end)
            if close:
                end = close.end()
                break
            item, end = _value(data, end, depth + 1)
            items.append(item)
        if bracket == b"[":
            return items, end
        if len(items) % 2 or not all(isinstance(k, str) for k in items[::2]):
            raise PdfError("pdf", f"a malformed dictionary at offset {at}")
        return dict(zip(items[::2], items[1::2], strict=True)), end
    if name is not None:
        return name.decode("latin-1"), end
    if hexa is not None:
        return bytes.fromhex(re.sub(rb"\s", b"", hexa[1:-1]).decode()), end
    if paren is not None:
        return _literal(data, end)
    if number is not None:
        if generation is not None:
            return Ref(int(number)), end
        return (float(number) if b"." in number else int(number)), end
    if word is not None:
        return {b"true": True, b"false": False, b"null": None}[word], end
    raise PdfError("pdf", f"unexpected {bracket!r} at offset {at}")


class _Reader:
    def __init__(self, data: bytes) -> None:
        if not data.startswith(PDF_MAGIC):
            raise PdfError("pdf", "is not a PDF file")
        self.data = data
        found = re.search(rb"startxref\s+(\d+)\s+%%EOF\s*$", data[-64:])
        if found is None:
            raise PdfError("pdf", "has no startxref at its end (not a PDF Timebank wrote)")
        xref = int(found.group(1))
        table = re.compile(rb"xref\n0 (\d+)\n").match(data, xref)
        if table is None:
            raise PdfError("pdf", "its cross-reference table is not where startxref says")
        count, at = int(table.group(1)), table.end()
        rows = data[at : at + 20 * count]
        self.offsets = {n: int(rows[20 * n : 20 * n + 10]) for n in range(1, count)}
        trailer = re.compile(rb"trailer\n").match(data, at + 20 * count)
        if trailer is None:
            raise PdfError("pdf", "has no trailer after its cross-reference table")
        self.trailer, _ = _value(data, trailer.end())

    def get(self, ref: Any) -> Any:
        """The object ``ref`` points to (a stream as (dictionary, raw bytes))."""
        if not isinstance(ref, Ref):
            return ref
        if ref.number not in self.offsets:
            raise PdfError("pdf", f"object {ref.number} is not in the cross-reference table")
        head = re.compile(rb"%d 0 obj\n" % ref.number).match(self.data, self.offsets[ref.number])
        if head is None:
            raise PdfError("pdf", f"object {ref.number} is not where the table says")
        value, end = _value(self.data, head.end())
        stream = re.compile(rb"\nstream\n").match(self.data, end)
        if stream is None:
            return value
        length = value.get("/Length") if isinstance(value, dict) else None
        if not isinstance(length, int) or length > MAX_ATTACHMENT:
            raise PdfError("pdf", f"object {ref.number}'s stream has no usable /Length")
        raw = self.data[stream.end() : stream.end() + length]
        if not self.data.startswith(b"\nendstream", stream.end() + length):
            raise PdfError("pdf", f"object {ref.number}'s stream is not /Length bytes long")
        return value, raw


def read_attachment(data: bytes) -> Attached:
    """The one file attached to a PDF written by ``partners.pdf``: its name, its bytes and the
    text of the pages; anything else raises ``PdfError`` naming the check."""
    try:
        return _read_attachment(data)
    except PdfError:
        raise
    except ValueError as exc:  # a number, a hex string or UTF-16 text that is not one
        raise PdfError("pdf", f"is not a PDF Timebank wrote: {exc}") from None


def _read_attachment(data: bytes) -> Attached:
    reader = _Reader(data)
    catalog = reader.get(reader.trailer.get("/Root") if isinstance(reader.trailer, dict) else None)
    names = reader.get(catalog.get("/Names")) if isinstance(catalog, dict) else None
    tree = reader.get(names.get("/EmbeddedFiles")) if isinstance(names, dict) else None
    listed = reader.get(tree.get("/Names")) if isinstance(tree, dict) else None
    if not isinstance(listed, list) or len(listed) != 2:
        raise PdfError("pdf attachment", "there is no signed document attached to this PDF")
    spec = reader.get(listed[1])
    files = reader.get(spec.get("/EF")) if isinstance(spec, dict) else None
    stream = reader.get(files.get("/F")) if isinstance(files, dict) else None
    if not isinstance(stream, tuple):
        raise PdfError("pdf attachment", "the attached file has no data")
    header, raw = stream
    raw = _inflate(header, raw, "pdf attachment", "the attached file")
    params = reader.get(header.get("/Params"))
    if isinstance(params, dict):
        if params.get("/Size", len(raw)) != len(raw):
            raise PdfError("pdf attachment", "the attached file is not the /Size it says")
        checksum = params.get("/CheckSum")
        if checksum is not None and checksum != hashlib.md5(raw, usedforsecurity=False).digest():
            raise PdfError("pdf attachment", "the attached file does not match its /CheckSum")
    name = listed[0].decode("latin-1") if isinstance(listed[0], bytes) else "attachment"
    return Attached(name, raw, _pages_text(reader, catalog))


def _inflate(header: dict[str, Any], raw: bytes, check: str, what: str) -> bytes:
    if header.get("/Filter") is None:
        return raw
    if header.get("/Filter") != "/FlateDecode":
        raise PdfError(check, f"{what} has the filter {header['/Filter']}, not /FlateDecode")
    try:
        decompressor = zlib.decompressobj()
        raw = decompressor.decompress(raw, MAX_ATTACHMENT)
    except zlib.error as exc:
        raise PdfError(check, f"{what} is damaged: {exc}") from None
    if decompressor.unconsumed_tail or not decompressor.eof:
        raise PdfError(check, f"{what} does not decompress whole")
    return raw


SHOWN = re.compile(rb"\((?:\\.|[^\\)])*\) Tj|<[0-9A-F]*> Tj")


def _pages_text(reader: _Reader, catalog: dict[str, Any]) -> list[str]:
    """The text each page shows, one line per text object, as ``partners.pdf`` writes it."""
    tree = reader.get(catalog.get("/Pages"))
    kids = reader.get(tree.get("/Kids")) if isinstance(tree, dict) else None
    pages = []
    for kid in kids if isinstance(kids, list) else []:
        page = reader.get(kid)
        stream = reader.get(page.get("/Contents")) if isinstance(page, dict) else None
        if not isinstance(stream, tuple):
            raise PdfError("pdf page", "a page has no content")
        ops = _inflate(stream[0], stream[1], "pdf page", "a page's content")
        lines = []
        for segment in re.findall(rb"BT (.*?) ET", ops, re.S):
            line = ""
            for shown in SHOWN.findall(segment):
                if shown.startswith(b"<"):
                    line += bytes.fromhex(shown[1:-4].decode()).decode("utf-16-be", "replace")
                else:
                    line += re.sub(rb"\\(.)", rb"\1", shown[1:-4]).decode("latin-1")
            lines.append(line)
        pages.append("\n".join(lines))
    return pages


def _check_page(document: Any, digest: str, pages: list[str], report: AuditReport) -> None:
    """The first page shows what the attached document says: its SHA-256 (under the QR code),
    account and period, and a certificate's name and verified hours. A page changed after
    the PDF was made, or a PDF not made from this document, fails here."""
    text = (pages[0] if pages else "").replace("\n", "")  # a long name wraps
    if not isinstance(document, dict):
        return
    period = document.get("period") or {}
    shown = {
        "the SHA-256": (digest[:32], digest[32:]),
        "the account": (str(document.get("account")),),
        "the period": (str(period.get("from")), str(period.get("to"))),
    }
    if isinstance(document.get("member"), dict) and isinstance(document.get("service"), dict):
        shown["the name"] = (str(document["member"].get("name")),)
        shown["the verified hours"] = (str(document["service"].get("cumulative_hours")),)
    for what, parts in shown.items():
        if not all(part in text for part in parts):
            report.add("pdf page", f"does not show {what} of the attached document")


def _refused(check: str, message: str) -> AuditReport:
    report = AuditReport()
    report.what = "PDF of a signed document"
    report.add(check, message)
    return report


def verify_pdf(data: bytes, statement_key: Verifier, policy: Policy) -> AuditReport:
    """``verify_document`` on the signed JSON attached to a PDF, then ``_check_page``; a PDF
    without one, or with a damaged one, fails naming the check."""
    try:
        attached = read_attachment(data)
        text = attached.data.decode("utf-8")
    except PdfError as exc:
        return _refused(exc.check, str(exc))
    except UnicodeDecodeError as exc:
        return _refused("pdf attachment", f"is not UTF-8 text: {exc}")
    report = verify_document(text, statement_key, policy)
    digest = hashlib.sha256(attached.data).hexdigest()
    with suppress(ValueError):  # not JSON: verify_document said so
        _check_page(json.loads(text), digest, attached.pages, report)
    report.what += f"; attached as {attached.name}, SHA-256 {digest} (the page's QR code)"
    return report
