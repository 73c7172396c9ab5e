"""Request and response bodies. Requests forbid unknown fields (no mass assignment)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import msgspec
from litestar import Litestar
from litestar.connection import Request
from litestar.exceptions import ValidationException
from litestar.openapi import ResponseSpec
from litestar.openapi.plugins import JsonRenderPlugin, YamlRenderPlugin

from accounts.model import (
    DeviceKey,
    Flag,
    Organisation,
    PartnerKey,
    RelativeLink,
    User,
)
from accounts.service import MemberView
from ledger.entry import encodes_as_utf8


class Input(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of request bodies: unknown fields are an error, not silently dropped."""


class StrictJSONRequest(Request[Any, Any, Any]):
    """Bodies are checked strictly: ``"60"`` and ``60.0`` are not integers, ``0`` not a boolean.

    Litestar converts a body to its route's type with msgspec's lax rules (``strict=False``,
    needed for path and query strings); the body is checked against that type strictly first.
    """

    async def json(self) -> Any:
        value = await super().json()
        if (at := lone_surrogate_at(value)) is not None:
            # JSON may escape half of a UTF-16 pair (``"\ud800"``), and the decoder passes it
            # (and the same as raw bytes) on as a str that no UTF-8 encoder, database or
            # signature will take: refused here, before anything is written.
            message = f"Invalid UTF-8 encoded string (a lone surrogate) - at `{at}`"
            raise ValidationException(
                message, extra=[{"message": message, "key": "data", "source": "body"}]
            )
        data = self.route_handler.parsed_data_field
        if data is not None and not data.is_union and data.is_subclass_of(Input):
            try:
                msgspec.convert(value, type=data.annotation, strict=True)
            except msgspec.ValidationError as exc:
                raise ValidationException(
                    str(exc), extra=[{"message": str(exc), "key": "data", "source": "body"}]
                ) from None
        return value


_SURROGATE_BYTES = re.compile(rb"\xed[\xa0-\xbf]")  # a surrogate, as UTF-8 never writes one
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")  # ``\ud800``…``\udfff`` in JSON


def lone_surrogate_in(body: bytes) -> str | None:
    """The field (``minutes``, ``personal.name``, ``scopes[1]``; ``body`` for the whole) of a
    JSON ``body`` whose string holds a lone UTF-16 surrogate, escaped or as raw bytes: the
    decoder passes such a string on, and no UTF-8 encoder, database or signature takes it.
    None when there is none (nearly always: two scans of the bytes), or when ``body`` is not
    JSON (the decoder refuses it)."""
    raw = _SURROGATE_BYTES.search(body) is not None
    if not raw and _SURROGATE_ESCAPE.search(body) is None:
        return None
    try:
        value = json.loads(body.decode("utf-8", "surrogatepass"))
    except ValueError:
        return "body" if raw else None
    at = lone_surrogate_at(value)
    return None if at is None else (at.removeprefix("$").removeprefix(".") or "body")


def lone_surrogate_at(value: Any, at: str = "$") -> str | None:
    """The JSON path (``$.personal.name``, ``$.scopes[1]``) of the first string in a decoded
    body that holds a lone UTF-16 surrogate, in a key or a value; None when there is none."""
    if isinstance(value, str):
        return None if encodes_as_utf8(value) else at
    if isinstance(value, dict):
        for key, item in value.items():
            if not encodes_as_utf8(key):
                return at
            if (found := lone_surrogate_at(item, f"{at}.{key}")) is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if (found := lone_surrogate_at(item, f"{at}[{index}]")) is not None:
                return found
    return None


def strict_inputs(openapi_schema: dict[str, Any]) -> dict[str, Any]:
    """Documents request bodies as they are decoded: ``additionalProperties: false``
    (Litestar's generator ignores msgspec's ``forbid_unknown_fields``)."""
    strict: set[str] = set()
    pending: list[type[Input]] = [Input]
    while pending:
        cls = pending.pop()
        strict.add(cls.__name__)
        pending.extend(cls.__subclasses__())
    for component in openapi_schema.get("components", {}).get("schemas", {}).values():
        if isinstance(component, dict) and component.get("title") in strict:
            component["additionalProperties"] = False
    return openapi_schema


# A handler's ``opt``: a peer bank's request key signs its requests (``signing_peer``).
PEER_SIGNED = {"peer_signed": True}


def document_operations(
    openapi_schema: dict[str, Any], app: Litestar, idempotent: Callable[[str, str], bool]
) -> dict[str, Any]:
    """Says per operation what the app does: ``security: bearer`` on every operation whose
    handler depends on the caller (``principal``), ``security: peerSignature`` on those a peer
    bank signs (``PEER_SIGNED``), and the ``Idempotency-Key`` header on every POST that
    honours it (``idempotent(method, path)``), required where the operation answers 428
    without it."""
    security: dict[tuple[str, str], str] = {}
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            if (scheme := _security_scheme(handler)) is not None:
                security.update(
                    ((m.lower(), route.path_format), scheme) for m in handler.http_methods
                )
    for path, item in openapi_schema.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            if (method, path) in security:
                operation["security"] = [{security[method, path]: []}]
            documented = any(  # the document is cached: complete it once
                p.get("name") == "Idempotency-Key" or p.get("$ref") == _KEY_REF
                for p in operation.get("parameters", [])
            )
            if idempotent(method, path) and not documented:
                required = "428" in operation["responses"]
                key: dict[str, Any] = (
                    {**_KEY_PARAMETER, "required": True} if required else {"$ref": _KEY_REF}
                )
                operation.setdefault("parameters", []).append(key)
                for status, description in _KEY_ANSWERS.items():
                    operation["responses"].setdefault(status, _problem_response(description))
    return strict_inputs(openapi_schema)


def _security_scheme(handler: Any) -> str | None:
    """How the caller of ``handler`` proves who it is, if it must: a peer bank's signature, or
    a bearer token where the handler depends on the caller (``principal``)."""
    if handler.opt.get("peer_signed"):
        return "peerSignature"
    return "bearer" if "principal" in handler.resolve_dependencies() else None


_KEY_ANSWERS = {  # what the idempotency layer itself answers (docs/idempotency.md)
    "400": "Malformed Idempotency-Key",
    "409": "A request with this Idempotency-Key is still running",
    "422": "This Idempotency-Key was used for a different request",
}


def _problem_response(description: str) -> dict[str, Any]:
    problem = {"schema": {"$ref": "#/components/schemas/Problem"}}
    return {"description": description, "content": {"application/problem+json": problem}}


_KEY_REF = "#/components/parameters/IdempotencyKey"
_KEY_PARAMETER: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "description": "Required: this POST moves minutes, and a retry must not move them twice.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[ -~]+$"},
}


class DocumentedJsonRenderPlugin(JsonRenderPlugin):
    """The JSON document, completed by ``document_operations`` before it is first served."""

    def __init__(self, idempotent: Callable[[str, str], bool]) -> None:
        super().__init__()
        self.idempotent = idempotent

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return super().render(
            request, document_operations(openapi_schema, request.app, self.idempotent)
        )


class DocumentedYamlRenderPlugin(YamlRenderPlugin):
    """The YAML document, completed as the JSON one."""

    def __init__(self, idempotent: Callable[[str, str], bool]) -> None:
        super().__init__()
        self.idempotent = idempotent

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return super().render(
            request, document_operations(openapi_schema, request.app, self.idempotent)
        )


class Problem(msgspec.Struct, kw_only=True):
    """RFC 9457 problem details (``application/problem+json``)."""

    type: str
    title: str
    status: int
    detail: str
    field: str | None = None
    fields: list[str] | None = None  # every field at fault, where there are several


def problems(*statuses: int) -> dict[int, ResponseSpec]:
    descriptions = {
        400: "Malformed input; `field` names it",
        401: "Missing, unknown, expired or revoked credentials",
        403: "Authenticated but not allowed",
        404: "No such object in the caller's scope",
        409: "Conflicts with the object's state",
        422: "Well-formed but refused by a rule",
        428: "Idempotency-Key header missing (required: this POST moves minutes)",
        429: "Too many attempts",
        503: "A peer bank could not be reached; retry the same request (same Idempotency-Key)",
    }
    return {
        s: ResponseSpec(Problem, description=descriptions[s], media_type="application/problem+json")
        for s in statuses
    }


# ------------------------------------------------------------------ auth


class LoginIn(Input):
    username: str
    password: str
    totp: str | None = None


class LoginOut(msgspec.Struct):
    token: str
    expires_at: datetime
    user_id: str
    roles: list[str]
    second_factor: bool
    password_change_due: bool = False  # a one-time password: change it before anything else


class PasswordChangeIn(Input):
    old_password: str
    new_password: str


class TotpStartOut(msgspec.Struct):
    secret: str
    otpauth_uri: str


class TotpConfirmIn(Input):
    code: str


class TotpStartIn(Input):
    enrolment_code: str | None = None


class EnrolmentCodeOut(msgspec.Struct):
    enrolment_code: str
    expires_at: datetime


class GrantOut(msgspec.Struct):
    role: str
    bank_id: str
    org_id: str | None
    member_id: str | None


class UserOut(msgspec.Struct):
    id: str
    bank_id: str
    username: str
    created_at: datetime
    second_factor_enrolled: bool


def user_out(user: User) -> UserOut:
    return UserOut(user.id, user.bank_id, user.username, user.created_at, user.totp_enabled)


# ------------------------------------------------------------------ banks and organisations


class BankOut(msgspec.Struct):
    id: str
    name: str
    created_at: datetime


class OrgIn(Input):
    name: str
    kind: str
    phone: str | None = None


class OrgOut(msgspec.Struct):
    id: str
    bank_id: str
    name: str
    kind: str
    created_at: datetime
    phone: str | None = None


def org_out(org: Organisation) -> OrgOut:
    return OrgOut(org.id, org.bank_id, org.name, str(org.kind), org.created_at, org.phone)


class StaffIn(Input):
    username: str
    role: str
    password: str | None = None


class StaffOut(msgspec.Struct):
    user: UserOut
    role: str
    one_time_password: str | None = None


# ------------------------------------------------------------------ members


class PersonalIn(Input):
    name: str
    phone: str | None = None
    id_number: str | None = None
    address: str | None = None
    birth_date: date | None = None
    health_notes: str | None = None


class RegisterIn(Input):
    """A volunteer signs up on a phone."""

    bank_id: str
    org_id: str
    username: str
    password: str
    personal: PersonalIn


class MemberIn(Input):
    """Staff (or a family member, for an elder) register someone."""

    org_id: str
    personal: PersonalIn
    is_volunteer: bool = False
    is_elder: bool = False
    username: str | None = None
    password: str | None = None


class DecisionIn(Input):
    reason: str | None = None


class FlagIn(Input):
    flag: str
    note: str | None = None


class FlagOut(msgspec.Struct):
    id: str
    flag: str
    note: str | None
    set_by: str
    set_at: datetime
    cleared_by: str | None
    cleared_at: datetime | None


def flag_out(flag: Flag) -> FlagOut:
    return FlagOut(
        flag.id,
        str(flag.flag),
        flag.note,
        flag.set_by,
        flag.set_at,
        flag.cleared_by,
        flag.cleared_at,
    )


class MemberOut(msgspec.Struct):
    id: str
    bank_id: str
    ledger_account: str
    is_volunteer: bool
    is_elder: bool
    status: str
    org_id: str | None
    user_id: str | None
    registered_by: str | None
    assisted: bool
    approved_by: str | None
    approved_at: datetime | None
    created_at: datetime
    personal: dict[str, Any]
    personal_masked: bool
    flags: list[FlagOut]


def member_out(view: MemberView) -> MemberOut:
    m = view.member
    return MemberOut(
        id=m.id,
        bank_id=m.bank_id,
        ledger_account=m.ledger_account,
        is_volunteer=m.is_volunteer,
        is_elder=m.is_elder,
        status=str(m.status),
        org_id=m.org_id,
        user_id=m.user_id,
        registered_by=m.registered_by,
        assisted=m.assisted,
        approved_by=m.approved_by,
        approved_at=m.approved_at,
        created_at=m.created_at,
        personal=view.personal,
        personal_masked=not view.revealed,
        flags=[flag_out(f) for f in view.flags],
    )


class RegistrationOut(msgspec.Struct):
    status: str  # "received", whether the username was free or taken
    detail: str


class NewMemberOut(msgspec.Struct):
    member: MemberOut
    user: UserOut | None


class MeOut(msgspec.Struct):
    user: UserOut | None
    roles: list[GrantOut]
    member: MemberOut | None
    second_factor: bool
    partner_key_id: str | None = None
    partner_scopes: list[str] | None = None
    password_change_due: bool = False


class RelativeIn(Input):
    relative_id: str
    relation: str


class RelativeOut(msgspec.Struct):
    id: str
    member_id: str
    relative_id: str
    relation: str
    status: str
    declared_by: str
    declared_at: datetime
    decided_by: str | None
    decided_at: datetime | None


def relative_out(link: RelativeLink) -> RelativeOut:
    return RelativeOut(
        link.id,
        link.member_id,
        link.relative_id,
        str(link.relation),
        str(link.status),
        link.declared_by,
        link.declared_at,
        link.decided_by,
        link.decided_at,
    )


class ProxyIn(Input):
    username: str


class ProxyOut(msgspec.Struct):
    username: str
    member_id: str | None  # the family member's own member record, if any
    granted_by: str | None
    granted_at: datetime


class AccessRecordOut(msgspec.Struct):
    at: datetime
    actor: str
    role: str
    reason: str
    fields: list[str]


# ------------------------------------------------------------------ device and partner keys


class DeviceIn(Input):
    public_key: str
    name: str


class DeviceOut(msgspec.Struct):
    id: str
    name: str
    public_key: str
    created_at: datetime
    revoked_at: datetime | None


def device_out(key: DeviceKey) -> DeviceOut:
    return DeviceOut(
        key.id,
        key.name,
        base64.b64encode(key.public_key).decode(),
        key.created_at,
        key.revoked_at,
    )


class PartnerKeyIn(Input):
    name: str
    scopes: list[str]


class PartnerKeyOut(msgspec.Struct):
    id: str
    name: str
    scopes: list[str]
    created_by: str
    created_at: datetime
    revoked_at: datetime | None
    key: str | None = None


def partner_out(key: PartnerKey, secret: str | None = None) -> PartnerKeyOut:
    return PartnerKeyOut(
        key.id,
        key.name,
        sorted(str(s) for s in key.scopes),
        key.created_by,
        key.created_at,
        key.revoked_at,
        secret,
    )
