"""The workflow over HTTP: catalogue and policy, requests, service records, transfers,
balances, history and receipts. Every rule is in ``care.service``."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, MediaType, Request, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import JSONBody, Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from accounts.model import Principal
from api.accounts_routes import AUTH, Id
from api.problems import IdempotencyKeyRequired
from api.schemas import Input, problems
from care.base import record_digest
from care.model import (
    REVERSAL_STATUSES,
    GrantReason,
    Policy,
    RecordStatus,
    RequestStatus,
    ReversalReason,
    ServiceRecord,
    ServiceRequest,
    ServiceType,
)
from care.service import CareService
from ledger import AppendResult
from ledger.entry import record_signing_message
from web.session import ON_BEHALF_STATE_KEY

Minutes = Annotated[int, msgspec.Meta(ge=1, le=10**9)]


def care(state: State) -> CareService:
    service: CareService = state.care
    return service


def entry_key(request: Request[Any, Any, Any]) -> str:
    """The client's Idempotency-Key, folded into a ledger-safe id; 428 without one."""
    key = request.headers.get("idempotency-key")
    if not key:
        raise IdempotencyKeyRequired
    return hashlib.sha256(key.encode()).hexdigest()[:24]


# ------------------------------------------------------------------ bodies


class ServiceTypeIn(Input):
    code: str
    name_zh: str
    name_en: str
    category: str
    weight_permille: int
    active: bool = True


class ServiceTypeOut(msgspec.Struct):
    id: str
    code: str
    name_zh: str
    name_en: str
    category: str
    weight_permille: int
    active: bool
    version: int
    ledger_seq: int | None


def type_out(t: ServiceType) -> ServiceTypeOut:
    return ServiceTypeOut(
        t.id,
        t.code,
        t.name_zh,
        t.name_en,
        str(t.category),
        t.weight_permille,
        t.active,
        t.version,
        t.ledger_seq,
    )


class PolicyIn(Input):
    redemption_age: int | None = None
    stored_cap_minutes: int | None = None
    daily_cap_minutes: int | None = None
    gifts_allowed: bool | None = None
    timezone: str | None = None
    record_late_days: int | None = None
    points_unit: str | None = None
    points_per_hour: int | None = None
    star_levels: bool | None = None
    star_hours: str | None = None


class PolicyOut(msgspec.Struct):
    version: int
    redemption_age: int
    stored_cap_minutes: int
    daily_cap_minutes: int
    gifts_allowed: bool
    timezone: str
    record_late_days: int
    points_unit: str
    points_per_hour: int
    star_levels: bool
    star_hours: str
    ledger_seq: int | None


def policy_out(p: Policy) -> PolicyOut:
    return PolicyOut(
        p.version,
        p.redemption_age,
        p.stored_cap_minutes,
        p.daily_cap_minutes,
        p.gifts_allowed,
        p.timezone,
        p.record_late_days,
        p.points_unit,
        p.points_per_hour,
        p.star_levels,
        p.star_hours,
        p.ledger_seq,
    )


class RequestIn(Input):
    elder_id: str
    service_code: str
    window_start: datetime
    window_end: datetime
    minutes: Minutes
    notes: str | None = None
    redeem: bool = False


class RequestOut(msgspec.Struct):
    id: str
    elder_id: str
    org_id: str
    service_type_id: str
    window_start: datetime
    window_end: datetime
    minutes: int
    notes: str | None
    redeem: bool
    status: str
    requested_by: str
    acting_for: bool
    volunteer_id: str | None
    assigned_by: str | None
    hold_minutes: int
    cancelled_by: str | None
    cancel_reason: str | None
    created_at: datetime


def request_out(r: ServiceRequest) -> RequestOut:
    return RequestOut(
        r.id,
        r.elder_id,
        r.org_id,
        r.service_type_id,
        r.window_start,
        r.window_end,
        r.minutes,
        r.notes,
        r.redeem,
        str(r.status),
        r.requested_by,
        r.acting_for,
        r.volunteer_id,
        r.assigned_by,
        r.hold_minutes,
        r.cancelled_by,
        r.cancel_reason,
        r.created_at,
    )


class AssignIn(Input):
    volunteer_id: str


class ReasonIn(Input):
    reason: str


class RecordIn(Input):
    elder_id: str
    service_code: str
    check_in: datetime
    check_out: datetime
    minutes: Minutes | None = None
    request_id: str | None = None
    device_key_id: str | None = None
    signature: str | None = None
    confirmation_code: str | None = None


class DraftIn(Input):
    elder_id: str
    service_code: str
    check_in: datetime
    check_out: datetime
    minutes: Minutes | None = None
    request_id: str | None = None


class DraftOut(msgspec.Struct):
    fields: dict[str, Any]
    digest: str  # hex SHA-256 of the fields' RFC 8785 bytes: the record's digest
    to_sign: str  # base64 of the bytes a phone signs (``ledger.entry.record_signing_message``)


class ConfirmIn(Input):
    confirmation_code: str | None = None


class RecordOut(msgspec.Struct):
    id: str
    request_id: str | None
    volunteer_id: str
    elder_id: str
    org_id: str
    service_type_id: str
    check_in: datetime
    check_out: datetime
    minutes: int
    digest: str
    signed_by_device: str | None
    status: str
    confirmed_by: str | None
    confirmed_as: str | None
    confirmed_at: datetime | None
    verified_by: str | None
    verified_at: datetime | None
    rejected_reason: str | None
    deposit_seq: int | None
    deposit_minutes: int | None
    created_at: datetime


def record_out(r: ServiceRecord) -> RecordOut:
    return RecordOut(
        r.id,
        r.request_id,
        r.volunteer_id,
        r.elder_id,
        r.org_id,
        r.service_type_id,
        r.check_in,
        r.check_out,
        r.minutes,
        r.digest,
        r.device_key_id,
        str(r.status),
        r.confirmed_by,
        str(r.confirmed_as) if r.confirmed_as else None,
        r.confirmed_at,
        r.verified_by,
        r.verified_at,
        r.rejected_reason,
        r.deposit_seq,
        r.deposit_minutes,
        r.created_at,
    )


class CodeOut(msgspec.Struct):
    code: str
    expires_at: datetime


class GiftIn(Input):
    from_member_id: str
    to_member_id: str
    minutes: Minutes


class DonationIn(Input):
    from_member_id: str
    minutes: Minutes


class GrantIn(Input):
    elder_id: str
    minutes: Minutes
    reason: str  # free text, kept off the public log (sealed)
    reason_code: GrantReason = GrantReason.OTHER  # what the log says


class EntryOut(msgspec.Struct):
    seq: int
    id: str
    time: str
    tree_size: int
    replayed: bool


def entry_out(r: AppendResult) -> EntryOut:
    return EntryOut(r.seq, r.id, r.time, r.tree_size, r.replayed)


class ReversalIn(Input):
    seq: Annotated[int, msgspec.Meta(ge=0, le=2**53 - 1)]
    reason: str  # free text, for the bank's administrators only
    reason_code: ReversalReason = ReversalReason.OTHER  # what the reversal entry says


class ReversalOut(msgspec.Struct):
    id: str
    entry_seq: int
    reason: str
    reason_code: str
    status: str
    requested_by: str
    requested_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    reversal_seq: int | None


def reversal_out(row: dict[str, Any]) -> ReversalOut:
    return ReversalOut(**{f: row[f] for f in ReversalOut.__struct_fields__})


class BalanceOut(msgspec.Struct):
    member_id: str
    available_minutes: int
    reserved_minutes: int


class HistoryOut(msgspec.Struct):
    seq: int
    time: str
    kind: str
    minutes: int
    counterpart: str | None
    service: str | None
    record: str | None
    receipt: str


P = NamedDependency[Principal]
ERR = problems(400, 401, 403, 404, 409, 422, 429)
KEYED = problems(400, 401, 403, 404, 409, 422, 428)  # minutes moved by the client's key


class CatalogueController(Controller):
    path = "/v1"
    tags = ["catalogue and policy"]
    dependencies = AUTH

    @get("/catalogue", sync_to_thread=True, responses=problems(400, 401, 403))
    def catalogue(
        self, state: State, principal: P, all: Annotated[bool, Parameter()] = False
    ) -> list[ServiceTypeOut]:
        """The bank's service types with their weights (per-mille)."""
        return [type_out(t) for t in care(state).catalogue(principal, include_inactive=all)]

    @post("/catalogue", status_code=HTTP_200_OK, sync_to_thread=True, responses=ERR)
    def upsert(self, state: State, principal: P, data: JSONBody[ServiceTypeIn]) -> ServiceTypeOut:
        """Bank admins add or change a service type; written to the log as a policy entry."""
        return type_out(
            care(state).upsert_service_type(
                principal,
                data.code,
                data.name_zh,
                data.name_en,
                data.category,
                data.weight_permille,
                data.active,
            )
        )

    @get("/policy", sync_to_thread=True, responses=problems(401))
    def policy(self, state: State, principal: P) -> PolicyOut:
        return policy_out(care(state).policy(principal.bank_id))

    @post("/policy", status_code=HTTP_200_OK, sync_to_thread=True, responses=ERR)
    def set_policy(self, state: State, principal: P, data: JSONBody[PolicyIn]) -> PolicyOut:
        """Change policy values; applies to records verified after the change."""
        changes = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not None}
        return policy_out(care(state).set_policy(principal, changes))


class RequestController(Controller):
    path = "/v1/requests"
    tags = ["requests"]
    dependencies = AUTH

    @post("/", status_code=HTTP_201_CREATED, sync_to_thread=True, responses=ERR)
    def create(self, state: State, principal: P, data: JSONBody[RequestIn]) -> RequestOut:
        """An elder, their family proxy or staff acting for them asks for a service;
        ``redeem`` pays it with the elder's stored minutes."""
        return request_out(
            care(state).create_request(
                principal,
                data.elder_id,
                data.service_code,
                data.window_start,
                data.window_end,
                data.minutes,
                data.notes,
                data.redeem,
            )
        )

    @get("/", sync_to_thread=True, responses=problems(400, 401, 403))
    def list(
        self,
        state: State,
        principal: P,
        status: Annotated[
            str | None,
            Parameter(max_length=16, schema_extra={"enum": [str(v) for v in RequestStatus]}),
        ] = None,
    ) -> list[RequestOut]:
        return [request_out(r) for r in care(state).list_requests(principal, status)]

    @get("/{request_id:str}", sync_to_thread=True, responses=problems(400, 401, 404))
    def one(self, state: State, principal: P, request_id: Id) -> RequestOut:
        return request_out(care(state).get_request(principal, request_id))

    @post("/{request_id:str}/assign", status_code=HTTP_200_OK, sync_to_thread=True, responses=ERR)
    def assign(
        self, state: State, principal: P, request_id: Id, data: JSONBody[AssignIn]
    ) -> RequestOut:
        """Staff dispatch to a volunteer; a redemption reserves the elder's minutes now."""
        return request_out(care(state).assign(principal, request_id, data.volunteer_id))

    @post("/{request_id:str}/claim", status_code=HTTP_200_OK, sync_to_thread=True, responses=ERR)
    def claim(self, state: State, principal: P, request_id: Id) -> RequestOut:
        return request_out(care(state).claim(principal, request_id))

    @post("/{request_id:str}/withdraw", status_code=HTTP_200_OK, sync_to_thread=True, responses=ERR)
    def withdraw(self, state: State, principal: P, request_id: Id) -> RequestOut:
        """The assigned volunteer (or staff) gives the request back: open again, minutes
        held for a redemption stay held."""
        return request_out(care(state).withdraw(principal, request_id))

    @post("/{request_id:str}/cancel", status_code=HTTP_200_OK, sync_to_thread=True, responses=ERR)
    def cancel(
        self, state: State, principal: P, request_id: Id, data: JSONBody[ReasonIn]
    ) -> RequestOut:
        """The elder's side or staff cancel with a reason; held minutes are released. Refused
        while a service record of the request stands (staff reject it first)."""
        return request_out(care(state).cancel(principal, request_id, data.reason))


class RecordController(Controller):
    path = "/v1/records"
    tags = ["service records"]
    dependencies = AUTH

    @post("/", status_code=HTTP_201_CREATED, sync_to_thread=True, responses=ERR)
    def create(self, state: State, principal: P, data: JSONBody[RecordIn]) -> RecordOut:
        """A volunteer records a service. From a phone, ``signature`` is the device key's
        Ed25519 signature (base64) over the record's signing message (see docs/workflow.md)."""
        return record_out(
            care(state).log_record(
                principal,
                elder_id=data.elder_id,
                service_code=data.service_code,
                check_in=data.check_in,
                check_out=data.check_out,
                minutes=data.minutes,
                request_id=data.request_id,
                device_key_id=data.device_key_id,
                signature=data.signature,
                confirmation_code=data.confirmation_code,
            )
        )

    @post("/draft", status_code=HTTP_200_OK, sync_to_thread=True, responses=ERR)
    def draft(self, state: State, principal: P, data: JSONBody[DraftIn]) -> DraftOut:
        """Check a record before logging it and get the bytes the phone signs with its device
        key (the record's digest, prefixed); nothing is stored. The phone can read ``fields``
        and recompute the digest to see what it signs."""
        draft = care(state).draft_for_signing(
            principal,
            elder_id=data.elder_id,
            service_code=data.service_code,
            check_in=data.check_in,
            check_out=data.check_out,
            minutes=data.minutes,
            request_id=data.request_id,
        )
        digest = record_digest(draft.fields)
        message = record_signing_message(digest)
        return DraftOut(draft.fields, digest, base64.b64encode(message).decode())

    @get("/", sync_to_thread=True, responses=problems(400, 401, 403))
    def list(
        self,
        state: State,
        principal: P,
        status: Annotated[
            str | None,
            Parameter(max_length=16, schema_extra={"enum": [str(v) for v in RecordStatus]}),
        ] = None,
    ) -> list[RecordOut]:
        return [record_out(r) for r in care(state).list_records(principal, status)]

    @get("/{record_id:str}", sync_to_thread=True, responses=problems(400, 401, 404))
    def one(self, state: State, principal: P, record_id: Id) -> RecordOut:
        return record_out(care(state).get_record(principal, record_id))

    @post("/{record_id:str}/confirm", status_code=HTTP_200_OK, sync_to_thread=True, responses=ERR)
    def confirm(
        self,
        request: Request[Any, Any, State],
        principal: P,
        record_id: Id,
        data: JSONBody[ConfirmIn],
    ) -> RecordOut:
        """The served side confirms (elder, family, staff for the elder, or a code)."""
        record = care(request.app.state).confirm(principal, record_id, data.confirmation_code)
        if record.elder_id != principal.member_id:  # a proxy or staff acted for the elder
            request.scope["state"][ON_BEHALF_STATE_KEY] = record.elder_id
        return record_out(record)

    @post("/{record_id:str}/verify", status_code=HTTP_200_OK, sync_to_thread=True, responses=ERR)
    def verify(self, state: State, principal: P, record_id: Id) -> RecordOut:
        """Organisation staff (logged in with TOTP) verify: the deposit is appended."""
        return record_out(care(state).verify(principal, record_id))

    @post("/{record_id:str}/reject", status_code=HTTP_200_OK, sync_to_thread=True, responses=ERR)
    def reject(
        self, state: State, principal: P, record_id: Id, data: JSONBody[ReasonIn]
    ) -> RecordOut:
        return record_out(care(state).reject(principal, record_id, data.reason))


class TransferController(Controller):
    path = "/v1"
    tags = ["transfers"]
    dependencies = AUTH

    @post(
        "/members/{member_id:str}/confirmation-codes",
        status_code=HTTP_201_CREATED,
        sync_to_thread=True,
        responses=ERR,
    )
    def code(self, state: State, principal: P, member_id: Id) -> CodeOut:
        """A one-time code (30 minutes) the elder's side gives the volunteer to confirm."""
        code, expires = care(state).create_confirmation_code(principal, member_id)
        return CodeOut(code, expires)

    @post("/gifts", status_code=HTTP_201_CREATED, sync_to_thread=True, responses=KEYED)
    def gift(
        self, request: Request[Any, Any, State], principal: P, data: JSONBody[GiftIn]
    ) -> EntryOut:
        """Gift minutes to a confirmed direct relative (转赠). Requires Idempotency-Key."""
        return entry_out(
            care(request.app.state).gift(
                principal, data.from_member_id, data.to_member_id, data.minutes, entry_key(request)
            )
        )

    @post("/donations", status_code=HTTP_201_CREATED, sync_to_thread=True, responses=KEYED)
    def donate(
        self, request: Request[Any, Any, State], principal: P, data: JSONBody[DonationIn]
    ) -> EntryOut:
        """Donate minutes to the bank's pool (公益池). Requires Idempotency-Key."""
        return entry_out(
            care(request.app.state).donate(
                principal, data.from_member_id, data.minutes, entry_key(request)
            )
        )

    @post("/grants", status_code=HTTP_201_CREATED, sync_to_thread=True, responses=KEYED)
    def grant(
        self, request: Request[Any, Any, State], principal: P, data: JSONBody[GrantIn]
    ) -> EntryOut:
        """Bank admins grant pool minutes to a priority elder, with a reason. Requires
        Idempotency-Key."""
        return entry_out(
            care(request.app.state).grant(
                principal,
                data.elder_id,
                data.minutes,
                data.reason,
                entry_key(request),
                reason_code=data.reason_code,
            )
        )

    @post("/reversals", status_code=HTTP_201_CREATED, sync_to_thread=True, responses=ERR)
    def reversal(self, state: State, principal: P, data: JSONBody[ReversalIn]) -> ReversalOut:
        """A bank admin asks to reverse an entry; a second admin must approve."""
        return reversal_out(
            care(state).request_reversal(principal, data.seq, data.reason, data.reason_code)
        )

    @get("/reversals", sync_to_thread=True, responses=problems(400, 401, 403))
    def reversals(
        self,
        state: State,
        principal: P,
        status: Annotated[
            str | None, Parameter(max_length=16, schema_extra={"enum": list(REVERSAL_STATUSES)})
        ] = None,
    ) -> list[ReversalOut]:
        """Reversal requests of the bank (``status=pending`` for those awaiting approval)."""
        return [reversal_out(r) for r in care(state).list_reversals(principal, status)]

    @post(
        "/reversals/{reversal_id:str}/reject",
        status_code=HTTP_200_OK,
        sync_to_thread=True,
        responses=ERR,
    )
    def reject_reversal(self, state: State, principal: P, reversal_id: Id) -> ReversalOut:
        """Turn down, or withdraw, a pending reversal request."""
        return reversal_out(care(state).reject_reversal(principal, reversal_id))

    @post(
        "/reversals/{reversal_id:str}/approve",
        status_code=HTTP_200_OK,
        sync_to_thread=True,
        responses=ERR,
    )
    def approve(self, state: State, principal: P, reversal_id: Id) -> ReversalOut:
        return reversal_out(care(state).approve_reversal(principal, reversal_id))


class PoolOut(msgspec.Struct):
    bank: str
    minutes: int


class PoolController(Controller):
    path = "/v1/pool"
    tags = ["balances"]
    dependencies = AUTH

    @get("/", sync_to_thread=True, responses=problems(401, 403))
    def pool(self, state: State, principal: P) -> PoolOut:
        """The bank's pool (公益池) balance, for bank admins and auditors."""
        return PoolOut(principal.bank_id, care(state).pool_balance(principal))


class BalanceController(Controller):
    path = "/v1/members/{member_id:str}"
    tags = ["balances"]
    dependencies = AUTH

    @get("/balance", sync_to_thread=True, responses=problems(400, 401, 403, 404))
    def balance(self, state: State, principal: P, member_id: Id) -> BalanceOut:
        """Available and reserved minutes (partner keys with read_points may read this)."""
        b = care(state).balance(principal, member_id)
        return BalanceOut(b.member_id, b.available, b.reserved)

    @get("/history", sync_to_thread=True, responses=problems(400, 401, 403, 404))
    def history(
        self,
        state: State,
        principal: P,
        member_id: Id,
        limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
        before: Annotated[int | None, Parameter(ge=0, le=2**53 - 1)] = None,
    ) -> list[HistoryOut]:
        """Entries that moved this member's minutes, newest first, each with its receipt URL."""
        items = care(state).history(principal, member_id, limit, before)
        return [
            HistoryOut(
                i.seq,
                i.time,
                i.kind,
                i.minutes,
                i.counterpart,
                i.service,
                i.record,
                f"/v1/members/{member_id}/receipts/{i.seq}",
            )
            for i in items
        ]

    @get(
        "/receipts/{seq:int}",
        media_type=MediaType.TEXT,
        sync_to_thread=True,
        responses=problems(400, 401, 403, 404),
    )
    def receipt(
        self,
        state: State,
        principal: P,
        member_id: Id,
        seq: Annotated[int, Parameter(ge=0, le=2**53 - 1)],
    ) -> str:
        """A C2SP tlog-proof that entry ``seq`` is in the log, checkable offline with
        ``timebank audit receipt FILE --key VKEY``."""
        return care(state).receipt(principal, member_id, seq)


CARE_CONTROLLERS = [
    CatalogueController,
    RequestController,
    RecordController,
    TransferController,
    PoolController,
    BalanceController,
]
