"""Minutes over HTTP: confirmation codes, gifts, donations, grants and reversals, the pool,
balances, history and receipts. Every rule is in ``care.service``."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import msgspec
from litestar import Controller, MediaType, Request, get, post
from litestar.concurrency import sync_to_thread
from litestar.datastructures import State
from litestar.params import JSONBody, Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED
from litestar.types import Scope, Send

from accounts.service import AccountsService
from api.accounts_routes import AUTH, Id
from api.auth import PrincipalCache, parse_bearer
from api.care_routes import ERR, KEYED, P, care, entry_key
from api.care_schemas import (
    BalanceOut,
    CodeOut,
    DonationIn,
    EntryOut,
    GiftIn,
    GrantIn,
    HistoryOut,
    ReversalIn,
    ReversalOut,
    entry_out,
    reversal_out,
)
from api.schemas import problems
from care.model import (
    REVERSAL_STATUSES,
)
from care.service import CareService
from web.security import security_headers

log = logging.getLogger(__name__)

# A balance read may lag another worker process's appends by this much (never this one's).
BALANCE_MAX_AGE = 1.0
MEMBERS_PREFIX, BALANCE_SUFFIX = "/v1/members/", "/balance"
MAX_ID = 64  # api.accounts_routes.Id


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

    # Gifts and donations check their rules in a worker thread (a donation on the event loop
    # when its donor's access is remembered) and await the ledger on the loop: no thread waits
    # for the ledger's batch (docs/performance.md).

    @post("/gifts", status_code=HTTP_201_CREATED, responses=KEYED)
    async def gift(
        self, request: Request[Any, Any, State], principal: P, data: JSONBody[GiftIn]
    ) -> EntryOut:
        """Gift minutes to a confirmed direct relative (转赠). Requires Idempotency-Key."""
        service = care(request.app.state)
        entry = await sync_to_thread(
            service.gift_entry,
            principal,
            data.from_member_id,
            data.to_member_id,
            data.minutes,
            entry_key(request),
        )
        return entry_out(await service.append_entry(entry))

    @post("/donations", status_code=HTTP_201_CREATED, responses=KEYED)
    async def donate(
        self, request: Request[Any, Any, State], principal: P, data: JSONBody[DonationIn]
    ) -> EntryOut:
        """Donate minutes to the bank's pool (公益池). Requires Idempotency-Key."""
        service = care(request.app.state)
        asked = (principal, data.from_member_id, data.minutes, entry_key(request))
        entry = service.remembered_donation_entry(*asked)
        if entry is None:  # who may act on the donor is looked up
            entry = await sync_to_thread(service.donation_entry, *asked)
        return entry_out(await service.append_entry(entry))

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

    @get("/balance", responses=problems(400, 401, 403, 404))
    async def balance(self, state: State, principal: P, member_id: Id) -> BalanceOut:
        """Available and reserved minutes (partner keys with read_points may read this).

        Another worker process's appends show within ``BALANCE_MAX_AGE`` seconds, this
        process's at once."""
        service = care(state)
        # Phones poll this: with the caller's access and the minutes in memory, no thread.
        b = service.remembered_balance(principal, member_id, BALANCE_MAX_AGE)
        if b is None:
            b = await sync_to_thread(service.balance, principal, member_id, BALANCE_MAX_AGE)
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


class BalanceFastPath:
    """``GET /v1/members/{id}/balance`` with a bearer token, answered before Litestar routes the
    request when the whole answer is a 200 already in memory: who the token is (the app's
    ``PrincipalCache``), that this caller may read this member (``accounts.access_cache``) and
    the minutes (``Log.cached_balances``), under the same rules and ages as the route's
    (``CareService.remembered_balance``). Phones poll it; the middlewares, Litestar's routing
    and dependency injection cost more than the answer.

    Anything else takes the route, so its errors and their order stay the route's: no or another
    credential, a cookie (the CSRF layer may add its own), a query (``reveal_reason`` is audited),
    a root path, an id the route would refuse, a principal or access not remembered (refusals
    never are), a one-time password still to change, minutes not in memory. The route's reads
    are not audited (``api.audit_log``). ``tests/test_api_balance_fast.py`` proves the two
    responses byte for byte the same, on both databases.
    """

    HEADERS = security_headers(MEMBERS_PREFIX)

    @staticmethod
    def member_id(scope: Scope) -> str | None:
        """The id of a plain balance GET that could be answered here, else None."""
        path: str = scope["path"]
        if (
            not path.startswith(MEMBERS_PREFIX)
            or not path.endswith(BALANCE_SUFFIX)
            or scope.get("method") != "GET"
            or scope.get("query_string")
            or scope.get("root_path")
        ):
            return None
        member_id = path[len(MEMBERS_PREFIX) : -len(BALANCE_SUFFIX)]
        if not 1 <= len(member_id) <= MAX_ID or "/" in member_id:
            return None
        return member_id

    @staticmethod
    def _token(scope: Scope) -> str | None:
        """The bearer token as ``api.auth.bearer_token`` reads it, if the request carries
        exactly one ``Authorization`` header and no cookie; None otherwise."""
        found: str | None = None
        for name, value in scope["headers"]:
            lower = name.lower()
            if lower == b"cookie" or (lower == b"authorization" and found is not None):
                return None
            if lower == b"authorization":
                found = value.decode("latin-1")
        return None if found is None else parse_bearer(found)

    async def answer(self, scope: Scope, member_id: str, state: State, send: Send) -> bool:
        """Send the balance if all of it is in memory; False (nothing sent) otherwise."""
        try:
            body = self._remembered_body(scope, member_id, state)
        except Exception as exc:  # the route answers it, with its problem+json and headers
            log.error("balance fast path failed: %s", type(exc).__name__)
            return False
        if body is None:
            return False
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *self.HEADERS,
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
        return True

    def _remembered_body(self, scope: Scope, member_id: str, state: State) -> bytes | None:
        """The route's body when the caller, their access and the minutes are all in memory."""
        token = self._token(scope)
        principals: PrincipalCache | None = state.get("principals")
        accounts: AccountsService | None = state.get("accounts")
        service: CareService | None = state.get("care")
        if token is None or principals is None or accounts is None or service is None:
            return None
        principal = principals.remembered(accounts, token)
        if principal is None or principal.password_change_due:
            return None
        b = service.remembered_balance(principal, member_id, BALANCE_MAX_AGE)
        if b is None:
            return None
        return msgspec.json.encode(BalanceOut(b.member_id, b.available, b.reserved))


LEDGER_CONTROLLERS = [TransferController, PoolController, BalanceController]
