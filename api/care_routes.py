"""The workflow over HTTP: catalogue and policy, requests and service records. Every rule is
in ``care.service``; the bodies are in ``api.care_schemas``, the routes that move minutes and
read balances in ``api.ledger_routes``."""

from __future__ import annotations

import base64
import hashlib
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import JSONBody, Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from accounts.model import Principal
from api.accounts_routes import AUTH, Id
from api.care_schemas import (
    AssignIn,
    ConfirmIn,
    DraftIn,
    DraftOut,
    PolicyIn,
    PolicyOut,
    ReasonIn,
    RecordIn,
    RecordOut,
    RequestIn,
    RequestOut,
    ServiceTypeIn,
    ServiceTypeOut,
    VisitOut,
    policy_out,
    record_out,
    request_out,
    type_out,
    visit_out,
)
from api.problems import IdempotencyKeyRequired
from api.schemas import problems
from care.base import record_digest
from care.model import (
    RecordStatus,
    RequestStatus,
)
from care.service import CareService
from ledger.entry import record_signing_message
from web.session import ON_BEHALF_STATE_KEY


def care(state: State) -> CareService:
    service: CareService = state.care
    return service


def entry_key(request: Request[Any, Any, Any]) -> str:
    """The client's Idempotency-Key, folded into a ledger-safe id; 428 without one."""
    key = request.headers.get("idempotency-key")
    if not key:
        raise IdempotencyKeyRequired
    return hashlib.sha256(key.encode()).hexdigest()[:24]


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
        service = care(state)
        found = service.list_requests(principal, status)
        stuck = service.shortfalls(found)
        return [request_out(r, r.id not in stuck) for r in found]

    @get("/{request_id:str}", sync_to_thread=True, responses=problems(400, 401, 404))
    def one(self, state: State, principal: P, request_id: Id) -> RequestOut:
        service = care(state)
        found = service.get_request(principal, request_id)
        return request_out(found, not service.shortfalls([found]))

    @get("/{request_id:str}/visit", sync_to_thread=True, responses=problems(400, 401, 404, 409))
    def visit(self, state: State, principal: P, request_id: Id) -> VisitOut:
        """The visit, for the volunteer the request is assigned to, while it is assigned: the
        elder's masked name, her area and full address, the window and the service, as the
        visit page shows them. Each read of the address is recorded in her access records
        (role ``volunteer``, reason ``assigned visit <request id>``). Anyone else gets 404;
        its volunteer, once the request is completed or cancelled, 409."""
        care_service = care(state)
        shown = care_service.visit(principal, request_id)
        return visit_out(shown, care_service.policy(principal.bank_id).timezone)

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


CARE_CONTROLLERS = [CatalogueController, RequestController, RecordController]
