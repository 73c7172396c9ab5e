"""Statements and certificates on the web for a member and for the family proxy of an elder:
``/documents`` lists the people the caller may ask for, ``/documents/{id}/certificate`` and
``/documents/{id}/statement`` issue one (recorded in the audit trail) and link its PDF from
the ``/v1`` route, so the rules are ``partners.statements``' and the refusals the API's."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import segno
from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.params import PathParameter, QueryParameter

from accounts.errors import AccountsError
from accounts.model import Principal
from care.service import CareService
from partners.statements import SignedDocument, SignedDocuments
from web.document_pdf import (
    STAR_WORDS,
    document_bytes,
    file_name,
    issued_text,
    local_time,
    minutes_text,
)
from web.i18n import gettext_for
from web.links import who_may_decide
from web.pages import language_of, refusal, render, to_login
from web.session import ON_BEHALF_STATE_KEY, viewer

MemberId = Annotated[str, PathParameter(max_length=64)]
NameChoice = Annotated[str, QueryParameter(name="name", max_length=10)]
NicknameText = Annotated[str | None, QueryParameter(name="nickname", max_length=40)]
Day = Annotated[str | None, QueryParameter(max_length=10)]


def documents_of(request: Request[Any, Any, State]) -> SignedDocuments:
    service: SignedDocuments = request.app.state.documents
    return service


def bank_time(request: Request[Any, Any, State], bank_id: str, moment: datetime | str) -> str:
    """A UTC moment (or its ISO text) as the bank's clock reads it (Beijing time for a Chinese
    bank), the time every other page shows."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    zone = ZoneInfo(request.app.state.care.policy(bank_id).timezone)
    return f"{moment.astimezone(zone):%Y-%m-%d %H:%M}"


def zone_of_document(request: Request[Any, Any, State], document: dict[str, Any]) -> ZoneInfo:
    """The issuing bank's time zone (its policy): the times the member sees on her other pages."""
    care: CareService = request.app.state.care
    return ZoneInfo(care.policy(document["bank"]["id"]).timezone)


def signed_context(document: dict[str, Any], zone: ZoneInfo) -> dict[str, Any]:
    """What every document page shows: when it was issued (local), its SHA-256 as a QR code
    and the JSON to download."""
    data = document_bytes(document)
    digest = hashlib.sha256(data).hexdigest()
    return {
        "doc": document,
        "issued": issued_text(document, zone),
        "digest": digest,
        "qr": segno.make(f"sha256:{digest}", error="m", micro=False).svg_inline(
            scale=3, dark="#000", light="#fff", omitsize=True
        ),
        "download": "data:application/json;base64," + base64.b64encode(data).decode(),
        "download_name": file_name(document),
    }


def certificate_context(
    request: Request[Any, Any, State], issued: SignedDocument, form_action: str, back: str
) -> dict[str, Any]:
    document = issued.document
    service = document["service"]
    member = document["member"]
    query = {"name": member["name_shown"]}
    if member["name_shown"] == "nickname":
        query["nickname"] = member["name"]
    _ = gettext_for(language_of(request))
    return {
        **signed_context(document, zone_of_document(request, document)),
        "name_choice": member["name_shown"],
        "hours": minutes_text(_, service["cumulative_minutes"]),
        "star": STAR_WORDS[service["star_level"] - 1] if service["star_level"] else None,
        "form_action": form_action,
        "pdf": f"/v1/members/{issued.member_id}/certificate.pdf?{urlencode(query)}",
        "back": back,
    }


@get("/documents", sync_to_thread=True, include_in_schema=False)
def documents_page(request: Request[Any, Any, State]) -> Response[Any]:
    """Whose statement and certificate the caller may ask for: themselves, their elders."""
    principal = viewer(request)
    if principal is None:
        return to_login(request)
    people = who_may_decide(request, principal)
    return render(request, "documents/index.html", principal, people=people)


@get("/documents/{member_id:str}/certificate", sync_to_thread=True, include_in_schema=False)
def certificate_page(
    request: Request[Any, Any, State],
    member_id: MemberId,
    name: NameChoice = "masked",
    nickname: NicknameText = None,
) -> Response[Any]:
    """A member's certificate, for the member or the elder's family proxy (full name allowed)."""
    principal = viewer(request)
    if principal is None:
        return to_login(request)
    service = documents_of(request)
    action = f"/documents/{member_id}/certificate"
    try:
        issued = service.certificate(principal, member_id, None, None, name, nickname)
    except AccountsError as exc:
        if exc.field not in ("name", "nickname"):
            raise
        issued = service.certificate(principal, member_id, None, None)
        context = certificate_context(request, issued, action, "/documents")
        return refusal(
            request, exc, "volunteer/certificate.html", principal, about=issued.member_id, **context
        )
    request.scope["state"][ON_BEHALF_STATE_KEY] = issued.member_id
    context = certificate_context(request, issued, action, "/documents")
    return render(
        request, "volunteer/certificate.html", principal, about=issued.member_id, **context
    )


@get("/documents/{member_id:str}/statement", sync_to_thread=True, include_in_schema=False)
def statement_page(
    request: Request[Any, Any, State],
    member_id: MemberId,
    start: Annotated[str | None, QueryParameter(name="from", max_length=10)] = None,
    end: Annotated[str | None, QueryParameter(name="to", max_length=10)] = None,
) -> Response[Any]:
    """A member's signed statement for a period, with its entries, the JSON and the PDF."""
    principal = viewer(request)
    if principal is None:
        return to_login(request)
    service = documents_of(request)
    try:
        issued = service.statement(principal, member_id, start or None, end or None)
    except AccountsError as exc:
        if exc.field not in ("from", "to"):
            raise
        issued = service.statement(principal, member_id, None, None)
        context = _statement_context(request, principal, issued)
        return refusal(
            request, exc, "documents/statement.html", principal, about=issued.member_id, **context
        )
    request.scope["state"][ON_BEHALF_STATE_KEY] = issued.member_id
    context = _statement_context(request, principal, issued)
    return render(request, "documents/statement.html", principal, about=issued.member_id, **context)


def _statement_context(
    request: Request[Any, Any, State], principal: Principal, issued: SignedDocument
) -> dict[str, Any]:
    """The statement as the caller reads it: whose (本人 or the elder's masked name, not the
    ledger account's id, which only the downloaded file needs), times in the bank's zone."""
    _ = gettext_for(language_of(request))
    document = issued.document
    period = document["period"]
    query = urlencode({"from": period["from"], "to": period["to"]})
    zone = zone_of_document(request, document)
    whose = dict(who_may_decide(request, principal)).get(issued.member_id)
    return {
        **signed_context(document, zone),
        "member_id": issued.member_id,
        "whose": whose or document["account"],
        "entries": document["totals"]["entries"],
        "totals": {k: minutes_text(_, v) for k, v in document["totals"].items() if k != "entries"},
        "rows": [
            {
                **entry,
                "when": local_time(str(entry["time"]), zone),
                "change": minutes_text(_, entry["minutes"]),
            }
            for entry in document["entries"]
        ],
        "pdf": f"/v1/members/{issued.member_id}/statement.pdf?{query}",
    }


DOCUMENT_HANDLERS = [documents_page, certificate_page, statement_page]
