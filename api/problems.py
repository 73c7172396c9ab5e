"""RFC 9457 problem details: every error leaves the API as ``application/problem+json``.

``type`` is a stable URN (``urn:timebank:problem:<slug>``) that clients may switch on;
``detail`` says what is wrong in words; ``field`` names the input at fault where there is one.
Internal errors are logged by type only (never with request data) and answered with a
generic 500 problem, so nothing personal or secret leaks through an error.
"""

from __future__ import annotations

import logging
import re
from enum import Enum
from http import HTTPStatus
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

import msgspec
from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotFoundException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.status_codes import HTTP_400_BAD_REQUEST, HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import ExceptionHandlersMap, Scope

from accounts.errors import (
    AccountsError,
    Choices,
    LoginThrottled,
    SearchThrottled,
)
from care.errors import CareError
from ledger.errors import EntryError, ProofRequestError
from web.i18n import (
    LANGUAGE_COOKIE,
    N_,
    Gettext,
    care_detail,
    describe,
    describe_choices,
    describe_decoding,
    describe_error,
    gettext_for,
    ledger_detail,
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
    title = gettext_for(lang)("Invalid parameter")
    if field and message.startswith("Invalid enum value") and (allowed := _choices(request, field)):
        detail = describe_choices(field, allowed, lang)
        return problem(HTTP_400_BAD_REQUEST, "invalid-parameter", title, detail, field)
    if lang != "en":
        _ = gettext_for(lang)
        detail = _(
            "%(field)s is not valid (%(message)s)",
            field=field or "body",
            message=describe_decoding(message, lang),
        )
    return problem(HTTP_400_BAD_REQUEST, "invalid-parameter", title, detail, field)


def _choices(request: Request[Any, Any, Any], field: str) -> Choices | None:
    """The codes the route takes for ``field`` (a body path such as ``reason_code`` or
    ``personal.kind``, or a query parameter) where its type is an enum or a literal."""
    handler = request.route_handler
    parts = [re.sub(r"\[\d+\]$", "", part) for part in field.split(".")]
    kind: Any = None
    data = getattr(handler, "parsed_data_field", None)
    if data is not None and isinstance(data.annotation, type):
        kind = data.annotation
        for part in parts:
            kind = _field_type(kind, part)
    if kind is None and len(parts) == 1:
        parameter = handler.parsed_fn_signature.parameters.get(parts[0])
        kind = parameter.annotation if parameter is not None else None
    for each in _members(kind):
        if isinstance(each, type) and issubclass(each, Enum):
            return Choices(str(member.value) for member in each)
        if get_origin(each) is Literal:
            return Choices(str(value) for value in get_args(each))
    return None


def _field_type(kind: Any, name: str) -> Any:
    """The type of field ``name`` of the struct among ``kind``'s members, else None."""
    for each in _members(kind):
        if isinstance(each, type) and issubclass(each, msgspec.Struct):
            hints = get_type_hints(each, include_extras=True)
            if name in hints:
                return hints[name]
    return None


def _members(kind: Any) -> list[Any]:
    """``kind`` without ``Annotated``, ``| None`` or a list around it: the types it may be."""
    if kind is None:
        return []
    origin = get_origin(kind)
    if origin is Annotated:
        return _members(get_args(kind)[0])
    if origin in (Union, UnionType, list, tuple, set, frozenset):
        return [m for arg in get_args(kind) for m in _members(arg)]
    return [kind]


def _proof_request(
    request: Request[Any, Any, Any], exc: ProofRequestError
) -> Response[dict[str, Any]]:
    """The ledger's refusal of a proof's parameters, in the caller's language."""
    lang = language(request)
    title = gettext_for(lang)("Invalid parameter")
    detail = ledger_detail(exc, lang)
    return problem(HTTP_400_BAD_REQUEST, "invalid-parameter", title, detail, exc.field)


def _entry(request: Request[Any, Any, Any], exc: EntryError) -> Response[dict[str, Any]]:
    """The ledger's refusal of an entry, its case in the caller's language."""
    slug = {
        "InsufficientBalance": "insufficient-balance",
        "IdConflict": "id-conflict",
        "UnbalancedPostings": "unbalanced-postings",
        "PostingRuleViolation": "posting-rule",
    }.get(type(exc).__name__, "invalid-entry")
    lang = language(request)
    title = gettext_for(lang)(N_("Entry refused"))
    return problem(status_of(exc), slug, title, ledger_detail(exc, lang), exc.field)


def _accounts(request: Request[Any, Any, Any], exc: AccountsError) -> Response[dict[str, Any]]:
    status = status_of(exc)
    title, detail = describe_error(exc, language(request), codes=True)
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
    return _framework(request, exc, _)


# The titles of the answers the framework gives itself (no route, wrong method, a body over
# the limit, …), in English here, translated for the caller; any other status keeps its words.
HTTP_TITLES = {
    400: N_("Bad Request"),
    401: N_("Unauthorized"),
    403: N_("Forbidden"),
    405: N_("Method Not Allowed"),
    406: N_("Not Acceptable"),
    409: N_("Conflict"),
    413: N_("Request Entity Too Large"),
    415: N_("Unsupported Media Type"),
    429: N_("Too Many Requests"),
    500: N_("Internal Server Error"),
    503: N_("Service Unavailable"),
}


def _framework(
    request: Request[Any, Any, Any], exc: HTTPException, _: Gettext
) -> Response[dict[str, Any]]:
    """A refusal the framework raised itself, in the caller's language, with its headers
    (``Allow`` on a 405, ``Retry-After`` on a 429)."""
    status = exc.status_code
    english = HTTP_TITLES.get(status, str(exc.detail))
    title = _(english)
    field = None
    headers = dict(exc.headers or {})
    if isinstance(exc, MethodNotAllowedException):
        methods = {m.strip() for m in headers.pop("allow", "").split(",") if m.strip()}
        allowed = headers["Allow"] = ", ".join(sorted(methods))  # the router's order varies
        detail = _(
            N_("%(method)s is not allowed here; this address takes %(allowed)s"),
            method=request.method,
            allowed=allowed,
        )
    elif str(exc.detail) in (english, _phrase(status)):
        detail = title  # the framework said no more than the status
    else:
        detail = _(str(exc.detail))
    if status in (413, 415):
        field = "body" if status == 413 else "Content-Type"
    response = problem(status, f"http-{status}", title, detail, field)
    for name, value in headers.items():
        response.headers[name] = value
    return response


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


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
