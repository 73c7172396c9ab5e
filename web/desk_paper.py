"""Paper for elders without phones (适老化: the traditional way stays): a printable service
slip per request and a monthly statement per elder, as HTML with print styles (A5 and A4).
A PDF is the browser's "Save as PDF" of the same page (the tests make one with Chromium);
the server adds no PDF engine. QR codes are SVG drawn on the server by ``segno``."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import segno
from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.params import QueryParameter

from accounts.errors import InvalidInput
from accounts.model import Principal
from web.desk import ItemId, Names, care_of, service_name, staff_or_refusal, types_of, window_text
from web.i18n import N_
from web.pages import render
from web.session import accounts_of

# Words of the statement's lines (ledger entry kinds); the catalog translates them.
KINDS = {
    "deposit": N_("Service given (deposit)"),
    "redemption": N_("Service received (paid)"),
    "reserve": N_("Held for a request"),
    "release": N_("Hold released"),
    "refund": N_("Refund"),
    "exchange": N_("Spent at a partner platform"),
    "gift": N_("Gift"),
    "donation": N_("Donation to the pool"),
    "grant": N_("Grant from the pool"),
    "reversal": N_("Reversal"),
    "correction": N_("Correction"),
    "transfer_out": N_("Sent to another district's bank"),
    "transfer_in": N_("Received from another district's bank"),
    "transfer_void": N_("Transfer to another bank returned"),
}


def qr_svg(text: str, scale: int = 3) -> str | None:
    try:
        return str(
            segno.make(text, error="l", micro=False).svg_inline(
                scale=scale, dark="#000", light="#fff", omitsize=True
            )
        )
    except segno.DataOverflowError:
        return None


def hours(minutes: int) -> str:
    sign = "-" if minutes < 0 else ""
    h, m = divmod(abs(minutes), 60)
    return f"{sign}{h}:{m:02d}"


@get("/desk/requests/{request_id:str}/slip", sync_to_thread=True, include_in_schema=False)
def slip(request: Request[Any, Any, State], request_id: ItemId) -> Response[Any]:
    """The service slip: what, when, for whom, by whom, places to sign, and a QR code of the
    request's visit page (the volunteer scans it to open the visit)."""
    who = staff_or_refusal(request)
    if not isinstance(who, Principal):
        return who
    care = care_of(request)
    item = care.get_request(who, request_id)
    zone = care.policy(who.bank_id).timezone
    names = Names(request, who)
    org = accounts_of(request).get_org(who, item.org_id)
    link = f"{str(request.base_url).rstrip('/')}/volunteer/visit/{item.id}"
    return render(
        request,
        "desk/slip.html",
        who,
        item=item,
        org=org,
        service=service_name(request, types_of(care, who).get(item.service_type_id)),
        when=window_text(request, item.window_start, item.window_end, zone),
        elder_name=names.name(item.elder_id),
        area=names.area(item.elder_id),
        volunteer=names.name(item.volunteer_id),
        qr=qr_svg(link, 4),
        link=link,
    )


def _month(text: str | None, today: date) -> date:
    if not text:
        return today.replace(day=1)
    try:
        return datetime.strptime(text, "%Y-%m").date()
    except ValueError as exc:
        raise InvalidInput(N_("month is YYYY-MM"), field="month") from exc


@get("/desk/people/{member_id:str}/statement", sync_to_thread=True, include_in_schema=False)
def statement(
    request: Request[Any, Any, State],
    member_id: ItemId,
    month: Annotated[str | None, QueryParameter(max_length=7)] = None,
) -> Response[Any]:
    """The elder's month: stored time now, each entry of the month (what it paid for) with
    its receipt as a QR code that ``timebank audit receipt`` and the public checker verify."""
    who = staff_or_refusal(request)
    if not isinstance(who, Principal):
        return who
    care = care_of(request)
    zone = ZoneInfo(care.policy(who.bank_id).timezone)
    first = _month(month, datetime.now(zone).date())
    following = first.replace(year=first.year + first.month // 12, month=first.month % 12 + 1)
    view = accounts_of(request).get_member(who, member_id)
    balance = care.balance(who, member_id)
    codes = {t.code: t for t in care.catalogue(who, include_inactive=True)}
    lines = []
    for item in care.history(who, member_id, 200, None):
        when = datetime.fromisoformat(item.time.replace("Z", "+00:00")).astimezone(zone)
        if not first <= when.date() < following:
            continue
        lines.append(
            {
                "seq": item.seq,
                "when": f"{when:%Y-%m-%d %H:%M}",
                "kind": KINDS.get(item.kind, item.kind),
                "service": service_name(request, codes.get(item.service or ""))
                if item.service
                else "",
                "minutes": hours(item.minutes),
                "qr": qr_svg(care.receipt(who, member_id, item.seq), 2),
            }
        )
    lines.reverse()
    previous = date(first.year - (first.month == 1), (first.month - 2) % 12 + 1, 1)
    return render(
        request,
        "desk/statement.html",
        who,
        view=view,
        month=first,
        previous=f"{previous:%Y-%m}",
        following=f"{following:%Y-%m}",
        available=hours(balance.available),
        reserved=hours(balance.reserved),
        lines=lines,
    )


PAPER_HANDLERS = [slip, statement]
