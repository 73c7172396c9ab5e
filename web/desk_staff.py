"""The organisation's staff logins and one's own second factor: the staff list, a new staff
login (its one-time password shown once), revoking one (organisation admins), and TOTP
enrolment with a QR code for the authenticator app. The same service methods as
``/v1/orgs/{id}/staff`` and ``/v1/me/totp``."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.params import QueryParameter
from litestar.response import Redirect, Template

from accounts.errors import AccountsError, NotFound
from accounts.model import Principal, Role
from web.desk import ItemId, staff_or_refusal
from web.desk_paper import qr_svg
from web.i18n import N_
from web.pages import Form, refusal, render
from web.session import accounts_of

ROLES = (N_("org_staff"), N_("org_admin"))


def _staff(request: Request[Any, Any, State], principal: Principal) -> dict[str, Any]:
    accounts = accounts_of(request)
    admin_of = principal.orgs(Role.ORG_ADMIN)
    orgs = []
    for org_id in sorted(principal.orgs()):
        org = accounts.get_org(principal, org_id)
        orgs.append(
            {
                "org": org,
                "staff": accounts.list_staff(principal, org_id),
                "admin": org_id in admin_of or principal.is_bank_admin,
            }
        )
    return {"orgs": orgs, "me": principal.user_id}


@get("/desk/staff", sync_to_thread=True, include_in_schema=False)
def staff(
    request: Request[Any, Any, State], done: Annotated[str | None, QueryParameter()] = None
) -> Response[Any]:
    who = staff_or_refusal(request)
    if not isinstance(who, Principal):
        return who
    return render(request, "desk/staff.html", who, done=done, **_staff(request, who))


@post("/desk/staff/{org_id:str}", sync_to_thread=True, include_in_schema=False)
def add_staff(request: Request[Any, Any, State], org_id: ItemId, data: Form) -> Response[Any]:
    """A new staff login; without a password the service makes a one-time one, shown once."""
    who = staff_or_refusal(request)
    if not isinstance(who, Principal):
        return who
    username = data.get("username", "").strip()
    try:
        new = accounts_of(request).create_staff(
            who, org_id, username, data.get("role", ""), data.get("password") or None
        )
    except AccountsError as exc:
        typed = {"username": username, "role": data.get("role", "")}  # never the password
        return refusal(
            request,
            exc,
            "desk/staff.html",
            who,
            error_org=org_id,
            typed=typed,
            **_staff(request, who),
        )
    return render(
        request,
        "desk/staff.html",
        who,
        created=new.user.username,
        one_time_password=new.one_time_password,
        **_staff(request, who),
    )


@post("/desk/staff/{org_id:str}/{user_id:str}/revoke", sync_to_thread=True, include_in_schema=False)
def revoke_staff(
    request: Request[Any, Any, State], org_id: ItemId, user_id: ItemId
) -> Response[Any]:
    who = staff_or_refusal(request)
    if not isinstance(who, Principal):
        return who
    try:
        accounts_of(request).revoke_staff(who, org_id, user_id)
    except AccountsError as exc:
        return refusal(
            request, exc, "desk/staff.html", who, error_org=org_id, **_staff(request, who)
        )
    return Redirect("/desk/staff?done=revoked", status_code=303)


@post(
    "/desk/staff/{org_id:str}/{user_id:str}/totp-reset",
    sync_to_thread=True,
    include_in_schema=False,
)
def reset_totp(request: Request[Any, Any, State], org_id: ItemId, user_id: ItemId) -> Response[Any]:
    """An enrolment code for a staff login (``POST /v1/users/{id}/totp-reset``), shown once."""
    who = staff_or_refusal(request)
    if not isinstance(who, Principal):
        return who
    accounts = accounts_of(request)
    try:
        if user_id not in {user.id for user, _role in accounts.list_staff(who, org_id)}:
            # as revoking says
            raise NotFound("user %(id)s is not staff of %(org)s", id=user_id, org=org_id)
        code, _until = accounts.issue_enrolment_code(who, user_id)
    except AccountsError as exc:
        return refusal(
            request, exc, "desk/staff.html", who, error_org=org_id, **_staff(request, who)
        )
    listed = _staff(request, who)
    names = {user.id: user.username for o in listed["orgs"] for user, _role in o["staff"]}
    return render(
        request,
        "desk/staff.html",
        who,
        enrolment_code=code,
        reset_for=names.get(user_id, user_id),
        **listed,
    )


# ---------------------------------------------------------------- my second factor


def _totp_page(request: Request[Any, Any, State], principal: Principal, **context: Any) -> Template:
    user, _ = accounts_of(request).me(principal)
    return render(
        request,
        "desk/totp.html",
        principal,
        enrolled=bool(user and user.totp_enabled),
        **context,
    )


@get("/desk/totp", sync_to_thread=True, include_in_schema=False)
def totp_page(
    request: Request[Any, Any, State], done: Annotated[str | None, QueryParameter()] = None
) -> Response[Any]:
    who = staff_or_refusal(request)
    if not isinstance(who, Principal):
        return who
    return _totp_page(request, who, done=done)


@post("/desk/totp", sync_to_thread=True, include_in_schema=False)
def begin_totp(request: Request[Any, Any, State], data: Form) -> Response[Any]:
    """Start enrolment (``POST /v1/me/totp``) with the administrator's enrolment code: the
    secret as a QR code and as text."""
    who = staff_or_refusal(request)
    if not isinstance(who, Principal):
        return who
    code = data.get("enrolment_code", "").strip() or None
    try:
        secret, uri = accounts_of(request).begin_totp(who, code)
    except AccountsError as exc:
        user, _ = accounts_of(request).me(who)
        enrolled = bool(user and user.totp_enabled)
        return refusal(request, exc, "desk/totp.html", who, enrolled=enrolled)
    return _totp_page(request, who, secret=secret, qr=qr_svg(uri, 4))


@post("/desk/totp/confirm", sync_to_thread=True, include_in_schema=False)
def confirm_totp(request: Request[Any, Any, State], data: Form) -> Response[Any]:
    """Finish enrolment with the app's first code (``POST /v1/me/totp/confirm``)."""
    who = staff_or_refusal(request)
    if not isinstance(who, Principal):
        return who
    try:
        accounts_of(request).confirm_totp(who, data.get("code", "").strip())
    except AccountsError as exc:
        return refusal(request, exc, "desk/totp.html", who, enrolled=False, pending=True)
    return Redirect("/desk/totp?done=enrolled", status_code=303)


STAFF_HANDLERS = [
    staff,
    add_staff,
    revoke_staff,
    reset_totp,
    totp_page,
    begin_totp,
    confirm_totp,
]
