"""The console's pages that move minutes: the pool and grants to priority elders, and
reversals (requested by one administrator, approved by another). The same service methods
as ``/v1/grants`` and ``/v1/reversals`` (``web.console`` has the rest of the console)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.response import Redirect

from accounts.errors import InvalidInput
from accounts.model import Principal
from web.console import (
    WORDS,
    EntryParam,
    Failure,
    Id,
    admin_or_login,
    care_of,
    form_int,
    made,
)
from web.i18n import GRANT_REASONS, N_, REVERSAL_REASONS
from web.pages import Form, refusal, render
from web.session import accounts_of


@dataclass(frozen=True)
class PriorityElder:
    id: str
    name: str
    flags: list[str]


def _priority_elders(request: Request[Any, Any, State], who: Principal) -> list[PriorityElder]:
    accounts = accounts_of(request)
    found = []
    for view in accounts.list_members(who, None, 200, 0):
        if not view.member.is_elder:
            continue
        flags = sorted(str(f) for f in accounts.active_flags(view.member.id))
        if flags:
            name = view.personal.get("name")
            found.append(PriorityElder(view.member.id, str(name or "…"), flags))
    return found


def _pool(request: Request[Any, Any, State], who: Principal, **context: Any) -> dict[str, Any]:
    return {
        "words": WORDS,
        "codes": GRANT_REASONS,
        "pool": care_of(request).pool_balance(who),
        "elders": _priority_elders(request, who),
        "key": secrets.token_hex(16),
        **context,
    }


@get("/console/pool", sync_to_thread=True, include_in_schema=False)
def pool(request: Request[Any, Any, State], entry: EntryParam = None) -> Response[Any]:
    who = admin_or_login(request)
    if not isinstance(who, Principal):
        return who
    return render(
        request, "console/pool.html", who, **_pool(request, who, made=made(request, entry))
    )


@post("/console/pool/grant", sync_to_thread=True, include_in_schema=False)
def grant(request: Request[Any, Any, State], data: Form) -> Response[Any]:
    """The same ``grant`` as ``POST /v1/grants``; the form's one-time key is the
    Idempotency-Key, so posting the form twice grants once."""
    who = admin_or_login(request)
    if not isinstance(who, Principal):
        return who
    key = data.get("key", "")
    try:
        if not key.isalnum() or len(key) > 64:
            raise InvalidInput(N_("the form expired; start again"), field="key")
        result = care_of(request).grant(
            who,
            data.get("elder_id", ""),
            form_int(data, "minutes"),
            data.get("reason", ""),
            key,
            reason_code=data.get("reason_code", "other"),
        )
    except Failure as exc:
        return refusal(request, exc, "console/pool.html", who, **_pool(request, who, form=data))
    return Redirect(f"/console/pool?entry={result.seq}", status_code=303)


# ---------------------------------------------------------------- reversals


@dataclass(frozen=True)
class Pending:
    id: str
    seq: int
    reason: str
    requested_by: str
    mine: bool
    entry: str


def _reversals(request: Request[Any, Any, State], who: Principal, **context: Any) -> dict[str, Any]:
    care = care_of(request)
    pending = []
    for row in care.list_reversals(who, "pending"):
        found = made(request, int(row["entry_seq"]))
        pending.append(
            Pending(
                str(row["id"]),
                int(row["entry_seq"]),
                str(row["reason"]),
                str(row["requested_by"]),
                row["requested_by"] == who.user_id,
                found.leaf if found else "",
            )
        )
    done = [r for r in care.list_reversals(who, None) if r["status"] != "pending"][-10:]
    return {
        "words": WORDS,
        "codes": REVERSAL_REASONS,
        "pending": pending,
        "done": done,
        **context,
    }


@get("/console/reversals", sync_to_thread=True, include_in_schema=False)
def reversals(request: Request[Any, Any, State], entry: EntryParam = None) -> Response[Any]:
    who = admin_or_login(request)
    if not isinstance(who, Principal):
        return who
    context = _reversals(request, who, made=made(request, entry))
    return render(request, "console/reversals.html", who, **context)


@post("/console/reversals", sync_to_thread=True, include_in_schema=False)
def request_reversal(request: Request[Any, Any, State], data: Form) -> Response[Any]:
    """The same ``request_reversal`` as ``POST /v1/reversals``."""
    who = admin_or_login(request)
    if not isinstance(who, Principal):
        return who
    try:
        care_of(request).request_reversal(
            who, form_int(data, "seq"), data.get("reason", ""), data.get("reason_code", "other")
        )
    except Failure as exc:
        return refusal(
            request, exc, "console/reversals.html", who, **_reversals(request, who, form=data)
        )
    return Redirect("/console/reversals", status_code=303)


@post("/console/reversals/{reversal_id:str}/approve", sync_to_thread=True, include_in_schema=False)
def approve_reversal(request: Request[Any, Any, State], reversal_id: Id) -> Response[Any]:
    """The same ``approve_reversal`` as ``POST /v1/reversals/{id}/approve``: the page offers no
    approve button to the administrator who asked, and the service refuses them as well."""
    who = admin_or_login(request)
    if not isinstance(who, Principal):
        return who
    try:
        done = care_of(request).approve_reversal(who, reversal_id)
    except Failure as exc:
        return refusal(request, exc, "console/reversals.html", who, **_reversals(request, who))
    return Redirect(f"/console/reversals?entry={done['reversal_seq']}", status_code=303)


@post("/console/reversals/{reversal_id:str}/reject", sync_to_thread=True, include_in_schema=False)
def reject_reversal(request: Request[Any, Any, State], reversal_id: Id) -> Response[Any]:
    """Turn down (or, for the administrator who asked, withdraw) a pending reversal."""
    who = admin_or_login(request)
    if not isinstance(who, Principal):
        return who
    try:
        care_of(request).reject_reversal(who, reversal_id)
    except Failure as exc:
        return refusal(request, exc, "console/reversals.html", who, **_reversals(request, who))
    return Redirect("/console/reversals", status_code=303)


# ---------------------------------------------------------------- partner keys


MINUTES_HANDLERS = [
    pool,
    grant,
    reversals,
    request_reversal,
    approve_reversal,
    reject_reversal,
]
