"""Signed statements and certificates as PDF: ``…/statement.pdf`` and ``…/certificate.pdf``
beside the JSON routes, with the same rules (``partners.statements``) and the same audit trail.
The PDF carries the signed JSON as an attached file (``web.document_pdf``), so
``timebank audit statement FILE.pdf`` checks it offline (docs/partners.md)."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from litestar import Controller, Request, Response, get
from litestar.datastructures import State
from litestar.openapi import ResponseSpec

from api.accounts_routes import AUTH, Id
from api.care_routes import care
from api.partner_routes import From, Handle, NameShownParam, Nickname, P, To, documents
from api.problems import language
from api.schemas import problems
from partners.statements import SignedDocument
from web.document_pdf import document_pdf
from web.session import ON_BEHALF_STATE_KEY

PDF = "application/pdf"
PDF_RESPONSES: dict[int, ResponseSpec] = {
    **problems(400, 401, 403, 404),
}


def pdf_response(request: Request[Any, Any, Any], signed: SignedDocument) -> Response[bytes]:
    """The PDF in the caller's language (the web app's toggle, else Accept-Language), its times
    in the bank's time zone as on the web pages."""
    request.scope["state"][ON_BEHALF_STATE_KEY] = signed.member_id
    kind = "certificate" if signed.document["format"].endswith("certificate/v1") else "statement"
    zone = ZoneInfo(care(request.app.state).policy(signed.document["bank"]["id"]).timezone)
    return Response(
        document_pdf(signed.document, language(request), zone),
        media_type=PDF,
        headers={
            "content-disposition": f'attachment; filename="timebank-{kind}.pdf"',
            "cache-control": "no-store",
        },
    )


class DocumentPdfController(Controller):
    path = "/v1"
    tags = ["partners"]
    dependencies = AUTH

    @get(
        "/members/{member_id:str}/statement.pdf",
        sync_to_thread=True,
        media_type=PDF,
        responses=PDF_RESPONSES,
    )
    def statement(
        self,
        state: State,
        principal: P,
        member_id: Id,
        request: Request[Any, Any, Any],
        start: From = None,
        end: To = None,
    ) -> Response[bytes]:
        """The member's signed statement as PDF, the signed JSON attached (as
        ``/members/{member_id}/statement``: the member, their proxy, staff, admins)."""
        signed = documents(state).statement(principal, member_id, start, end)
        return pdf_response(request, signed)

    @get(
        "/members/{member_id:str}/certificate.pdf",
        sync_to_thread=True,
        media_type=PDF,
        responses=PDF_RESPONSES,
    )
    def certificate(
        self,
        state: State,
        principal: P,
        member_id: Id,
        request: Request[Any, Any, Any],
        start: From = None,
        end: To = None,
        name: NameShownParam = "masked",
        nickname: Nickname = None,
    ) -> Response[bytes]:
        """The member's service certificate (志愿服务证明) as PDF, the signed JSON attached."""
        service = documents(state)
        signed = service.certificate(principal, member_id, start, end, name, nickname)
        return pdf_response(request, signed)

    @get(
        "/partner/members/{handle:str}/statement.pdf",
        sync_to_thread=True,
        media_type=PDF,
        responses=PDF_RESPONSES,
    )
    def partner_statement(
        self,
        state: State,
        principal: P,
        handle: Handle,
        request: Request[Any, Any, Any],
        start: From = None,
        end: To = None,
    ) -> Response[bytes]:
        """A linked member's signed statement as PDF (``read_statement``)."""
        signed = documents(state).partner_statement(principal, handle, start, end)
        return pdf_response(request, signed)

    @get(
        "/partner/members/{handle:str}/certificate.pdf",
        sync_to_thread=True,
        media_type=PDF,
        responses=PDF_RESPONSES,
    )
    def partner_certificate(
        self,
        state: State,
        principal: P,
        handle: Handle,
        request: Request[Any, Any, Any],
        start: From = None,
        end: To = None,
    ) -> Response[bytes]:
        """A linked member's service certificate as PDF, name masked (``read_statement``)."""
        signed = documents(state).partner_certificate(principal, handle, start, end)
        return pdf_response(request, signed)
