"""RFC 9457 problem details: every error leaves the API as ``application/problem+json``.

``type`` is a stable URN (``urn:timebank:problem:<slug>``) that clients may switch on;
``detail`` says what is wrong in words; ``field`` names the input at fault where there is one.
Internal errors are logged by type only (never with request data) and answered with a
generic 500 problem, so nothing personal or secret leaks through an error.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    NotFoundException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.status_codes import HTTP_400_BAD_REQUEST, HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import ExceptionHandlersMap, Scope

from accounts.errors import (
    AccountsError,
    LoginThrottled,
    SearchThrottled,
)
from care.errors import CareError
from ledger.errors import EntryError, ProofRequestError
from web.i18n import (
    LANGUAGE_COOKIE,
    N_,
    care_detail,
    describe,
    describe_decoding,
    describe_error,
    gettext_for,
    negotiate,
)
from web.pages import error_page
from web.statuses import status_of

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger(__name__)


def problem(
    status: int,
    slug: str,
    title: str,
    detail: str,
    field: str | None = None,
    fields: tuple[str, ...] = (),
) -> Response[dict[str, Any]]:
    """``fields``, where a refusal is about more than ``field`` (every field of a form at fault,
    or two that contradict each other), lists them all."""
    body: dict[str, Any] = {
        "type": f"urn:timebank:problem:{slug}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if field is not None:
        body["field"] = field
    if len(fields) > 1:
        body["fields"] = list(fields)
    return Response(body, status_code=status, media_type=PROBLEM_JSON)


def language(request: Request[Any, Any, Any]) -> str:
    """The caller's language: the web app's toggle, then Accept-Language, else English."""
    return negotiate(
        request.cookies.get(LANGUAGE_COOKIE), request.headers.get("accept-language"), "en"
    )


# The refusals the middlewares send before a route runs (api/idempotency.py, api/audit_log.py):
# English here, translated by ``refusal_words``.
TOO_LARGE = (N_("Request Entity Too Large"), N_("the body is over %(limit)s bytes"))
NESTED_TOO_DEEP = (N_("Invalid parameter"), N_("body: JSON nested deeper than %(limit)s levels"))
NOT_UNICODE = (
    N_("Invalid parameter"),
    N_("%(field)s: the text is not valid Unicode (a lone surrogate)"),
)
KEY_MALFORMED_TITLE = N_("Invalid parameter")
KEY_IN_PROGRESS = (
    N_("Request in progress"),
    N_("a request with this Idempotency-Key is still running; retry shortly"),
)
KEY_REUSED = (
    N_("Idempotency key reused"),
    N_("this Idempotency-Key was used for a different request; use a new key"),
)


def refusal_words(scope: Scope, title: str, detail: str, **values: object) -> tuple[str, str]:
    """``title`` and ``detail`` (filled with ``values``) in the language of ``scope``'s
    caller, as ``language`` finds it."""
    _ = gettext_for(language(Request(scope)))
    return _(title), _(detail, **values)


class IdempotencyKeyRequired(Exception):
    """A POST that moves minutes by a key the client chooses (gifts, donations, grants) came
    without ``Idempotency-Key``: a retry of it could post twice."""


def _key_required(request: Request[Any, Any, Any], _: IdempotencyKeyRequired) -> Response[Any]:
    english = "send an Idempotency-Key header: this request moves minutes, and the key keeps a "
    english += "retry from posting twice"
    chinese = "此操作会转移时间，请附带 Idempotency-Key 请求头，以免重试时重复记账"
    zh = language(request) == "zh-CN"
    response = problem(
        428,
        "idempotency-key-required",
        "Idempotency key required",
        chinese if zh else english,
        "Idempotency-Key",
    )
    assert isinstance(response.content, dict)
    response.content["detail_en"], response.content["detail_zh"] = english, chinese
    return response


def _missing_parameter(detail: str) -> str | None:
    match = re.search(r"Missing required \w+ parameter '([^']+)'", detail)
    return match.group(1) if match else None


def _body_field(message: str) -> str | None:
    """The JSON path msgspec names in a body error: ``$.personal.name`` → ``personal.name``."""
    at = re.search(r"at `\$\.?([^`]*)`", message)
    path = at.group(1) if at else ""
    named = re.search(r"(?:unknown|required) field `([^`]+)`", message)
    if named:
        return f"{path}.{named.group(1)}" if path else named.group(1)
    return path or None


def _validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    if _wants_a_page(request):  # an address edited by hand (/volunteer/hours/-1): a page
        return error_page(request, NotFoundException())
    items = exc.extra if isinstance(exc.extra, list) else []
    first = items[0] if items and isinstance(items[0], dict) else {}
    message = str(first.get("message") or exc.detail)
    field = first.get("key") or _missing_parameter(str(exc.detail))
    if field in ("data", None) and first.get("source") in ("body", None):
        field = _body_field(message) or field
    elif field and (named := re.search(r"(?:unknown|required) field `([^`]+)`", message)):
        field = f"{field}.{named.group(1)}"
    if "JSON is malformed" in message or "Expected JSON" in message:
        field = field or "body"
    detail = f"{field}: {message}" if field else str(message)
    lang = language(request)
    if lang != "en":
        _ = gettext_for(lang)
        detail = _(
            "%(field)s is not valid (%(message)s)",
            field=field or "body",
            message=describe_decoding(message, lang),
        )
    title = gettext_for(lang)("Invalid parameter")
    return problem(HTTP_400_BAD_REQUEST, "invalid-parameter", title, detail, field)


def _proof_request(
    request: Request[Any, Any, Any], exc: ProofRequestError
) -> Response[dict[str, Any]]:
    """The ledger's words (English) under a title in the caller's language."""
    title = gettext_for(language(request))("Invalid parameter")
    return problem(HTTP_400_BAD_REQUEST, "invalid-parameter", title, str(exc), exc.field)


def _entry(request: Request[Any, Any, Any], exc: EntryError) -> Response[dict[str, Any]]:
    """The ledger's words (English) under a title in the caller's language."""
    slug = {
        "InsufficientBalance": "insufficient-balance",
        "IdConflict": "id-conflict",
        "UnbalancedPostings": "unbalanced-postings",
        "PostingRuleViolation": "posting-rule",
    }.get(type(exc).__name__, "invalid-entry")
    title = gettext_for(language(request))(N_("Entry refused"))
    return problem(status_of(exc), slug, title, str(exc), exc.field)


def _accounts(request: Request[Any, Any, Any], exc: AccountsError) -> Response[dict[str, Any]]:
    status = status_of(exc)
    title, detail = describe_error(exc, language(request))
    response = problem(status, exc.slug, title, detail, exc.field, exc.fields)
    if isinstance(exc, (LoginThrottled, SearchThrottled)):
        response.headers["Retry-After"] = str(exc.retry_after)
    elif status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="timebank"'
    return response


def _care(request: Request[Any, Any, Any], exc: CareError) -> Response[dict[str, Any]]:
    """Domain refusals carry both languages; ``detail`` follows the caller's language."""
    title = exc.slug.replace("-", " ").capitalize()
    detail = care_detail(exc, language(request))
    response = problem(status_of(exc), exc.slug, title, detail, exc.field)
    assert isinstance(response.content, dict)
    response.content["detail_en"] = str(exc)
    response.content["detail_zh"] = care_detail(exc, "zh-CN")
    return response


def _wants_a_page(request: Request[Any, Any, Any]) -> bool:
    """A browser outside the API: it is answered with a page, not a problem."""
    path = request.url.path
    return not path.startswith("/v1/") and "text/html" in request.headers.get("accept", "")


def _http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if _wants_a_page(request):
        return error_page(request, exc)
    _ = gettext_for(language(request))
    if isinstance(exc, PermissionDeniedException) and "CSRF" in str(exc.detail):
        # A page's own call to /v1 whose form token went stale: in the page's language.
        title, detail = describe("csrf", "the form has expired", language(request))
        return problem(exc.status_code, "http-403", title, detail)
    if exc.status_code == HTTP_400_BAD_REQUEST:  # e.g. a body that is not JSON at all
        lang = language(request)
        detail = f"body: {exc.detail}"
        if lang != "en":
            message = describe_decoding(str(exc.detail), lang)
            detail = _("%(field)s is not valid (%(message)s)", field="body", message=message)
        return problem(
            HTTP_400_BAD_REQUEST, "invalid-parameter", _("Invalid parameter"), detail, "body"
        )
    if isinstance(exc, NotFoundException):
        return problem(exc.status_code, "not-found", _("Not Found"), _(str(exc.detail)))
    return problem(exc.status_code, f"http-{exc.status_code}", str(exc.detail), str(exc.detail))


def _too_deep(request: Request[Any, Any, Any], _: RecursionError) -> Response[dict[str, Any]]:
    """A backstop for bodies that reach a decoder unchecked: nesting is bad input, not a fault."""
    translate = gettext_for(language(request))
    title, detail = translate("Invalid parameter"), translate(N_("body: nested too deep"))
    return problem(HTTP_400_BAD_REQUEST, "invalid-parameter", title, detail, "body")


def _internal(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.error("internal error on %s %s: %s", request.method, request.url.path, type(exc).__name__)
    _ = gettext_for(language(request))
    return problem(
        HTTP_500_INTERNAL_SERVER_ERROR,
        "internal",
        _("Internal error"),
        _("Server error: check whether the change was saved before trying again."),
    )


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    ValidationException: _validation,
    ProofRequestError: _proof_request,
    EntryError: _entry,
    AccountsError: _accounts,
    CareError: _care,
    HTTPException: _http,
    IdempotencyKeyRequired: _key_required,
    RecursionError: _too_deep,
    Exception: _internal,
}
