"""The bank administrators' console (民政 / the bank's admins): the catalogue and the policy
(each change shows the ledger entry it made), partner keys and organisations, and what the
console's pages share; the pool, grants and reversals are ``web.console_minutes``.

Every page calls the same service method as its ``/v1`` route, so the rules, the refusals
(a volunteer or staff member opening the console gets the API's 403) and the audit events
are the API's. No console action needs a TOTP step-up today: the services ask for one only
to verify hours (the staff desk)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.params import PathParameter, QueryParameter
from litestar.response import Redirect, Template

from accounts.errors import AccountsError, InvalidInput
from accounts.model import OrgKind, PartnerScope, Principal
from care.errors import CareError
from care.model import Category
from care.service import CareService
from ledger.entry import Entry
from ledger.log import Log
from web.i18n import N_, ORG_KINDS, PARTNER_SCOPES
from web.pages import Form, refusal, render, to_login
from web.session import accounts_of, viewer

Id = Annotated[str, PathParameter(max_length=64)]
EntryParam = Annotated[int | None, QueryParameter(ge=0, le=2**53 - 1)]
POLICY_NUMBERS = ("redemption_age", "stored_cap_minutes", "daily_cap_minutes", "record_late_days")
# Words the console shows for values of the services; the catalog translates them.
WORDS = {
    "redemption_age": N_("Age from which members may redeem their time"),
    "stored_cap_minutes": N_("Most minutes a member may store (more goes to the pool)"),
    "daily_cap_minutes": N_("Most minutes a volunteer may log in one day"),
    "gifts_allowed": N_("Members may give time to confirmed relatives"),
    "timezone": N_("Time zone of the bank's days"),
    "record_late_days": N_("Days after a visit within which it may be logged"),
    "living_alone": N_("lives alone"),
    "disabled": N_("disabled"),
    "advanced_age": N_("advanced age"),
    "low_income": N_("low income"),
    "empty_nest": N_("empty nest"),
    "pending": N_("pending"),
    "approved": N_("approved"),
    "rejected": N_("rejected"),
    **PARTNER_SCOPES,
    **ORG_KINDS,
}


# The services' refusals of the console's and the trail's callers, translated for the pages
# and the API alike (``web.i18n.describe`` looks a message up in the catalog).
REFUSALS = (
    N_("only a bank administrator may do this"),
    N_("the audit trail is for auditors"),
    N_("the pool's balance is for bank administrators and auditors"),
)


def care_of(request: Request[Any, Any, State]) -> CareService:
    service: CareService = request.app.state.care
    return service


def log_of(request: Request[Any, Any, State]) -> Log:
    log: Log = request.app.state.log
    return log


def console_page(
    request: Request[Any, Any, State], template: str, principal: Principal, **context: Any
) -> Template:
    return render(request, f"console/{template}", principal, words=WORDS, **context)


@dataclass(frozen=True)
class Made:
    """The ledger entry an action made, shown after it."""

    seq: int
    kind: str
    leaf: str


def made(request: Request[Any, Any, State], seq: int | None) -> Made | None:
    if seq is None:
        return None
    leaves = log_of(request).leaves(seq, seq + 1)
    if not leaves:
        return None
    entry = Entry.from_leaf(leaves[0].data)
    return Made(seq, entry.request.kind, leaves[0].data.decode())


def form_int(data: dict[str, str], field: str) -> int:
    text = data.get(field, "").strip()
    if not text.lstrip("-").isdigit() or len(text) > 16:
        raise InvalidInput(N_("%(field)s must be a whole number"), field=field)
    return int(text)


def admin_or_login(request: Request[Any, Any, State]) -> Principal | Redirect:
    """The caller, or the login page. Everyone but a bank administrator then gets the
    services' own refusal (403, in the page's language): see ``require_admin``."""
    principal = viewer(request)
    if principal is None:
        return to_login(request)
    require_admin(request, principal)
    return principal


def require_admin(request: Request[Any, Any, State], principal: Principal) -> None:
    """Every console page answers a caller who is not a bank administrator as
    ``GET /v1/reversals`` does (the same service call, the same 403 and message)."""
    care_of(request).list_reversals(principal, "pending")


Failure = (AccountsError, CareError)


# ---------------------------------------------------------------- overview


@get("/console", sync_to_thread=True, include_in_schema=False)
def overview(request: Request[Any, Any, State]) -> Response[Any]:
    who = admin_or_login(request)
    if not isinstance(who, Principal):
        return who
    care = care_of(request)
    pending = care.list_reversals(who, "pending")
    return console_page(
        request,
        "overview.html",
        who,
        pool=care.pool_balance(who),
        pending=len(pending),
        policy=care.policy(who.bank_id),
        types=len(care.catalogue(who, include_inactive=True)),
    )


# ---------------------------------------------------------------- catalogue


def _catalogue(
    request: Request[Any, Any, State], who: Principal, status: int = 200, **context: Any
) -> Template:
    care = care_of(request)
    return render(
        request,
        "console/catalogue.html",
        who,
        status=status,
        words=WORDS,
        types=care.catalogue(who, include_inactive=True),
        categories=[c.value for c in Category],
        **context,
    )


@get("/console/catalogue", sync_to_thread=True, include_in_schema=False)
def catalogue(request: Request[Any, Any, State], entry: EntryParam = None) -> Response[Any]:
    who = admin_or_login(request)
    if not isinstance(who, Principal):
        return who
    return _catalogue(request, who, made=made(request, entry))


@post("/console/catalogue", sync_to_thread=True, include_in_schema=False)
def change_service_type(request: Request[Any, Any, State], data: Form) -> Response[Any]:
    """The same ``upsert_service_type`` as ``POST /v1/catalogue``: a policy entry in the log."""
    who = admin_or_login(request)
    if not isinstance(who, Principal):
        return who
    care = care_of(request)
    code = data.get("code", "").strip()
    try:
        current = {t.code: t for t in care.catalogue(who, include_inactive=True)}.get(code)
        changed = care.upsert_service_type(
            who,
            code,
            data.get("name_zh", current.name_zh if current else "").strip(),
            data.get("name_en", current.name_en if current else "").strip(),
            data.get("category", str(current.category) if current else ""),
            form_int(data, "weight_permille"),
            data.get("active") == "1",
        )
    except Failure as exc:
        # As typed, into the form it came from: a row posts no names, "add a service type" does.
        fields = ("code", "name_zh", "name_en", "category", "weight_permille", "active")
        typed = {k: data.get(k, "") for k in fields}
        return refusal(
            request,
            exc,
            "console/catalogue.html",
            who,
            words=WORDS,
            types=care.catalogue(who, include_inactive=True),
            categories=[c.value for c in Category],
            error_code=code,
            added=typed if "name_zh" in data else None,
            changed=None if "name_zh" in data else typed,
        )
    return Redirect(f"/console/catalogue?entry={changed.ledger_seq}", status_code=303)


# ---------------------------------------------------------------- policy


@get("/console/policy", sync_to_thread=True, include_in_schema=False)
def policy(request: Request[Any, Any, State], entry: EntryParam = None) -> Response[Any]:
    who = admin_or_login(request)
    if not isinstance(who, Principal):
        return who
    care = care_of(request)
    return console_page(
        request, "policy.html", who, policy=care.policy(who.bank_id), made=made(request, entry)
    )


@post("/console/policy", sync_to_thread=True, include_in_schema=False)
def change_policy(request: Request[Any, Any, State], data: Form) -> Response[Any]:
    """The same ``set_policy`` as ``POST /v1/policy``, with only the values that changed."""
    who = admin_or_login(request)
    if not isinstance(who, Principal):
        return who
    care = care_of(request)
    current = care.policy(who.bank_id)
    try:
        wanted: dict[str, Any] = {name: form_int(data, name) for name in POLICY_NUMBERS}
        wanted["gifts_allowed"] = data.get("gifts_allowed") == "1"
        wanted["timezone"] = data.get("timezone", "").strip()
        changes = {k: v for k, v in wanted.items() if current.values()[k] != v}
        if not changes:
            raise InvalidInput(N_("nothing was changed"), field="policy")
        new = care.set_policy(who, changes)
    except Failure as exc:
        typed = {k: data.get(k, "") for k in (*POLICY_NUMBERS, "timezone", "gifts_allowed")}
        return refusal(
            request, exc, "console/policy.html", who, words=WORDS, policy=current, typed=typed
        )
    return Redirect(f"/console/policy?entry={new.ledger_seq}", status_code=303)


# ---------------------------------------------------------------- the pool and grants


def _partners(request: Request[Any, Any, State], who: Principal, **context: Any) -> dict[str, Any]:
    return {
        "words": WORDS,
        "keys": accounts_of(request).list_partner_keys(who),
        "scopes": [s.value for s in PartnerScope],
        **context,
    }


@get("/console/partners", sync_to_thread=True, include_in_schema=False)
def partners(request: Request[Any, Any, State]) -> Response[Any]:
    who = admin_or_login(request)
    if not isinstance(who, Principal):
        return who
    return render(request, "console/partners.html", who, **_partners(request, who))


@post("/console/partners", sync_to_thread=True, include_in_schema=False)
def create_partner_key(request: Request[Any, Any, State], data: Form) -> Response[Any]:
    """The same ``create_partner_key`` as ``POST /v1/partner-keys``; the secret is shown once."""
    who = admin_or_login(request)
    if not isinstance(who, Principal):
        return who
    scopes = [s.value for s in PartnerScope if data.get(f"scope_{s.value}") == "1"]
    try:
        key, secret = accounts_of(request).create_partner_key(who, data.get("name", ""), scopes)
    except Failure as exc:
        typed = {"name": data.get("name", ""), "scopes": scopes}
        return refusal(
            request, exc, "console/partners.html", who, **_partners(request, who, typed=typed)
        )
    return render(
        request,
        "console/partners.html",
        who,
        status=201,
        **_partners(request, who, created=key, secret=secret),
    )


@post("/console/partners/{key_id:str}/revoke", sync_to_thread=True, include_in_schema=False)
def revoke_partner_key(request: Request[Any, Any, State], key_id: Id) -> Response[Any]:
    who = admin_or_login(request)
    if not isinstance(who, Principal):
        return who
    try:
        accounts_of(request).revoke_partner_key(who, key_id)
    except Failure as exc:
        return refusal(request, exc, "console/partners.html", who, **_partners(request, who))
    return Redirect("/console/partners", status_code=303)


# ---------------------------------------------------------------- organisations


def _orgs(request: Request[Any, Any, State], who: Principal, **context: Any) -> dict[str, Any]:
    return {
        "words": WORDS,
        "orgs": accounts_of(request).list_orgs(who),
        "kinds": [k.value for k in OrgKind],
        **context,
    }


@get("/console/orgs", sync_to_thread=True, include_in_schema=False)
def organisations(request: Request[Any, Any, State]) -> Response[Any]:
    who = admin_or_login(request)
    if not isinstance(who, Principal):
        return who
    return render(request, "console/orgs.html", who, **_orgs(request, who))


@post("/console/orgs", sync_to_thread=True, include_in_schema=False)
def create_org(request: Request[Any, Any, State], data: Form) -> Response[Any]:
    """The same ``create_org`` as ``POST /v1/orgs``."""
    who = admin_or_login(request)
    if not isinstance(who, Principal):
        return who
    phone = data.get("phone", "").strip() or None
    try:
        accounts_of(request).create_org(who, data.get("name", ""), data.get("kind", ""), phone)
    except Failure as exc:
        return refusal(request, exc, "console/orgs.html", who, **_orgs(request, who, form=data))
    return Redirect("/console/orgs", status_code=303)


CONSOLE_HANDLERS = [
    overview,
    catalogue,
    change_service_type,
    policy,
    change_policy,
    partners,
    create_partner_key,
    revoke_partner_key,
    organisations,
    create_org,
]
