"""A small PDF 1.7 writer for signed statements and certificates: text, lines, a QR code drawn
as rectangles, and one attached file (the signed JSON, ``/EmbeddedFiles`` and ``/AF``).

No font is embedded: ASCII is set in Helvetica and everything else in Adobe's ``STSong-Light``
through the ``UniGB-UCS2-H`` CMap (as reportlab's ``UnicodeCIDFont`` does), which every PDF
reader supplies; a ``/ToUnicode`` map lets text be copied and searched. The same pages and
attachment always give the same bytes: nothing depends on the clock or on randomness.
``audit.pdf_attachment`` reads the attachment back.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import segno

A4 = (595.28, 841.89)
HELVETICA = (  # widths of ASCII 32..126 in Helvetica (Adobe's AFM), per 1000 units
    "278 278 355 556 556 889 667 191 333 333 389 584 278 333 278 278 556 556 556 556 556 556 "
    "556 556 556 556 278 278 584 584 584 556 1015 667 667 722 722 667 611 778 722 278 500 667 "
    "556 833 722 778 667 778 722 667 611 722 667 944 667 667 611 278 278 278 469 556 333 556 "
    "556 500 556 556 278 556 556 222 222 500 222 833 556 556 556 556 333 500 278 556 500 722 "
    "500 500 500 334 260 334 584"
)
WIDTHS = {chr(32 + i): int(w) for i, w in enumerate(HELVETICA.split())}
CJK_WIDTH = 1000  # STSong-Light's default width (/DW)


def text_width(text: str, size: float) -> float:
    """The width in points of ``text`` set at ``size`` (as ``Page.text`` sets it)."""
    return sum(WIDTHS.get(c, CJK_WIDTH) for c in _printable(text)) * size / 1000


def wrap(text: str, size: float, width: float) -> list[str]:
    """``text`` cut into lines no wider than ``width``: at spaces, or anywhere in CJK text."""
    lines: list[str] = []
    line = ""
    for word in _words(text):
        if line and text_width(line + word, size) > width:
            lines.append(line.rstrip())
            line = word.lstrip()
        else:
            line += word
    if line.strip() or not lines:
        lines.append(line.rstrip())
    return lines


def _words(text: str) -> Iterator[str]:
    """Breakable pieces: an ASCII word with its following space, or one other character."""
    word = ""
    for c in text:
        if c.isascii():
            word += c
            if c == " ":
                yield word
                word = ""
        else:
            if word:
                yield word
                word = ""
            yield c
    if word:
        yield word


def _printable(text: str) -> str:
    """Characters outside the Basic Multilingual Plane have no UCS-2 code: shown as ``?``."""
    return "".join(c if ord(c) <= 0xFFFF and c.isprintable() else "?" for c in text)


def _literal(text: str) -> str:
    return "(" + text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def _runs(text: str) -> Iterator[tuple[bool, str]]:
    """(is ASCII, run) pieces of ``text``: each is set in its own font."""
    run, ascii_run = "", True
    for c in _printable(text):
        if run and c.isascii() != ascii_run:
            yield ascii_run, run
            run = ""
        ascii_run = c.isascii()
        run += c
    if run:
        yield ascii_run, run


def _number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".") or "0"


@dataclass
class Page:
    """One page's drawing operators, in points from the bottom left corner."""

    width: float = A4[0]
    height: float = A4[1]
    ops: list[str] = field(default_factory=list)

    def text(self, x: float, y: float, text: str, size: float = 11, gray: float = 0) -> None:
        shown = []
        for ascii_run, run in _runs(text):
            if ascii_run:
                shown.append(f"/F1 {_number(size)} Tf {_literal(run)} Tj")
            else:
                code = run.encode("utf-16-be").hex().upper()
                shown.append(f"/F2 {_number(size)} Tf <{code}> Tj")
        if shown:
            self.ops.append(
                f"BT {_number(gray)} g {_number(x)} {_number(y)} Td {' '.join(shown)} ET"
            )

    def line(self, x1: float, y1: float, x2: float, y2: float, width: float = 0.5) -> None:
        self.ops.append(
            f"{_number(width)} w {_number(x1)} {_number(y1)} m {_number(x2)} {_number(y2)} l S"
        )

    def qr(self, x: float, y: float, side: float, data: str) -> None:
        """A QR code of ``data`` in a ``side``-point square whose bottom left is (x, y), drawn as
        one filled rectangle per run of dark modules (no image: it stays sharp when printed)."""
        matrix = [list(row) for row in segno.make(data, error="m", micro=False).matrix]
        module = side / len(matrix)
        boxes = []
        for r, row in enumerate(matrix):
            top = y + side - (r + 1) * module
            c = 0
            while c < len(row):
                if row[c]:
                    start = c
                    while c < len(row) and row[c]:
                        c += 1
                    boxes.append(
                        f"{_number(x + start * module)} {_number(top)} "
                        f"{_number((c - start) * module)} {_number(module)} re"
                    )
                else:
                    c += 1
        self.ops.append("0 g " + " ".join(boxes) + " f")


@dataclass(frozen=True)
class Attachment:
    name: str  # the file name readers show, e.g. timebank-certificate.json
    data: bytes
    mime: str = "application/json"
    description: str = ""
    modified: str = ""  # a PDF date, D:YYYYMMDDHHmmSSZ, or empty


def pdf_date(log_time: str) -> str:
    """``2026-12-05T19:24:33.123456Z`` → ``D:20261205192433Z`` (the document's own time)."""
    digits = "".join(c for c in log_time[:19] if c.isdigit())
    return f"D:{digits}Z" if len(digits) == 14 else ""


def _utf16(text: str) -> str:
    return "<FEFF" + text.encode("utf-16-be").hex().upper() + ">"


def _stream(header: str, data: bytes) -> bytes:
    packed = zlib.compress(data, 9)
    return (
        f"<< {header} /Filter /FlateDecode /Length {len(packed)} >>\nstream\n".encode()
        + packed
        + b"\nendstream"
    )


def _to_unicode() -> bytes:
    """The CMap from our UCS-2 codes to Unicode: the code is the character."""
    lines = [
        "/CIDInit /ProcSet findresource begin 12 dict begin begincmap",
        "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def",
        "/CMapName /Adobe-Identity-UCS def /CMapType 2 def",
        "1 begincodespacerange <0000> <FFFF> endcodespacerange",
    ]
    for block in range(0, 256, 64):
        lines.append("64 beginbfrange")
        lines += [f"<{h:02X}00> <{h:02X}FF> <{h:02X}00>" for h in range(block, block + 64)]
        lines.append("endbfrange")
    lines.append("endcmap CMapName currentdict /CMap defineresource pop end end")
    return "\n".join(lines).encode()


def render(
    pages: list[Page], attachment: Attachment, title: str = "", language: str = "zh-CN"
) -> bytes:
    """The PDF file: ``pages`` in order, ``attachment`` embedded and associated (``/AF``)."""
    objects: list[bytes] = []

    def add(body: bytes | str) -> int:
        objects.append(body.encode() if isinstance(body, str) else body)
        return len(objects)

    catalog = add(b"")  # filled in last: it names the page tree and the attachment
    tree = add(b"")
    helvetica = add(
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
    )
    descriptor = add(
        "<< /Type /FontDescriptor /FontName /STSong-Light /Flags 6 /FontBBox [-25 -254 1000 880] "
        "/ItalicAngle 0 /Ascent 880 /Descent -120 /CapHeight 880 /StemV 93 >>"
    )
    cid = add(
        "<< /Type /Font /Subtype /CIDFontType0 /BaseFont /STSong-Light "
        "/CIDSystemInfo << /Registry (Adobe) /Ordering (GB1) /Supplement 2 >> "
        f"/FontDescriptor {descriptor} 0 R /DW {CJK_WIDTH} >>"
    )
    to_unicode = add(_stream("", _to_unicode()))
    song = add(
        "<< /Type /Font /Subtype /Type0 /BaseFont /STSong-Light /Encoding /UniGB-UCS2-H "
        f"/DescendantFonts [{cid} 0 R] /ToUnicode {to_unicode} 0 R >>"
    )
    kids = []
    for page in pages:
        content = add(_stream("", "\n".join(page.ops).encode()))
        kids.append(
            add(
                f"<< /Type /Page /Parent {tree} 0 R /MediaBox [0 0 {_number(page.width)} "
                f"{_number(page.height)}] /Contents {content} 0 R /Resources << /Font << "
                f"/F1 {helvetica} 0 R /F2 {song} 0 R >> >> >>"
            )
        )
    data = attachment.data
    params = f"/Size {len(data)} /CheckSum <{hashlib.md5(data, usedforsecurity=False).hexdigest()}>"
    if attachment.modified:
        params += f" /ModDate ({attachment.modified})"
    subtype = attachment.mime.replace("/", "#2F")
    embedded = add(_stream(f"/Type /EmbeddedFile /Subtype /{subtype} /Params << {params} >>", data))
    spec = add(
        f"<< /Type /Filespec /F {_literal(attachment.name)} /UF {_utf16(attachment.name)} "
        f"/Desc {_utf16(attachment.description)} /AFRelationship /Data "
        f"/EF << /F {embedded} 0 R /UF {embedded} 0 R >> >>"
    )
    info = f"/Title {_utf16(title)} /Producer (Timebank)"
    if attachment.modified:
        info += f" /CreationDate ({attachment.modified})"
    info_ref = add(f"<< {info} >>")
    objects[tree - 1] = (
        f"<< /Type /Pages /Kids [{' '.join(f'{k} 0 R' for k in kids)}] /Count {len(kids)} >>"
    ).encode()
    objects[catalog - 1] = (
        f"<< /Type /Catalog /Pages {tree} 0 R /Lang {_literal(language)} "
        f"/PageMode /UseAttachments /AF [{spec} 0 R] /Names << /EmbeddedFiles << "
        f"/Names [{_literal(attachment.name)} {spec} 0 R] >> >> >>"
    ).encode()
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    file_id = hashlib.sha256(bytes(out)).hexdigest()[:32].upper()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root {catalog} 0 R /Info {info_ref} 0 R "
        f"/ID [<{file_id}> <{file_id}>] >>\nstartxref\n{xref}\n%%EOF\n"
    ).encode()
    return bytes(out)
