"""The volunteer's pages: tasks to do and requests to claim, the visit (check in, check out,
the elder's code; signed on the phone by ``static/visit.js``), my hours with receipts as QR
codes (giving minutes away: ``web.volunteer_give``). Each action calls the same service
method as its ``/v1`` route, so the rules and refusals are the API's."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import segno
from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.params import PathParameter, QueryParameter
from litestar.response import Redirect, Template

from accounts.errors import AccountsError, InvalidInput
from accounts.model import Principal, Role
from care.errors import CareError
from care.model import RecordStatus, RequestStatus, ServiceRecord, ServiceRequest, ServiceType
from care.service import CareService
from partners.links import PartnerLinks
from partners.statements import SignedDocument, SignedDocuments
from web.document_pdf import STAR_WORDS
from web.documents import bank_time, certificate_context
from web.i18n import N_, gettext_for
from web.pages import (
    Form,
    is_whole_day,
    language_of,
    member_status,
    refusal,
    render,
    to_login,
)
from web.session import ON_BEHALF_STATE_KEY, viewer

HISTORY_LIMIT = 50
RequestId = Annotated[str, PathParameter(max_length=64)]
RecordId = Annotated[str, PathParameter(max_length=64)]
Seq = Annotated[int, PathParameter(ge=0, le=2**53 - 1)]
# Words for what the history and the gift form show; the catalog translates them.
WORDS = (
    N_("deposit"),
    N_("correction"),
    N_("gift"),
    N_("donation"),
    N_("grant"),
    N_("redemption"),
    N_("reserve"),
    N_("release"),
    N_("refund"),
    N_("exchange"),
    N_("reversal"),
    N_("transfer_out"),
    N_("transfer_in"),
    N_("transfer_void"),
    N_("spouse"),
    N_("parent"),
    N_("child"),
    N_("grandparent"),
    N_("grandchild"),
    N_("sibling"),
)


def care_of(request: Request[Any, Any, State]) -> CareService:
    service: CareService = request.app.state.care
    return service


def volunteer_or_page(request: Request[Any, Any, State]) -> Principal | Response[Any]:
    """The caller as an approved volunteer, or the page that says why not (403 for a
    pending or rejected sign-up, the login page for nobody)."""
    principal = viewer(request)
    if principal is None:
        return to_login(request)
    if principal.has(Role.VOLUNTEER) and principal.acting_member_id is not None:
        return principal
    status = member_status(request, principal)
    if status is not None and status.value in ("pending", "rejected"):
        return render(
            request, "pending.html", principal, status=403, rejected=status.value == "rejected"
        )
    return render(
        request,
        "error.html",
        principal,
        status=403,
        title=translate(request, "Not allowed"),
        detail=translate(request, "These pages are for approved volunteers."),
    )


def translate(request: Request[Any, Any, Any], message: str, **values: Any) -> str:
    return gettext_for(language_of(request))(message, **values)


@dataclass(frozen=True)
class Task:
    request: ServiceRequest
    service: str
    when: str
    elder: str | None  # masked, and only once the request is the volunteer's
    place: str | None  # the area; the full address on the visit page of one's own request


def _types(care: CareService, principal: Principal) -> dict[str, ServiceType]:
    return {t.id: t for t in care.catalogue(principal, include_inactive=True)}


def _when(request: Request[Any, Any, State], start: datetime, end: datetime, zone: str) -> str:
    local = ZoneInfo(zone)
    a, b = start.astimezone(local), end.astimezone(local)
    day = f"{a.month}月{a.day}日" if language_of(request) == "zh-CN" else f"{a:%d %b}"
    if is_whole_day(a, b):  # an elder's "any time that day", not 00:00–00:00
        return f"{day} · {translate(request, 'Any time that day')}"
    return f"{day} {a:%H:%M}–{b:%H:%M}"


def _task(
    request: Request[Any, Any, State],
    principal: Principal,
    item: ServiceRequest,
    types: dict[str, ServiceType],
    zone: str,
    in_full: bool = False,
) -> Task:
    kind = types.get(item.service_type_id)
    name = "?"
    if kind is not None:
        name = kind.name_zh if language_of(request) == "zh-CN" else kind.name_en
    elder, place = care_of(request).visit_place(principal, item.id, in_full)
    return Task(item, name, _when(request, item.window_start, item.window_end, zone), elder, place)


def hours_text(request: Request[Any, Any, State], minutes: int) -> str:
    sign = "-" if minutes < 0 else ""
    h, m = divmod(abs(minutes), 60)
    return translate(request, "%(sign)s%(h)s h %(m)s min", sign=sign, h=h, m=m)


# ---------------------------------------------------------------- tasks


@get("/volunteer", sync_to_thread=True, include_in_schema=False)
def tasks(
    request: Request[Any, Any, State], done: Annotated[str | None, QueryParameter()] = None
) -> Response[Any]:
    who = volunteer_or_page(request)
    if not isinstance(who, Principal):
        return who
    return _tasks_page(request, who, sent=done == "1")


def _tasks_page(
    request: Request[Any, Any, State], principal: Principal, **context: Any
) -> Template:
    return render(
        request,
        "volunteer/tasks.html",
        principal,
        **_tasks_context(request, principal),
        **context,
    )


def _tasks_context(request: Request[Any, Any, State], principal: Principal) -> dict[str, Any]:
    care = care_of(request)
    types = _types(care, principal)
    zone = care.policy(principal.bank_id).timezone
    me = principal.acting_member_id
    assigned = [
        _task(request, principal, r, types, zone)
        for r in care.list_requests(principal, RequestStatus.ASSIGNED.value)
        if r.volunteer_id == me
    ]
    open_ = [r for r in care.list_requests(principal, RequestStatus.OPEN.value) if r.elder_id != me]
    stuck = care.shortfalls(open_)  # hers to pay and she cannot: nothing to take (yet)
    claimable = [_task(request, principal, r, types, zone) for r in open_ if r.id not in stuck][:30]
    logged = _logged_records(care, principal)
    waiting = [(r, bank_time(request, principal.bank_id, r.check_in)) for r in logged]
    return {
        "assigned": assigned,
        "claimable": claimable,
        "waiting": waiting,
        "recorded": {r.request_id for r in logged},
    }


def _logged_records(care: CareService, principal: Principal) -> list[ServiceRecord]:
    """The volunteer's records waiting for the served side: their requests stay assigned
    until confirmed, but there is nothing left to do there but wait (or enter the code)."""
    return [
        r
        for r in care.list_records(principal, RecordStatus.LOGGED.value)
        if r.volunteer_id == principal.acting_member_id
    ]


@post("/volunteer/requests/{request_id:str}/claim", sync_to_thread=True, include_in_schema=False)
def claim(request: Request[Any, Any, State], request_id: RequestId) -> Response[Any]:
    who = volunteer_or_page(request)
    if not isinstance(who, Principal):
        return who
    try:
        care_of(request).claim(who, request_id)
    except (AccountsError, CareError) as exc:
        return refusal(request, exc, "error.html", who, title=translate(request, "Not allowed"))
    return Redirect(f"/volunteer/visit/{request_id}", status_code=303)


@post("/volunteer/requests/{request_id:str}/withdraw", sync_to_thread=True, include_in_schema=False)
def withdraw(request: Request[Any, Any, State], request_id: RequestId) -> Response[Any]:
    who = volunteer_or_page(request)
    if not isinstance(who, Principal):
        return who
    try:
        care_of(request).withdraw(who, request_id)
    except (AccountsError, CareError) as exc:
        return refusal(request, exc, "error.html", who, title=translate(request, "Not allowed"))
    return Redirect("/volunteer", status_code=303)


# ---------------------------------------------------------------- the visit


@get("/volunteer/visit/{request_id:str}", sync_to_thread=True, include_in_schema=False)
def visit(request: Request[Any, Any, State], request_id: RequestId) -> Response[Any]:
    who = volunteer_or_page(request)
    if not isinstance(who, Principal):
        return who
    return _visit_page(request, who, request_id)


def _visit_page(
    request: Request[Any, Any, State], principal: Principal, request_id: str, **context: Any
) -> Template:
    return render(
        request,
        "volunteer/visit.html",
        principal,
        **_visit_context(request, principal, request_id),
        **context,
    )


def _visit_context(
    request: Request[Any, Any, State], principal: Principal, request_id: str
) -> dict[str, Any]:
    care = care_of(request)
    item = care.get_request(principal, request_id)
    types = _types(care, principal)
    zone = care.policy(principal.bank_id).timezone
    mine = item.volunteer_id == principal.acting_member_id and item.status is RequestStatus.ASSIGNED
    kind = types.get(item.service_type_id)
    return {
        "task": _task(request, principal, item, types, zone, in_full=mine),
        "service_code": kind.code if kind else "",
        "zone": zone,
        "mine": mine,
        "recorded": mine
        and any(r.request_id == request_id for r in _logged_records(care, principal)),
    }


def _instant(text: str, field: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput(N_("%(field)s is not a time"), field=field) from exc
    if moment.tzinfo is None:
        raise InvalidInput(N_("%(field)s is not a time"), field=field)
    return moment


def _checked_in_at(request: Request[Any, Any, State], principal: Principal, text: str) -> str:
    """The check-in time the form carries, on the bank's clock; as typed if it is no time."""
    try:
        return bank_time(request, principal.bank_id, _instant(text, "check_in"))
    except InvalidInput:
        return text


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@post("/volunteer/visit/{request_id:str}/check-in", sync_to_thread=True, include_in_schema=False)
def check_in(request: Request[Any, Any, State], request_id: RequestId) -> Response[Any]:
    """Without JavaScript: the page comes back carrying the check-in time in its form."""
    who = volunteer_or_page(request)
    if not isinstance(who, Principal):
        return who
    now = _now()
    return _visit_page(
        request, who, request_id, checked_in=now, checked_in_at=bank_time(request, who.bank_id, now)
    )


@post("/volunteer/visit/{request_id:str}/record", sync_to_thread=True, include_in_schema=False)
def record(request: Request[Any, Any, State], request_id: RequestId, data: Form) -> Response[Any]:
    """Without JavaScript: check out now and log the record (unsigned: no device key)."""
    who = volunteer_or_page(request)
    if not isinstance(who, Principal):
        return who
    care = care_of(request)
    try:
        item = care.get_request(who, request_id)
        kind = _types(care, who).get(item.service_type_id)
        care.log_record(
            who,
            elder_id=item.elder_id,
            service_code=kind.code if kind else "",
            check_in=_instant(data.get("check_in", ""), "check_in"),
            check_out=datetime.now(UTC).replace(microsecond=0),
            minutes=None,
            request_id=request_id,
            device_key_id=None,
            signature=None,
            confirmation_code=data.get("confirmation_code", "").strip() or None,
        )
    except (AccountsError, CareError) as exc:
        return refusal(
            request,
            exc,
            "volunteer/visit.html",
            who,
            checked_in=data.get("check_in", ""),
            checked_in_at=_checked_in_at(request, who, data.get("check_in", "")),
            **_visit_context(request, who, request_id),
        )
    return Redirect("/volunteer?done=1", status_code=303)


@post("/volunteer/records/{record_id:str}/code", sync_to_thread=True, include_in_schema=False)
def enter_code(request: Request[Any, Any, State], record_id: RecordId, data: Form) -> Response[Any]:
    """The elder's 6-digit code, entered after the record was logged."""
    who = volunteer_or_page(request)
    if not isinstance(who, Principal):
        return who
    try:
        care_of(request).confirm(who, record_id, data.get("confirmation_code", "").strip())
    except (AccountsError, CareError) as exc:
        return refusal(
            request,
            exc,
            "volunteer/tasks.html",
            who,
            error_record=record_id,
            **_tasks_context(request, who),
        )
    return Redirect("/volunteer?done=1", status_code=303)


# ---------------------------------------------------------------- my hours


@get("/volunteer/hours", sync_to_thread=True, include_in_schema=False)
def hours(request: Request[Any, Any, State]) -> Response[Any]:
    who = volunteer_or_page(request)
    if not isinstance(who, Principal):
        return who
    care = care_of(request)
    member_id = who.acting_member_id or ""
    balance = care.balance(who, member_id)
    history = care.history(who, member_id, HISTORY_LIMIT, None)
    partners: PartnerLinks = request.app.state.partners
    shown = partners.standing_of(who, member_id)
    return render(
        request,
        "volunteer/hours.html",
        who,
        standing=shown if shown.star_level is not None else None,
        verified=hours_text(request, shown.verified_minutes),
        star=STAR_WORDS[shown.star_level - 1] if shown.star_level else None,
        available=hours_text(request, balance.available),
        reserved=hours_text(request, balance.reserved) if balance.reserved else None,
        history=[
            (item, hours_text(request, item.minutes), bank_time(request, who.bank_id, item.time))
            for item in history
        ],
        services=_service_words(request, care, who),
    )


def _service_words(
    request: Request[Any, Any, State], care: CareService, principal: Principal
) -> dict[str, str]:
    """Each service code of the catalogue in the page's language (助餐 / Meal help)."""
    chinese = language_of(request) == "zh-CN"
    return {t.code: t.name_zh if chinese else t.name_en for t in _types(care, principal).values()}


@get("/volunteer/hours/{seq:int}", sync_to_thread=True, include_in_schema=False)
def receipt_page(request: Request[Any, Any, State], seq: Seq) -> Response[Any]:
    who = volunteer_or_page(request)
    if not isinstance(who, Principal):
        return who
    text = care_of(request).receipt(who, who.acting_member_id or "", seq)
    try:
        qr = segno.make(text, error="l", micro=False).svg_inline(
            scale=3, dark="#000", light="#fff", omitsize=True
        )
    except segno.DataOverflowError:
        qr = None
    return render(request, "volunteer/receipt.html", who, seq=seq, qr=qr, receipt=text)


@get("/volunteer/hours/{seq:int}/receipt.txt", sync_to_thread=True, include_in_schema=False)
def receipt_file(request: Request[Any, Any, State], seq: Seq) -> Response[Any]:
    who = volunteer_or_page(request)
    if not isinstance(who, Principal):
        return who
    text = care_of(request).receipt(who, who.acting_member_id or "", seq)
    return Response(
        text,
        media_type="text/plain; charset=utf-8",
        headers={
            "content-disposition": f'attachment; filename="timebank-receipt-{seq}.txt"',
            "cache-control": "no-store",
        },
    )


# ---------------------------------------------------------------- my certificate

NameChoice = Annotated[str, QueryParameter(name="name", max_length=10)]
NicknameText = Annotated[str | None, QueryParameter(name="nickname", max_length=40)]


@get("/volunteer/certificate", sync_to_thread=True, include_in_schema=False)
def certificate_page(
    request: Request[Any, Any, State], name: NameChoice = "masked", nickname: NicknameText = None
) -> Response[Any]:
    """My service certificate (志愿服务证明), signed by the bank: the name as I choose to show
    it; the page prints (to paper or PDF) with a QR code of the SHA-256 of the signed JSON,
    which downloads from the same page. Each one issued is in the audit trail."""
    who = volunteer_or_page(request)
    if not isinstance(who, Principal):
        return who
    documents: SignedDocuments = request.app.state.documents
    member_id = who.acting_member_id or ""
    try:
        issued = documents.certificate(who, member_id, None, None, name, nickname)
    except AccountsError as exc:
        issued = documents.certificate(who, member_id, None, None)
        return refusal(
            request, exc, "volunteer/certificate.html", who, **_certificate(request, issued)
        )
    request.scope["state"][ON_BEHALF_STATE_KEY] = issued.member_id
    return render(request, "volunteer/certificate.html", who, **_certificate(request, issued))


def _certificate(request: Request[Any, Any, State], issued: SignedDocument) -> dict[str, Any]:
    return certificate_context(request, issued, "/volunteer/certificate", "/volunteer/hours")


# ---------------------------------------------------------------- giving


VOLUNTEER_HANDLERS = [
    tasks,
    claim,
    withdraw,
    visit,
    check_in,
    record,
    enter_code,
    hours,
    receipt_page,
    receipt_file,
    certificate_page,
]
