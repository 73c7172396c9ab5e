"""The elder's pages after asking: "did the volunteer come?" (one button, or a code to read
out), her requests and cancelling one, and her stored time and what it paid for
(``web.elder``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from litestar import Request, Response, get, post
from litestar.datastructures import Cookie, State
from litestar.params import QueryParameter
from litestar.response import Redirect

from accounts.errors import AccountsError, InvalidInput, NotFound
from care.errors import CareError, WrongState
from care.model import RECORD_REJECTED, RecordStatus, RequestStatus, ServiceRequest, Shortfall
from care.statements import HistoryItem
from web.elder import (
    REASONS,
    STATES,
    ItemId,
    MemberId,
    Subject,
    page,
    refused,
    service_name,
    service_names,
    subject_or_page,
    time_words,
    when_words,
    zone_of,
)
from web.i18n import N_
from web.once import new_once_key, once
from web.pages import Form
from web.session import ON_BEHALF_STATE_KEY
from web.volunteer import HISTORY_LIMIT, care_of, hours_text, translate


@get("/elder/{member_id:str}/confirm", sync_to_thread=True, include_in_schema=False)
def confirm_page(
    request: Request[Any, Any, State],
    member_id: MemberId,
    done: Annotated[str | None, QueryParameter()] = None,
) -> Response[Any]:
    who = subject_or_page(request, member_id)
    if not isinstance(who, Subject):
        return who
    return page(request, who, "elder/confirm.html", done=done == "1", **_waiting(request, who))


def _waiting(request: Request[Any, Any, State], who: Subject) -> dict[str, Any]:
    care = care_of(request)
    zone = zone_of(request, who.principal)
    names = service_names(request, who.principal)
    records = [
        {
            "id": r.id,
            "service": service_name(request, names.get(r.service_type_id)),
            "when": when_words(request, zone, r.check_in, r.check_out),
            "length": hours_text(request, r.minutes),
        }
        for r in care.list_records(who.principal, RecordStatus.LOGGED.value)
        if r.elder_id == who.elder.id
    ]
    return {"records": records, "once": new_once_key()}


@post(
    "/elder/{member_id:str}/records/{record_id:str}/confirm",
    sync_to_thread=True,
    include_in_schema=False,
)
def confirm(
    request: Request[Any, Any, State], member_id: MemberId, record_id: ItemId, data: Form
) -> Response[Any]:
    """One button: ``CareService.confirm`` without a code, as ``POST /v1/records/{id}/confirm``
    (a family proxy's confirmation names the elder in the audit event's ``on_behalf``). The
    form's one-time key makes a double tap or a resent page confirm once and say so."""
    who = subject_or_page(request, member_id)
    if not isinstance(who, Subject):
        return who

    def confirmed() -> Response[Any]:
        record = care_of(request).confirm(who.principal, record_id, None)
        if record.elder_id != who.principal.member_id:
            request.scope["state"][ON_BEHALF_STATE_KEY] = record.elder_id
        return Redirect(f"/elder/{member_id}/confirm?done=1", status_code=303)

    try:
        _own_record(request, who, record_id)
        return once(request, who.principal, data, confirmed)
    except (AccountsError, CareError) as exc:
        return refused(request, exc, who, "elder/confirm.html", **_waiting(request, who))


def _own_record(request: Request[Any, Any, State], who: Subject, record_id: str) -> None:
    """A record of another elder the family also acts for is, on this elder's page, a record
    that does not exist: confirmed here, it would be audited and thanked for under this elder."""
    if care_of(request).get_record(who.principal, record_id).elder_id != who.elder.id:
        raise NotFound("no record %(id)s", id=record_id)


CODE_COOKIE = "tb_code"


@post("/elder/{member_id:str}/code", sync_to_thread=True, include_in_schema=False)
def code(request: Request[Any, Any, State], member_id: MemberId) -> Response[Any]:
    """A code to read to the volunteer (``POST /v1/members/{id}/confirmation-codes``), shown on
    a page of its own: the code waits in a cookie of this elder's code page until it expires,
    so Back, reloading or a header button show it again instead of asking to resend a form."""
    who = subject_or_page(request, member_id)
    if not isinstance(who, Subject):
        return who
    made, expires = care_of(request).create_confirmation_code(who.principal, member_id)
    response = Redirect(f"/elder/{member_id}/code", status_code=303)
    response.cookies.append(
        Cookie(
            key=CODE_COOKIE,
            value=f"{made}.{int(expires.timestamp())}",
            path=f"/elder/{member_id}/code",
            max_age=max(int((expires - datetime.now(UTC)).total_seconds()), 0),
            httponly=True,
            secure=request.url.scheme == "https",
            samesite="lax",
        )
    )
    return response


@get("/elder/{member_id:str}/code", sync_to_thread=True, include_in_schema=False)
def code_page(request: Request[Any, Any, State], member_id: MemberId) -> Response[Any]:
    """The code made last on this phone while it is valid; otherwise the button to make one."""
    who = subject_or_page(request, member_id)
    if not isinstance(who, Subject):
        return who
    shown, _, until = request.cookies.get(CODE_COOKIE, "").partition(".")
    if not (len(shown) == 6 and shown.isdigit() and until.isdigit()):
        return page(request, who, "elder/code.html", code=None)
    expires = datetime.fromtimestamp(int(until), UTC)
    if expires <= datetime.now(UTC):
        return page(request, who, "elder/code.html", code=None)
    local = expires.astimezone(zone_of(request, who.principal))
    return page(request, who, "elder/code.html", code=shown, until=f"{local:%H:%M}")


# ---------------------------------------------------------------- requests and cancelling


@dataclass(frozen=True)
class Asked:
    request: ServiceRequest
    service: str
    when: str
    state: str
    cancellable: bool
    reason: str | None
    stuck: str | None = None  # her stored time does not pay for it: why nobody comes yet


# A visit recorded for a request waits for her "yes" (or the centre's rejection) instead.
VISIT_RECORDED = N_(
    "A volunteer has written down this visit. If they came, say so on “Did the volunteer "
    "come?”; if they did not, call the centre."
)


def _visits_recorded(request: Request[Any, Any, State], who: Subject) -> set[str]:
    """Her requests with a visit recorded and not yet confirmed: not hers to cancel."""
    return {
        r.request_id
        for r in care_of(request).list_records(who.principal, RecordStatus.LOGGED.value)
        if r.elder_id == who.elder.id and r.request_id is not None
    }


def _reason(request: Request[Any, Any, State], item: ServiceRequest) -> str | None:
    """Why it was cancelled: as she or the centre wrote it, the centre's rejection in words."""
    if item.cancel_reason != RECORD_REJECTED:
        return item.cancel_reason
    rejected = translate(request, "The centre rejected the record of this visit.")
    if not item.redeem:
        return rejected
    return rejected + " " + translate(request, "The stored time it used was given back.")


def _stuck(request: Request[Any, Any, State], short: Shortfall) -> str:
    """Why no volunteer comes for a request paid with stored time that no longer covers it."""
    return translate(
        request,
        "Not enough stored time for this: %(have)s now, %(need)s needed. No volunteer can "
        "take it until there is enough. You can cancel it.",
        have=time_words(request, short.have),
        need=time_words(request, short.need),
    )


@get("/elder/{member_id:str}/requests", sync_to_thread=True, include_in_schema=False)
def requests(
    request: Request[Any, Any, State],
    member_id: MemberId,
    asked: Annotated[str | None, QueryParameter()] = None,
    cancelled: Annotated[str | None, QueryParameter()] = None,
) -> Response[Any]:
    who = subject_or_page(request, member_id)
    if not isinstance(who, Subject):
        return who
    care = care_of(request)
    zone = zone_of(request, who.principal)
    names = service_names(request, who.principal)
    recorded = _visits_recorded(request, who)
    mine = sorted(
        (r for r in care.list_requests(who.principal, None) if r.elder_id == member_id),
        key=lambda r: r.window_start,
        reverse=True,
    )
    stuck = care.shortfalls(mine[:50])
    items = [
        Asked(
            r,
            service_name(request, names.get(r.service_type_id)),
            when_words(request, zone, r.window_start, r.window_end),
            translate(request, STATES[r.status]),
            r.status in (RequestStatus.OPEN, RequestStatus.ASSIGNED) and r.id not in recorded,
            _reason(request, r),
            _stuck(request, stuck[r.id]) if r.id in stuck else None,
        )
        for r in mine[:50]
    ]
    return page(
        request,
        who,
        "elder/requests.html",
        items=items,
        asked=asked == "1",
        cancelled=cancelled == "1",
    )


def _cancel_context(
    request: Request[Any, Any, State], who: Subject, request_id: str
) -> dict[str, Any]:
    care = care_of(request)
    item = care.get_request(who.principal, request_id)
    if item.elder_id != who.elder.id:  # another elder's: as if there were no such request
        raise NotFound("no request %(id)s", id=request_id)
    names = service_names(request, who.principal)
    zone = zone_of(request, who.principal)
    return {
        "item": item,
        "service": service_name(request, names.get(item.service_type_id)),
        "when": when_words(request, zone, item.window_start, item.window_end),
        "reasons": REASONS,
        "recorded": item.id in _visits_recorded(request, who),
        "visit_recorded": VISIT_RECORDED,
        "once": new_once_key(),
    }


@get(
    "/elder/{member_id:str}/requests/{request_id:str}/cancel",
    sync_to_thread=True,
    include_in_schema=False,
)
def cancel_page(
    request: Request[Any, Any, State], member_id: MemberId, request_id: ItemId
) -> Response[Any]:
    who = subject_or_page(request, member_id)
    if not isinstance(who, Subject):
        return who
    return page(request, who, "elder/cancel.html", **_cancel_context(request, who, request_id))


@post(
    "/elder/{member_id:str}/requests/{request_id:str}/cancel",
    sync_to_thread=True,
    include_in_schema=False,
)
def cancel(
    request: Request[Any, Any, State], member_id: MemberId, request_id: ItemId, data: Form
) -> Response[Any]:
    """With a reason from the list (``CareService.cancel``, as ``POST
    /v1/requests/{id}/cancel``); the reason is kept in the page's language. The form's one-time
    key makes a double tap or a resent page cancel once and say so."""
    who = subject_or_page(request, member_id)
    if not isinstance(who, Subject):
        return who
    context = _cancel_context(request, who, request_id)

    def cancelled() -> Response[Any]:
        words = dict(REASONS).get(data.get("reason", ""))
        if words is None:
            raise InvalidInput(N_("choose a reason"), field="reason")
        if context["recorded"]:  # the service's refusal is in staff's words
            recorded = translate(request, VISIT_RECORDED)
            raise WrongState(recorded, zh=recorded)
        care_of(request).cancel(who.principal, request_id, translate(request, words))
        return Redirect(f"/elder/{member_id}/requests?cancelled=1", status_code=303)

    try:
        return once(request, who.principal, data, cancelled)
    except (AccountsError, CareError) as exc:
        return refused(request, exc, who, "elder/cancel.html", **context)


# ---------------------------------------------------------------- stored time


# Her history in words of its own where the ledger's kinds read alike (a redemption and a
# partner exchange are both 兑换) or say nothing of the minutes (a hold).
KINDS = {
    "redemption": N_("Paid for a service"),
    "exchange": N_("Exchanged on a partner platform"),
    "reserve": N_("Held for a request"),
    "release": N_("Hold given back"),
}
HOLDS = ("reserve", "release")


def _amount(request: Request[Any, Any, State], item: HistoryItem) -> str:
    """What an entry did to her stored time: + or − what it moved, a hold what it holds."""
    if item.kind in HOLDS:
        return time_words(request, item.held)
    sign = "+" if item.minutes > 0 else "−" if item.minutes < 0 else ""
    return sign + time_words(request, item.minutes)


def _local(stamp: str, zone: ZoneInfo) -> str:
    """A log entry's UTC time stamp in the bank's time zone."""
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return f"{moment.astimezone(zone):%Y-%m-%d %H:%M}"


@get("/elder/{member_id:str}/time", sync_to_thread=True, include_in_schema=False)
def stored_time(request: Request[Any, Any, State], member_id: MemberId) -> Response[Any]:
    """Stored time in large text and what it was spent on (``balance``, ``history``)."""
    who = subject_or_page(request, member_id)
    if not isinstance(who, Subject):
        return who
    care = care_of(request)
    balance = care.balance(who.principal, member_id)
    codes = {t.code: t for t in service_names(request, who.principal).values()}
    zone = zone_of(request, who.principal)
    history = [
        {
            "amount": _amount(request, item),
            "kind": KINDS.get(item.kind, item.kind),
            "service": service_name(request, codes.get(item.service)) if item.service else None,
            "time": _local(item.time, zone),
        }
        for item in care.history(who.principal, member_id, HISTORY_LIMIT, None)
    ]
    return page(
        request,
        who,
        "elder/time.html",
        available=hours_text(request, balance.available),
        reserved=hours_text(request, balance.reserved) if balance.reserved else None,
        history=history,
    )


VISIT_HANDLERS = [
    confirm_page,
    confirm,
    code,
    code_page,
    requests,
    cancel_page,
    cancel,
    stored_time,
]
