"""The desk's people: register elders (assisted, no login needed) and volunteers, approve or
reject sign-ups, confirm relatives, priority flags with notes, family proxies, personal data
masked until a reason is given (each reveal recorded by the service and the audit trail), and
asking for a service for an elder. The same service methods as the ``/v1/members`` routes."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.params import QueryParameter
from litestar.response import Redirect, Template

from accounts.errors import AccountsError, InvalidInput, NotFound
from accounts.model import MemberStatus, Principal, Relation
from accounts.service import MemberView, PersonalInput
from care.errors import CareError
from web.desk import ItemId, Names, care_of, service_name, staff_or_refusal, translate
from web.i18n import FLAG_LABELS, N_
from web.pages import Form, refusal, render
from web.session import accounts_of

PERSONAL_FIELDS = (
    ("name", N_("Name")),
    ("phone", N_("Phone")),
    ("id_number", N_("ID number")),
    ("address", N_("Address")),
    ("birth_date", N_("Birth date")),
    ("birth_year", N_("Birth year")),
    ("health_notes", N_("Health notes")),
)
WORDS = (N_("pending"), N_("active"), N_("rejected"), N_("confirmed"))
ASK_FIELDS = ("service_code", "day", "start", "end", "minutes", "notes", "redeem")


def _orgs(request: Request[Any, Any, State], principal: Principal) -> list[tuple[str, str]]:
    accounts = accounts_of(request)
    return [(o, accounts.get_org(principal, o).name) for o in sorted(principal.orgs())]


# ---------------------------------------------------------------- the list


@get("/desk/people", sync_to_thread=True, include_in_schema=False)
def people(
    request: Request[Any, Any, State],
    search: Annotated[str | None, QueryParameter(max_length=40)] = None,
    done: Annotated[str | None, QueryParameter()] = None,
) -> Response[Any]:
    who = staff_or_refusal(request)
    if not isinstance(who, Principal):
        return who
    try:
        context = _people(request, who, search.strip() if search else None)
    except AccountsError as exc:
        return refusal(
            request, exc, "desk/people.html", who, search=search, **_people(request, who, None)
        )
    return render(request, "desk/people.html", who, search=search or "", done=done, **context)


def _people(
    request: Request[Any, Any, State], principal: Principal, search: str | None
) -> dict[str, Any]:
    accounts = accounts_of(request)
    listed = accounts.list_members(principal, search or None, 200, 0)
    everyone = listed if search else accounts.list_members(principal, None, 200, 0)
    pending = [v for v in everyone if v.member.status is MemberStatus.PENDING]
    return {"members": listed, "pending": pending}


@post("/desk/people/{member_id:str}/decide", sync_to_thread=True, include_in_schema=False)
def decide(request: Request[Any, Any, State], member_id: ItemId, data: Form) -> Response[Any]:
    who = staff_or_refusal(request)
    if not isinstance(who, Principal):
        return who
    approve = data.get("decision") == "approve"
    try:
        accounts_of(request).decide_registration(
            who, member_id, approve, data.get("reason", "").strip() or None
        )
    except AccountsError as exc:
        return refusal(
            request,
            exc,
            "desk/people.html",
            who,
            error_member=member_id,
            **_people(request, who, None),
        )
    return Redirect(f"/desk/people?done={'approved' if approve else 'rejected'}", status_code=303)


# ---------------------------------------------------------------- registering


@get("/desk/people/new", sync_to_thread=True, include_in_schema=False)
def new_person(request: Request[Any, Any, State]) -> Response[Any]:
    who = staff_or_refusal(request)
    if not isinstance(who, Principal):
        return who
    return render(request, "desk/register.html", who, orgs=_orgs(request, who), form={})


def _birth(text: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise InvalidInput(N_("birth date is not a date"), field="birth_date") from exc


@post("/desk/people/new", sync_to_thread=True, include_in_schema=False)
def register(request: Request[Any, Any, State], data: Form) -> Response[Any]:
    """Staff register a person: approved at once by their organisation. An elder needs no
    login (staff, family or a code confirm for her); a volunteer may get one."""
    who = staff_or_refusal(request)
    if not isinstance(who, Principal):
        return who
    fields = ("org_id", "kind", "name", "phone", "id_number", "address", "birth_date")
    form = {k: data.get(k, "").strip() for k in (*fields, "health_notes", "username")}
    orgs = _orgs(request, who)
    try:
        kind = form["kind"]
        if kind not in ("elder", "volunteer", "both"):
            raise InvalidInput(N_("choose elder or volunteer"), field="kind")
        username = form["username"] or None
        created = accounts_of(request).register_member(
            who,
            form["org_id"] or (orgs[0][0] if orgs else ""),
            PersonalInput(
                name=form["name"],
                phone=form["phone"] or None,
                id_number=form["id_number"] or None,
                address=form["address"] or None,
                birth_date=_birth(form["birth_date"]),
                health_notes=form["health_notes"] or None,
            ),
            volunteer=kind in ("volunteer", "both"),
            elder=kind in ("elder", "both"),
            username=username,
            password=data.get("password") or None if username else None,
        )
    except AccountsError as exc:
        return refusal(request, exc, "desk/register.html", who, orgs=orgs, form=form)
    return Redirect(f"/desk/people/{created.member.id}?done=registered", status_code=303)


# ---------------------------------------------------------------- one person


def _person(
    request: Request[Any, Any, State], principal: Principal, member_id: str, view: MemberView
) -> dict[str, Any]:
    accounts = accounts_of(request)
    care = care_of(request)
    names = Names(request, principal)
    links = []
    for link in accounts.list_relatives(principal, member_id):
        other = link.relative_id if link.member_id == member_id else link.member_id
        links.append((link, names.name(other)))
    types = [(t.code, service_name(request, t)) for t in care.catalogue(principal) if t.active]
    elder = view.member.is_elder and view.member.status is MemberStatus.ACTIVE
    proxies = accounts.list_proxies(principal, member_id) if elder else []
    candidates = accounts.proxy_candidates(principal, member_id) if elder else []
    return {
        "proxies": [(p, names.name(p.member_id) if p.member_id else "") for p in proxies],
        "candidates": [(c, names.name(c.member_id)) for c in candidates],
        "relations": [r.value for r in Relation],
        "view": view,
        "fields": [(label, view.personal.get(key)) for key, label in PERSONAL_FIELDS],
        "flags": [f for f in view.flags if f.cleared_at is None],
        "flag_labels": FLAG_LABELS,
        "links": links,
        "types": types,
        "today": datetime.now(ZoneInfo(care.policy(principal.bank_id).timezone)).date(),
    }


def _person_page(
    request: Request[Any, Any, State],
    principal: Principal,
    member_id: str,
    template_status: int = 200,
    view: MemberView | None = None,
    **context: Any,
) -> Template:
    view = view or accounts_of(request).get_member(principal, member_id)
    return render(
        request,
        "desk/person.html",
        principal,
        status=template_status,
        **_person(request, principal, member_id, view),
        **context,
    )


def _person_refusal(
    request: Request[Any, Any, State],
    principal: Principal,
    member_id: str,
    exc: AccountsError | CareError,
    section: str,
    **context: Any,
) -> Template:
    view = accounts_of(request).get_member(principal, member_id)
    return refusal(
        request,
        exc,
        "desk/person.html",
        principal,
        error_section=section,
        **_person(request, principal, member_id, view),
        **context,
    )


@get("/desk/people/{member_id:str}", sync_to_thread=True, include_in_schema=False)
def person(
    request: Request[Any, Any, State],
    member_id: ItemId,
    done: Annotated[str | None, QueryParameter()] = None,
    revealed: Annotated[str | None, QueryParameter(max_length=64)] = None,
) -> Response[Any]:
    """The person page; ``revealed`` names the caller's reveal just made, shown again (a
    reload) without another record (``MemberViews.revealed_member``)."""
    who = staff_or_refusal(request)
    if not isinstance(who, Principal):
        return who
    view = accounts_of(request).revealed_member(who, member_id, revealed) if revealed else None
    return _person_page(request, who, member_id, view=view, done=done)


@post("/desk/people/{member_id:str}/reveal", sync_to_thread=True, include_in_schema=False)
def reveal(request: Request[Any, Any, State], member_id: ItemId, data: Form) -> Response[Any]:
    """Full personal data for a stated reason: the service records who saw it and why, the
    audit trail records the request (as ``GET /v1/members/{id}?reveal_reason=…``); the data
    shows on the person page it redirects to, so a reload does not post (and record) again."""
    who = staff_or_refusal(request)
    if not isinstance(who, Principal):
        return who
    reason = data.get("reveal_reason", "").strip()
    try:
        view = accounts_of(request).get_member(who, member_id, reveal_reason=reason)
    except AccountsError as exc:
        return _person_refusal(request, who, member_id, exc, "reveal", reason=reason)
    return Redirect(f"/desk/people/{member_id}?revealed={view.access_id}", status_code=303)


@post("/desk/people/{member_id:str}/flags", sync_to_thread=True, include_in_schema=False)
def set_flag(request: Request[Any, Any, State], member_id: ItemId, data: Form) -> Response[Any]:
    who = staff_or_refusal(request)
    if not isinstance(who, Principal):
        return who
    try:
        accounts_of(request).set_flag(
            who, member_id, data.get("flag", ""), data.get("note", "").strip() or None
        )
    except AccountsError as exc:
        flagged = {"flag": data.get("flag", ""), "note": data.get("note", "")}
        return _person_refusal(request, who, member_id, exc, "flags", flagged=flagged)
    return Redirect(f"/desk/people/{member_id}?done=flag", status_code=303)


@post(
    "/desk/people/{member_id:str}/flags/{flag_id:str}/clear",
    sync_to_thread=True,
    include_in_schema=False,
)
def clear_flag(
    request: Request[Any, Any, State], member_id: ItemId, flag_id: ItemId
) -> Response[Any]:
    who = staff_or_refusal(request)
    if not isinstance(who, Principal):
        return who
    try:
        accounts_of(request).clear_flag(who, member_id, flag_id)
    except AccountsError as exc:
        return _person_refusal(request, who, member_id, exc, "flags")
    return Redirect(f"/desk/people/{member_id}?done=flag-cleared", status_code=303)


@post(
    "/desk/people/{member_id:str}/relatives/{link_id:str}",
    sync_to_thread=True,
    include_in_schema=False,
)
def decide_relative(
    request: Request[Any, Any, State], member_id: ItemId, link_id: ItemId, data: Form
) -> Response[Any]:
    who = staff_or_refusal(request)
    if not isinstance(who, Principal):
        return who
    accounts = accounts_of(request)
    try:
        if link_id not in {link.id for link in accounts.list_relatives(who, member_id)}:
            # another person's: as if there were none
            raise NotFound("no relation %(id)s", id=link_id)
        accounts.decide_relative(who, link_id, data.get("decision") == "confirm")
    except AccountsError as exc:
        return _person_refusal(request, who, member_id, exc, "relatives")
    return Redirect(f"/desk/people/{member_id}?done=relative", status_code=303)


@post("/desk/people/{member_id:str}/relatives", sync_to_thread=True, include_in_schema=False)
def declare_relative(
    request: Request[Any, Any, State], member_id: ItemId, data: Form
) -> Response[Any]:
    """Staff declare a relative found by phone or ID number among their members
    (``POST /v1/members/{id}/relatives``); it waits for a confirmation like any other."""
    who = staff_or_refusal(request)
    if not isinstance(who, Principal):
        return who
    accounts = accounts_of(request)
    search = data.get("relative_search", "").strip()
    try:
        if not search:
            raise InvalidInput(N_("give the relative's phone or ID number"), field="relative")
        found = accounts.list_members(who, search, 2, 0)  # her own number: declare_relative says so
        if len(found) != 1:
            raise InvalidInput(
                N_("no member of your organisation has this phone or ID number"),
                field="relative",
            )
        accounts.declare_relative(who, member_id, found[0].member.id, data.get("relation", ""))
    except AccountsError as exc:
        relation = data.get("relation", "")
        return _person_refusal(
            request, who, member_id, exc, "declare", search=search, relation=relation
        )
    return Redirect(f"/desk/people/{member_id}?done=relative-declared", status_code=303)


@post("/desk/people/{member_id:str}/proxies", sync_to_thread=True, include_in_schema=False)
def proxies(request: Request[Any, Any, State], member_id: ItemId, data: Form) -> Response[Any]:
    who = staff_or_refusal(request)
    if not isinstance(who, Principal):
        return who
    username = data.get("username", "").strip()
    try:
        if data.get("action") == "revoke":
            accounts_of(request).revoke_proxy(who, member_id, username)
        else:
            accounts_of(request).grant_proxy(who, member_id, username)
    except AccountsError as exc:
        return _person_refusal(request, who, member_id, exc, "proxies", proxy_username=username)
    done = "proxy-revoked" if data.get("action") == "revoke" else "proxy-granted"
    return Redirect(f"/desk/people/{member_id}?done={done}", status_code=303)


def _moment(day: str, clock: str, zone: str, field: str) -> datetime:
    try:
        return datetime.combine(
            date.fromisoformat(day), time.fromisoformat(clock), tzinfo=ZoneInfo(zone)
        )
    except ValueError as exc:
        raise InvalidInput(N_("give a date and a time"), field=field) from exc


@post("/desk/people/{member_id:str}/request", sync_to_thread=True, include_in_schema=False)
def ask_for_service(
    request: Request[Any, Any, State], member_id: ItemId, data: Form
) -> Response[Any]:
    """Staff ask for a service for the elder (``POST /v1/requests`` acting for her); the
    board then dispatches it."""
    who = staff_or_refusal(request)
    if not isinstance(who, Principal):
        return who
    care = care_of(request)
    zone = care.policy(who.bank_id).timezone
    try:
        start = _moment(data.get("day", ""), data.get("start", ""), zone, "start")
        end = _moment(data.get("day", ""), data.get("end", ""), zone, "end")
        try:
            minutes = int(data.get("minutes") or int((end - start).total_seconds() // 60))
        except ValueError as exc:
            raise InvalidInput(N_("minutes are a whole number"), field="minutes") from exc
        created = care.create_request(
            who,
            member_id,
            data.get("service_code", ""),
            start,
            end,
            minutes,
            data.get("notes", "").strip() or None,
            data.get("redeem") == "1",
        )
    except (AccountsError, CareError) as exc:
        asked = {k: data.get(k, "") for k in ASK_FIELDS}  # as typed: nothing to type again
        return _person_refusal(request, who, member_id, exc, "request", asked=asked)
    return Redirect(f"/desk/dispatch/{created.id}", status_code=303)


def flag_label(request: Request[Any, Any, Any], flag: str) -> str:
    return translate(request, FLAG_LABELS.get(flag, flag))


PEOPLE_HANDLERS = [
    people,
    decide,
    new_person,
    register,
    person,
    reveal,
    set_flag,
    clear_flag,
    decide_relative,
    declare_relative,
    proxies,
    ask_for_service,
]
