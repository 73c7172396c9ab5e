"""Sending time to a member of another district's bank (通存通兑, docs/federation.md#transfers),
for the member and for an elder's family proxy: choose the peer bank, the receiving member's id
there and the time; a check step says what will happen; the result says settled, held (the
other bank could not be reached: we retry) or void with the reason. The send is the service
behind ``POST /v1/peer-transfers`` (``federation.transfers.Sending.send``); the check step's
one-time key is its idempotency key, and ``web.once`` answers a repeated post with the first
one's result, so a double tap moves the minutes once."""

from __future__ import annotations

import re
from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.params import PathParameter, QueryParameter
from litestar.response import Redirect

from accounts.errors import AccountsError, Forbidden, InvalidInput, NotFound
from accounts.model import Member, Principal
from care.errors import CareError
from federation.peers import Peer, Peers
from federation.transfers import PeerUnavailable, Sending, transfer_name
from ledger.kinds import TransferOut, TransferSettled, TransferVoid
from ledger.log import Log
from web.i18n import N_
from web.links import who_may_decide
from web.once import new_once_key, once
from web.pages import Form, refusal, render, to_login
from web.session import ON_BEHALF_STATE_KEY, accounts_of, viewer
from web.volunteer import care_of, hours_text, translate
from web.volunteer_give import minutes_asked

MemberId = Annotated[str, PathParameter(max_length=64)]
TransferId = Annotated[str, PathParameter(max_length=64)]
Why = Annotated[str | None, QueryParameter(name="why", max_length=32)]
RECEIVER = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Why the other bank refused (its final answers, federation.transfers.FINAL_REFUSALS)
REASONS = {
    "unknown-member": N_("the other bank has no active member with this id"),
    "wrong-member": N_("the member id is not the one the transfer names"),
    "not-for-us": N_("the transfer was addressed to another bank"),
    "expired": N_("the transfer arrived after its time ran out"),
    "not-related": N_("the member there is neither the sender nor a confirmed relative"),
    "refused": N_("the other bank refused it"),
}
FORM_FIELDS = ("peer", "to_member_id", "minutes")


def _sending(request: Request[Any, Any, State]) -> Sending:
    service: Sending = request.app.state.transfers_sending
    return service


def _peers(request: Request[Any, Any, State]) -> list[Peer]:
    peers: Peers = request.app.state.peers
    return peers.list()


def _log(request: Request[Any, Any, State]) -> Log:
    log: Log = request.app.state.log
    return log


def _sender(request: Request[Any, Any, State], principal: Principal, member_id: str) -> Member:
    """The member whose time is sent: the caller or an elder they are family proxy for
    (the service checks the same; other members are refused before any form is shown)."""
    try:
        member, access = accounts_of(request).member_access(principal, member_id)
    except NotFound as exc:  # the API's answer, in the page's words (as the elder's pages)
        raise NotFound(N_("You do not act for this person."), field="member_id") from exc
    if access not in ("self", "proxy"):
        raise Forbidden(N_("only the member or their family proxy sends their minutes"))
    if access == "proxy":
        request.scope["state"][ON_BEHALF_STATE_KEY] = member_id
    return member


@get("/transfers", sync_to_thread=True, include_in_schema=False)
def transfers_index(request: Request[Any, Any, State]) -> Response[Any]:
    """Whose time the caller may send: their own, their elders'; straight on with one."""
    principal = viewer(request)
    if principal is None:
        return to_login(request)
    people = who_may_decide(request, principal)
    if len(people) == 1:
        return Redirect(f"/transfers/{people[0][0]}", status_code=303)
    return render(request, "transfers/index.html", principal, people=people)


def _context(
    request: Request[Any, Any, State], principal: Principal, member: Member
) -> dict[str, Any]:
    balance = care_of(request).balance(principal, member.id)
    names = dict(who_may_decide(request, principal))
    return {
        "member_id": member.id,
        "whose": names.get(member.id, ""),
        "own": member.id == principal.acting_member_id,
        "peers": _peers(request),
        "available": hours_text(request, balance.available),
        "available_minutes": balance.available,
    }


@get("/transfers/{member_id:str}", sync_to_thread=True, include_in_schema=False)
def transfer_page(request: Request[Any, Any, State], member_id: MemberId) -> Response[Any]:
    principal = viewer(request)
    if principal is None:
        return to_login(request)
    member = _sender(request, principal, member_id)
    context = _context(request, principal, member)
    return render(request, "transfers/send.html", principal, about=member.id, form={}, **context)


def _checked(request: Request[Any, Any, State], data: dict[str, str]) -> tuple[Peer, str, int]:
    peer = next((p for p in _peers(request) if p.name == data.get("peer")), None)
    if peer is None:
        raise InvalidInput(N_("choose one of the banks listed"), field="peer")
    receiver = data.get("to_member_id", "").strip()
    if not RECEIVER.fullmatch(receiver):
        raise InvalidInput(
            N_("give the member id the other bank shows its member (letters and digits)"),
            field="to_member_id",
        )
    return peer, receiver, minutes_asked(data)


@post("/transfers/{member_id:str}", sync_to_thread=True, include_in_schema=False)
def transfer(request: Request[Any, Any, State], member_id: MemberId, data: Form) -> Response[Any]:
    """The first post shows what will happen; the second, with its one-time key, sends."""
    principal = viewer(request)
    if principal is None:
        return to_login(request)
    member = _sender(request, principal, member_id)
    form = {k: data.get(k, "") for k in ("peer", "to_member_id", "hours", "minutes")}
    try:
        peer, receiver, minutes = _checked(request, data)
        if data.get("confirmed") != "1":
            context = _context(request, principal, member)
            return render(
                request,
                "transfers/send.html",
                principal,
                about=member.id,
                form=form,
                confirm={
                    "peer": peer,
                    "to_member_id": receiver,
                    "amount": hours_text(request, minutes),
                    "after": hours_text(request, context["available_minutes"] - minutes),
                    "once": new_once_key(),
                },
                **context,
            )

        def send() -> Response[Any]:
            key = f"web-{data.get('once')}"
            result = f"/transfers/{member.id}/{transfer_name(member.ledger_account, key)}"
            try:
                outcome = _sending(request).send(
                    principal, member.id, peer.name, receiver, minutes, key
                )
            except PeerUnavailable:  # held, not delivered: the result page says so
                if not _log(request).entries_by_id([f"transfer-out:{result.rsplit('/', 1)[1]}"]):
                    raise
                return Redirect(result, status_code=303)
            why = f"?why={outcome.reason}" if outcome.reason in REASONS else ""
            return Redirect(f"/transfers/{member.id}/{outcome.transfer}{why}", status_code=303)

        return once(request, principal, data, send, wait_seconds=15)
    except (AccountsError, CareError) as exc:
        context = _context(request, principal, member)
        return refusal(
            request, exc, "transfers/send.html", principal, about=member.id, form=form, **context
        )


@get("/transfers/{member_id:str}/{transfer_id:str}", sync_to_thread=True, include_in_schema=False)
def transfer_result(
    request: Request[Any, Any, State], member_id: MemberId, transfer_id: TransferId, why: Why
) -> Response[Any]:
    """Where a transfer of the member stands, read from this bank's log."""
    principal = viewer(request)
    if principal is None:
        return to_login(request)
    member = _sender(request, principal, member_id)
    ids = [f"transfer-{step}:{transfer_id}" for step in ("out", "settled", "void")]
    found = _log(request).entries_by_id(ids)
    held = found.get(ids[0])
    out = TransferOut.from_entry(held.request) if held is not None else None
    if out is None or out.member != member.ledger_account:
        raise NotFound(N_("no such transfer of this member"), field="transfer")
    if ids[1] in found:
        status, reason = "settled", None
        peer_index: int | None = TransferSettled.from_entry(found[ids[1]].request).to_index
    elif ids[2] in found:
        status, peer_index = "void", None
        logged = TransferVoid.from_entry(found[ids[2]].request).reason
        reason = REASONS.get(why or "") if logged == "refused" else None
        reason = translate(request, reason or REASONS.get(logged, REASONS["refused"]))
    else:
        status, reason, peer_index = "held", None, None
    context = _context(request, principal, member)
    return render(
        request,
        "transfers/result.html",
        principal,
        status=200,
        about=member.id,
        state=status,
        reason=reason,
        out=out,
        out_seq=held.seq if held is not None else None,
        peer_index=peer_index,
        amount=hours_text(request, out.minutes),
        **context,
    )


TRANSFER_HANDLERS = [transfers_index, transfer_page, transfer, transfer_result]
