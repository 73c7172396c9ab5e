"""``/v1/exports/…``: the statistics as files, each as CSV and as XLSX (the same columns and
rows; the rules are in ``reports.exports``). Each format has its own path, so that the audit
trail says which file left and the link ends as the file does."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter
from litestar.response import Stream

from accounts.model import Principal
from api.accounts_routes import AUTH
from api.problems import language
from api.schemas import problems
from reports.csvfile import attachment
from reports.csvfile import recipient_key as parsed_recipient_key
from reports.exports import (
    COVERAGE_COLUMNS,
    NAMED_RECORD_COLUMNS,
    RECORD_COLUMNS,
    UNVISITED_COLUMNS,
    Export,
    Exports,
    Form,
)
from web.i18n import N_, gettext_for

P = NamedDependency[Principal]
AnyRequest = Request[Any, Any, Any]


def exports_service(state: State) -> Exports:
    service: Exports = state.exports
    return service


# The exports' column headers, translated into the caller's language (docs/statistics.md).
HEADERS = {
    "organisation": N_("organisation"),
    "priority_elders": N_("priority elders"),
    "visited": N_("visited"),
    "rate": N_("rate"),
    "member_id": N_("member id"),
    "name": N_("name (masked)"),
    "area": N_("area"),
    "flags": N_("flags"),
    "last_visit": N_("last visit"),
    "record_id": N_("record id"),
    "service_code": N_("service code"),
    "service": N_("service"),
    "check_in": N_("check-in"),
    "check_out": N_("check-out"),
    "minutes": N_("minutes"),
    "status": N_("status"),
    "confirmed_as": N_("confirmed as"),
    "verified_at": N_("verified at"),
    "deposit_seq": N_("deposit entry"),
    "deposit_minutes": N_("minutes deposited"),
    "volunteer": N_("volunteer (masked)"),
    "elder": N_("elder (masked)"),
}


# A record's status and how it was confirmed, in the caller's language like the headers.
RECORD_WORDS = {
    "logged": N_("logged"),
    "confirmed": N_("confirmed"),
    "verified": N_("verified"),
    "rejected": N_("rejected"),
    "elder": N_("elder"),
    "family": N_("family"),
    "staff_for_elder": N_("staff_for_elder"),
    "code": N_("code"),
}


def _header(request: AnyRequest, columns: tuple[str, ...]) -> list[str]:
    translate = gettext_for(language(request))
    return [translate(HEADERS[c]) for c in columns]


def _file(export: Export) -> Stream:
    headers = {"Content-Disposition": attachment(export.filename), "Cache-Control": "no-store"}
    if export.sealed_to is not None:
        headers["X-Sealed-To"] = export.sealed_to
    return Stream(export.chunks, media_type=export.media_type, headers=headers)


Month = Annotated[str | None, Parameter(max_length=7, description="YYYY-MM")]
OrgId = Annotated[str | None, Parameter(max_length=32)]
RecipientKey = Annotated[
    str | None,
    Parameter(max_length=64, description="the recipient's X25519 public key, base64 (32 bytes)"),
]
REFUSALS = problems(400, 401, 403, 404)
CSV_FILE = {200: ResponseSpec(None, description="the CSV file (UTF-8 with BOM, CRLF)")}
XLSX_FILE = {
    200: ResponseSpec(
        None, description="the XLSX workbook (one sheet, the header row frozen; text as text)"
    )
}
CSV_OR_SEALED = {
    200: ResponseSpec(
        None,
        description="the CSV file; with recipient_key, in a libsodium sealed box to that key",
    )
}
XLSX_OR_SEALED = {
    200: ResponseSpec(
        None,
        description="the XLSX workbook; with recipient_key, in a libsodium sealed box to that key",
    )
}
SEALED_CSV = {
    200: ResponseSpec(None, description="the CSV file in a libsodium sealed box to recipient_key")
}
SEALED_XLSX = {
    200: ResponseSpec(
        None, description="the XLSX workbook in a libsodium sealed box to recipient_key"
    )
}


def _coverage(
    request: AnyRequest,
    state: State,
    principal: Principal,
    month: str | None,
    org_id: str | None,
    form: Form,
) -> Stream:
    header = _header(request, COVERAGE_COLUMNS)
    found = exports_service(state).coverage_export(principal, month, org_id, header, form)
    return _file(found)


def _unvisited(
    request: AnyRequest,
    state: State,
    principal: Principal,
    month: str | None,
    org_id: str | None,
    recipient_key: str | None,
    form: Form,
) -> Stream:
    key = parsed_recipient_key(recipient_key)
    header = _header(request, UNVISITED_COLUMNS)
    found = exports_service(state).unvisited_export(principal, month, org_id, key, header, form)
    return _file(found)


def _records(
    request: AnyRequest,
    state: State,
    principal: Principal,
    month: str | None,
    org_id: str | None,
    recipient_key: str | None,
    form: Form,
) -> Stream:
    key = parsed_recipient_key(recipient_key) if recipient_key is not None else None
    header = _header(request, RECORD_COLUMNS if key is None else NAMED_RECORD_COLUMNS)
    translate = gettext_for(language(request))
    words = {value: translate(word) for value, word in RECORD_WORDS.items()}
    found = exports_service(state).records_export(
        principal, month, org_id, key, header, form, words
    )
    return _file(found)


class ExportsController(Controller):
    """The statistics as CSV and as XLSX; every export is in the audit trail
    (docs/statistics.md)."""

    path = "/v1/exports"
    tags = ["statistics"]
    dependencies = AUTH

    @get("/coverage.csv", sync_to_thread=True, responses={**CSV_FILE, **REFUSALS})
    def coverage_csv(
        self,
        request: AnyRequest,
        state: State,
        principal: P,
        month: Month = None,
        org_id: OrgId = None,
    ) -> Stream:
        """A month's visit coverage per organisation and in total, as CSV: counts only."""
        return _coverage(request, state, principal, month, org_id, "csv")

    @get("/coverage.xlsx", sync_to_thread=True, responses={**XLSX_FILE, **REFUSALS})
    def coverage_xlsx(
        self,
        request: AnyRequest,
        state: State,
        principal: P,
        month: Month = None,
        org_id: OrgId = None,
    ) -> Stream:
        """The same as ``coverage.csv``, as an XLSX workbook."""
        return _coverage(request, state, principal, month, org_id, "xlsx")

    @get("/unvisited.csv", sync_to_thread=True, responses={**SEALED_CSV, **REFUSALS})
    def unvisited_csv(
        self,
        request: AnyRequest,
        state: State,
        principal: P,
        month: Month = None,
        org_id: OrgId = None,
        recipient_key: RecipientKey = None,
    ) -> Stream:
        """The month's priority elders not yet visited (masked): personal data, so the file is
        sealed to ``recipient_key`` and opens only with its private key."""
        return _unvisited(request, state, principal, month, org_id, recipient_key, "csv")

    @get("/unvisited.xlsx", sync_to_thread=True, responses={**SEALED_XLSX, **REFUSALS})
    def unvisited_xlsx(
        self,
        request: AnyRequest,
        state: State,
        principal: P,
        month: Month = None,
        org_id: OrgId = None,
        recipient_key: RecipientKey = None,
    ) -> Stream:
        """The same as ``unvisited.csv``, as an XLSX workbook sealed to ``recipient_key``."""
        return _unvisited(request, state, principal, month, org_id, recipient_key, "xlsx")

    @get("/records.csv", sync_to_thread=True, responses={**CSV_OR_SEALED, **REFUSALS})
    def records_csv(
        self,
        request: AnyRequest,
        state: State,
        principal: P,
        month: Month = None,
        org_id: OrgId = None,
        recipient_key: RecipientKey = None,
    ) -> Stream:
        """A month's service records as CSV, streamed; no one is named. With ``recipient_key``
        the volunteers' and elders' masked names are added and the file is sealed to it."""
        return _records(request, state, principal, month, org_id, recipient_key, "csv")

    @get("/records.xlsx", sync_to_thread=True, responses={**XLSX_OR_SEALED, **REFUSALS})
    def records_xlsx(
        self,
        request: AnyRequest,
        state: State,
        principal: P,
        month: Month = None,
        org_id: OrgId = None,
        recipient_key: RecipientKey = None,
    ) -> Stream:
        """The same as ``records.csv``, as an XLSX workbook: its rows go to a temporary file
        as they are read, and the workbook is sent when the month is written."""
        return _records(request, state, principal, month, org_id, recipient_key, "xlsx")
