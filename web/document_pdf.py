"""Signed statements and certificates as PDF, in the caller's language (zh-CN or English).

The page shows what the document says; the document itself, byte for byte as the web page
downloads it, is attached to the PDF, and the QR code carries its SHA-256. ``timebank audit
statement FILE.pdf`` checks the attachment, so whoever the member hands the PDF to verifies it
with the bank's two public keys, without asking the server again. Served by the ``.pdf`` routes
of ``api.partner_routes`` and linked from the web app's certificate and statement pages.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from audit.statement import CERTIFICATE
from partners.pdf import A4, Attachment, Page, pdf_date, render, text_width, wrap
from web.i18n import N_, Gettext, gettext_for

LEFT, RIGHT, TOP, BOTTOM = 56.0, A4[0] - 56.0, A4[1] - 60.0, 64.0
LABEL_WIDTH = 130.0
QR_SIDE = 120.0
ROW = 15.0
STAR_WORDS = (
    N_("One star"),
    N_("Two stars"),
    N_("Three stars"),
    N_("Four stars"),
    N_("Five stars"),
)
NOTE = N_(
    "Signed by the bank with its statement key; every entry counted carries a receipt from the "
    "public log. The signed document is attached to this PDF (%(file)s) and the QR code "
    "carries its SHA-256. Anyone can check it without trusting the server: timebank audit "
    "statement THIS.pdf --statement-key STATEMENT-KEY --key LOG-KEY"
)


def document_bytes(document: dict[str, Any]) -> bytes:
    """The signed document as a file: what the pages download and the PDF attaches."""
    return (json.dumps(document, ensure_ascii=False, indent=1) + "\n").encode()


def file_name(document: dict[str, Any]) -> str:
    kind = "certificate" if document.get("format") == CERTIFICATE else "statement"
    return f"timebank-{kind}.json"


def local_time(value: str, zone: ZoneInfo) -> str:
    """A document's UTC time (RFC 3339) in the bank's time zone, to the minute: the time the
    member sees on her other pages."""
    return f"{datetime.fromisoformat(value).astimezone(zone):%Y-%m-%d %H:%M}"


def issued_text(document: dict[str, Any], zone: ZoneInfo) -> str:
    """When the document was issued, local, with the zone's offset for whoever reads it
    elsewhere (the entries' times are in the same zone)."""
    moment = datetime.fromisoformat(str(document["issued_at"])).astimezone(zone)
    offset = f"{moment:%z}"
    return f"{moment:%Y-%m-%d %H:%M} (UTC{offset[:3]}:{offset[3:]})"


def minutes_text(_: Gettext, minutes: int) -> str:
    sign = "-" if minutes < 0 else ""
    h, m = divmod(abs(minutes), 60)
    return _("%(sign)s%(h)s h %(m)s min", sign=sign, h=h, m=m)


class _Layout:
    """Pages filled from the top down, a new one when the current one is full."""

    def __init__(self, _: Gettext) -> None:
        self._ = _
        self.pages = [Page()]
        self.y = TOP

    @property
    def page(self) -> Page:
        return self.pages[-1]

    def room(self, height: float) -> None:
        if self.y - height < BOTTOM:
            self.pages.append(Page())
            self.y = TOP

    def heading(self, title: str, bank: str) -> None:
        self.page.text(LEFT, self.y, title, 22)
        self.page.text(LEFT, self.y - 22, bank, 11, gray=0.3)
        self.y -= 34
        self.page.line(LEFT, self.y, RIGHT, self.y)
        self.y -= 24

    def field(self, label: str, value: str, right: float = RIGHT) -> None:
        lines = wrap(value, 12, right - LEFT - LABEL_WIDTH)
        self.room(ROW * len(lines) + 8)
        self.page.text(LEFT, self.y, label, 10, gray=0.35)
        for line in lines:
            self.page.text(LEFT + LABEL_WIDTH, self.y, line, 12)
            self.y -= ROW + 2
        self.y -= 6

    def paragraph(self, text: str, size: float, gray: float = 0.2) -> None:
        for line in wrap(text, size, RIGHT - LEFT):
            self.room(size + 4)
            self.page.text(LEFT, self.y, line, size, gray=gray)
            self.y -= size + 4
        self.y -= 6

    def proof(self, document: dict[str, Any], data: bytes, top: float) -> None:
        """The QR code of the attachment's SHA-256 at the first page's top right."""
        digest = hashlib.sha256(data).hexdigest()
        first = self.pages[0]
        first.qr(RIGHT - QR_SIDE, top - QR_SIDE, QR_SIDE, f"sha256:{digest}")
        for i, part in enumerate(("SHA-256", digest[:32], digest[32:])):
            width = text_width(part, 6.5)
            first.text(RIGHT - QR_SIDE / 2 - width / 2, top - QR_SIDE - 10 - 8 * i, part, 6.5)

    def footer(self, document: dict[str, Any], data: bytes) -> None:
        _ = self._
        self.y -= 8
        self.room(60)
        self.page.line(LEFT, self.y + 10, RIGHT, self.y + 10, 0.3)
        self.paragraph(_(NOTE, file=file_name(document)), 8.5)
        key = document.get("signature", {}).get("key", "")
        self.paragraph(_("Statement key: %(key)s", key=key), 7)
        for number, page in enumerate(self.pages, 1):
            mark = f"{number} / {len(self.pages)}"
            page.text(RIGHT - text_width(mark, 8), BOTTOM - 30, mark, 8, gray=0.4)


def _common(
    _: Gettext, layout: _Layout, document: dict[str, Any], zone: ZoneInfo, right: float
) -> None:
    period = document["period"]
    layout.field(_("Period"), f"{period['from']} – {period['to']}", right)
    layout.field(_("Issued"), issued_text(document, zone), right)
    layout.field(_("Account"), str(document["account"]), right)


def certificate_pdf(document: dict[str, Any], language: str, zone: ZoneInfo) -> bytes:
    """A service certificate (志愿服务证明) as PDF: name, organisation, verified hours, star."""
    _ = gettext_for(language)
    layout = _Layout(_)
    layout.heading(_("Service certificate"), document["bank"]["name"])
    top = layout.y + 12
    beside = RIGHT - QR_SIDE - 16
    member, service = document["member"], document["service"]
    layout.field(_("Name"), member["name"], beside)
    layout.field(_("Organisation"), member["organisation"] or "—", beside)
    hours = _("%(hours)s hours", hours=service["cumulative_hours"])
    layout.field(_("Verified service"), hours, beside)
    period_hours = _("%(hours)s hours", hours=service["period_hours"])
    layout.field(_("Verified service in the period"), period_hours, beside)
    if service["star_level"] is not None:
        level = service["star_level"]
        layout.field(_("Star level"), _(STAR_WORDS[level - 1]) if level else _("No star yet"))
    _common(_, layout, document, zone, beside if layout.y > top - QR_SIDE - 40 else RIGHT)
    data = document_bytes(document)
    layout.proof(document, data, top)
    layout.footer(document, data)
    return _render(layout, document, data, language, _("Service certificate"))


def statement_pdf(document: dict[str, Any], language: str, zone: ZoneInfo) -> bytes:
    """A signed statement as PDF: the totals, then every entry with its time and minutes."""
    _ = gettext_for(language)
    layout = _Layout(_)
    layout.heading(_("Signed statement"), document["bank"]["name"])
    top = layout.y + 12
    beside = RIGHT - QR_SIDE - 16
    _common(_, layout, document, zone, beside)
    totals = document["totals"]
    layout.field(_("Entries"), str(totals["entries"]), beside)
    layout.field(_("Credited"), minutes_text(_, totals["credited"]), beside)
    layout.field(_("Debited"), minutes_text(_, totals["debited"]), beside)
    layout.field(_("Net"), minutes_text(_, totals["net"]), beside)
    layout.y = min(layout.y, top - QR_SIDE - 40)
    columns = (LEFT, LEFT + 70, LEFT + 220, RIGHT - 90)
    header = ("#", _("When"), _("Kind"), _("Minutes"))

    def table_head() -> None:
        for x, word in zip(columns, header, strict=True):
            layout.page.text(x, layout.y, word, 9.5, gray=0.35)
        layout.y -= 6
        layout.page.line(LEFT, layout.y, RIGHT, layout.y, 0.3)
        layout.y -= 14

    table_head()
    for entry in document["entries"]:
        if layout.y - ROW < BOTTOM:
            layout.room(ROW * 2)
            table_head()
        cells = (
            str(entry["seq"]),
            local_time(str(entry["time"]), zone),
            _(str(entry["kind"])),
            minutes_text(_, int(entry["minutes"])),
        )
        for x, cell in zip(columns, cells, strict=True):
            layout.page.text(x, layout.y, cell, 10)
        layout.y -= ROW
    if not document["entries"]:
        layout.paragraph(_("Nothing moved in this period."), 10)
    data = document_bytes(document)
    layout.proof(document, data, top)
    layout.footer(document, data)
    return _render(layout, document, data, language, _("Signed statement"))


def _render(
    layout: _Layout, document: dict[str, Any], data: bytes, language: str, title: str
) -> bytes:
    attachment = Attachment(
        file_name(document),
        data,
        description=title,
        modified=pdf_date(str(document.get("issued_at", ""))),
    )
    return render(layout.pages, attachment, title, language)


def document_pdf(document: dict[str, Any], language: str, zone: ZoneInfo) -> bytes:
    """The PDF of a statement or certificate, its times in ``zone`` (the bank's policy)."""
    if document.get("format") == CERTIFICATE:
        return certificate_pdf(document, language, zone)
    return statement_pdf(document, language, zone)
