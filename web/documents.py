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
from partners.statements import SignedDocument, SignedDocuments
from web.document_pdf import STAR_WORDS, document_bytes, file_name, minutes_text
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


def signed_context(document: dict[str, Any]) -> dict[str, Any]:
    """What every document page shows: its SHA-256 as a QR code and the JSON to download."""
    data = document_bytes(document)
    digest = hashlib.sha256(data).hexdigest()
    return {
        "doc": document,
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
        **signed_context(document),
        "name_choice": member["name_shown"],
        "issued": bank_time(request, document["bank"]["id"], document["issued_at"]),
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
        return refusal(request, exc, "volunteer/certificate.html", principal, **context)
    request.scope["state"][ON_BEHALF_STATE_KEY] = issued.member_id
    context = certificate_context(request, issued, action, "/documents")
    return render(request, "volunteer/certificate.html", principal, **context)


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
    _ = gettext_for(language_of(request))
    try:
        issued = service.statement(principal, member_id, start or None, end or None)
    except AccountsError as exc:
        if exc.field not in ("from", "to"):
            raise
        issued = service.statement(principal, member_id, None, None)
        context = _statement_context(_, issued)
        return refusal(request, exc, "documents/statement.html", principal, **context)
    request.scope["state"][ON_BEHALF_STATE_KEY] = issued.member_id
    context = _statement_context(_, issued)
    return render(request, "documents/statement.html", principal, **context)


def _statement_context(_: Any, issued: SignedDocument) -> dict[str, Any]:
    document = issued.document
    period = document["period"]
    query = urlencode({"from": period["from"], "to": period["to"]})
    return {
        **signed_context(document),
        "member_id": issued.member_id,
        "totals": {k: minutes_text(_, v) for k, v in document["totals"].items() if k != "entries"},
        "rows": [
            {
                **entry,
                "when": str(entry["time"])[:16].replace("T", " "),
                "change": minutes_text(_, entry["minutes"]),
            }
            for entry in document["entries"]
        ],
        "pdf": f"/v1/members/{issued.member_id}/statement.pdf?{query}",
    }


DOCUMENT_HANDLERS = [documents_page, certificate_page, statement_page]
