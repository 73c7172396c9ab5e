"""The pages everyone shares: the layout's context, login, logout, password, sign-up and the
language / text-size / 长辈版 toggles. Every form posts plain HTML (works without JavaScript)
and carries Litestar's CSRF token; every rule is the service layer's, as for ``/v1``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from litestar import Request, Response, get, post
from litestar.datastructures import Cookie, State
from litestar.enums import HttpMethod, RequestEncodingType
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotFoundException,
    PermissionDeniedException,
)
from litestar.params import Body, QueryParameter
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.template.config import TemplateConfig

from accounts.errors import AccountsError, AuthenticationError, InvalidCredentials, SearchThrottled
from accounts.model import MemberStatus, Principal, Role
from accounts.service import PersonalInput
from care.errors import CareError
from web.i18n import (
    LANGUAGE_COOKIE,
    LANGUAGES,
    care_detail,
    describe,
    describe_error,
    gettext_for,
    negotiate,
)
from web.session import accounts_of, clear_session, session_cookie, viewer
from web.statuses import status_of

TEMPLATES = TemplateConfig(
    directory=Path(__file__).parent / "templates", engine=JinjaTemplateEngine
)
SIZE_COOKIE = "tb_size"
ELDER_COOKIE = "tb_elder"
SIZES = ("1", "2", "3")
YEAR = 365 * 24 * 3600
Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]


@dataclass(frozen=True)
class Centre:
    name: str
    phone: str | None


def language_of(request: Request[Any, Any, Any]) -> str:
    return negotiate(request.cookies.get(LANGUAGE_COOKIE), request.headers.get("accept-language"))


def centre_of(
    request: Request[Any, Any, State], principal: Principal | None, about: str | None = None
) -> Centre | None:
    """The organisation whose number the "call the centre" slot shows: on a page about a member
    (an elder her family acts for), the one serving her, else the caller's own."""
    if principal is None or principal.user_id is None:
        return None
    accounts = accounts_of(request)
    org_id = None
    member_id = about or principal.member_id
    if member_id is not None:
        org_id = accounts.member(member_id).org_id
    if org_id is None:
        org_id = next(iter(sorted(principal.orgs())), None)
    if org_id is None:
        return None
    org = accounts.get_org(principal, org_id)
    return Centre(org.name, org.phone)


def member_status(request: Request[Any, Any, State], principal: Principal) -> MemberStatus | None:
    if principal.member_id is None:
        return None
    return accounts_of(request).member(principal.member_id).status


def wants_elder_mode(request: Request[Any, Any, Any], principal: Principal | None) -> bool:
    """长辈版 is the default for elders and their families; anyone can switch it on or off."""
    chosen = request.cookies.get(ELDER_COOKIE)
    if chosen in ("0", "1"):
        return chosen == "1"
    return principal is not None and (principal.has(Role.ELDER) or principal.has(Role.FAMILY_PROXY))


def gettable(request: Request[Any, Any, Any], target: str) -> bool:
    """Whether ``target`` is a page of the app that answers GET, not a path only a form posts
    to: landing there after logging in or a header button would be a 405 and a lost action."""
    try:
        request.app.asgi_router.handle_routing(urlsplit(target).path, HttpMethod.GET)
    except (NotFoundException, MethodNotAllowedException):
        return False
    return True


def safe_next(request: Request[Any, Any, Any], target: str | None) -> str:
    """Only same-site paths of pages: never an open redirect, never a form's post-only path."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    return target if gettable(request, target) else "/"


def page_to_return_to(request: Request[Any, Any, Any]) -> str:
    """Where logging in again or a header button (text size, language, 长辈版) leads back to:
    this page when it was got, else the page whose form was posted (the same-site Referer),
    so an answer to a post comes back as the page it was sent from; else the start."""
    if request.method in (HttpMethod.GET, HttpMethod.HEAD):
        url = urlsplit(str(request.url))
    else:
        url = urlsplit(request.headers.get("referer", ""))
        if url.netloc != request.url.netloc:
            return "/"
    return safe_next(request, url.path + (f"?{url.query}" if url.query else ""))


def render(
    request: Request[Any, Any, State],
    template: str,
    principal: Principal | None = None,
    status: int = 200,
    about: str | None = None,
    **context: Any,
) -> Template:
    """A page in the caller's language and text size; ``about`` is the member the page is
    about (checked by the caller), whose centre the call bar dials."""
    language = language_of(request)
    size = request.cookies.get(SIZE_COOKIE)
    base = {
        "_": gettext_for(language),
        "lang": language,
        "size": size if size in SIZES else "1",
        "elder": wants_elder_mode(request, principal),
        "principal": principal,
        "centre": centre_of(request, principal, about),
        "here": request.url.path,
        "return_to": page_to_return_to(request),
        "roles": Role,
    }
    base.update(context)
    return Template(
        template_name=template,
        context=base,
        status_code=status,
        headers={"cache-control": "no-store"},
    )


def refusal(
    request: Request[Any, Any, State],
    exc: AccountsError | CareError,
    template: str,
    principal: Principal | None = None,
    about: str | None = None,
    **context: Any,
) -> Template:
    """Show the form again with the service's refusal in the page's language."""
    language = language_of(request)
    if isinstance(exc, CareError):
        message = care_detail(exc, language)
    else:
        _, message = describe_error(exc, language)
    status = status_of(exc)
    page = render(
        request,
        template,
        principal,
        status=status,
        about=about,
        error=message,
        error_field=exc.field,
        error_fields=exc.fields if isinstance(exc, AccountsError) else (exc.field,),
        **context,
    )
    if isinstance(exc, SearchThrottled):
        page.headers["Retry-After"] = str(exc.retry_after)
    return page


def is_whole_day(a: datetime, b: datetime) -> bool:
    """Whether local times ``a``–``b`` are one whole calendar day, midnight to midnight (an
    elder's "any time that day")."""
    return a.time() == b.time() == time(0) and (b.date() - a.date()).days == 1


def to_login(request: Request[Any, Any, Any]) -> Redirect:
    """The login page, which comes back to this page (or, for a post, the page it came from:
    the action is redone from there, not lost to a 405)."""
    return Redirect(f"/login?next={quote(page_to_return_to(request))}", status_code=303)


# ---------------------------------------------------------------- pages


@get("/", sync_to_thread=True, include_in_schema=False)
def home(request: Request[Any, Any, State]) -> Template | Redirect:
    principal = viewer(request)
    if principal is None:
        return to_login(request)
    if principal.password_change_due:  # a one-time password: nothing else until it is changed
        return Redirect("/account", status_code=303)
    status = member_status(request, principal)
    if status is MemberStatus.PENDING or status is MemberStatus.REJECTED:
        return render(request, "pending.html", principal, rejected=status is MemberStatus.REJECTED)
    if principal.is_bank_admin:  # the bank's console (web/console.py)
        return Redirect("/console", status_code=303)
    if principal.has(Role.AUDITOR):  # the auditor's page (web/auditor.py)
        return Redirect("/audit", status_code=303)
    if principal.orgs():  # organisation staff and admins work at their desk
        return Redirect("/desk", status_code=303)
    return render(request, "home.html", principal)


@get("/login", sync_to_thread=True, include_in_schema=False)
def login_page(
    request: Request[Any, Any, State], next: Annotated[str | None, QueryParameter()] = None
) -> Template:
    return render(request, "login.html", viewer(request), next=safe_next(request, next))


@post("/login", sync_to_thread=True, include_in_schema=False)
def login(request: Request[Any, Any, State], data: Form) -> Template | Redirect:
    username = data.get("username", "").strip()
    target = safe_next(request, data.get("next"))
    try:
        result = accounts_of(request).login(
            username,
            data.get("password", ""),
            data.get("totp", "").strip() or None,
            request.client.host if request.client else "unknown",
        )
    except AccountsError as exc:
        # A sign-up not yet approved gets "wrong username or password" even with the right
        # password (no account oracle), so the hint about approval goes with that answer for
        # everyone; the answers given only after the right password (``field``) do without.
        unrecognised = isinstance(exc, InvalidCredentials) and exc.field is None
        return refusal(
            request, exc, "login.html", next=target, username=username, unrecognised=unrecognised
        )
    response = Redirect(target, status_code=303)
    response.cookies.append(session_cookie(request, result))
    return response


@post("/logout", sync_to_thread=True, include_in_schema=False)
def logout(request: Request[Any, Any, State]) -> Redirect:
    principal = viewer(request)
    if principal is not None:
        accounts_of(request).logout(principal)
    response = Redirect("/login", status_code=303)
    clear_session(response)
    return response


@post("/logout-all", sync_to_thread=True, include_in_schema=False)
def logout_all(request: Request[Any, Any, State]) -> Redirect:
    principal = viewer(request)
    if principal is not None:
        accounts_of(request).logout_everywhere(principal)
    response = Redirect("/login", status_code=303)
    clear_session(response)
    return response


@get("/account", sync_to_thread=True, include_in_schema=False)
def account(request: Request[Any, Any, State]) -> Template | Redirect:
    principal = viewer(request)
    if principal is None:
        return to_login(request)
    return render(request, "account.html", principal)


@post("/account/password", sync_to_thread=True, include_in_schema=False)
def change_password(request: Request[Any, Any, State], data: Form) -> Template | Redirect:
    principal = viewer(request)
    if principal is None:
        return to_login(request)
    try:
        accounts_of(request).change_password(
            principal, data.get("old_password", ""), data.get("new_password", "")
        )
    except AccountsError as exc:
        return refusal(request, exc, "account.html", principal)
    return render(request, "account.html", principal, changed=True)


@get("/register", sync_to_thread=True, include_in_schema=False)
def register_page(request: Request[Any, Any, State]) -> Template:
    return render(request, "register.html", viewer(request), **_register_choices(request))


def _register_choices(request: Request[Any, Any, State]) -> dict[str, Any]:
    choices = accounts_of(request).organisations_taking_volunteers()
    return {"choices": [(f"{bank.id}/{org.id}", bank.name, org.name) for bank, org in choices]}


@post("/register", sync_to_thread=True, include_in_schema=False)
def register(request: Request[Any, Any, State], data: Form) -> Template | Redirect:
    bank_id, _, org_id = data.get("organisation", "").partition("/")
    form = {k: data.get(k, "") for k in ("organisation", "name", "phone", "username")}
    try:
        accounts_of(request).self_register(
            bank_id,
            org_id,
            form["username"].strip(),
            data.get("password", ""),
            PersonalInput(name=form["name"], phone=form["phone"].strip() or None),
        )
    except AccountsError as exc:
        return refusal(request, exc, "register.html", form=form, **_register_choices(request))
    # The same page whether the name was free or taken (``self_register``); logging in waits
    # for the organisation's approval.
    return render(request, "pending.html", None, received=form["username"].strip())


@post("/prefs", include_in_schema=False)
async def preferences(request: Request[Any, Any, State], data: Form) -> Redirect:
    """The language, text-size and 长辈版 toggles, remembered for a year in cookies."""
    response = Redirect(safe_next(request, data.get("next")), status_code=303)
    chosen = {
        LANGUAGE_COOKIE: data.get("lang") if data.get("lang") in LANGUAGES else None,
        SIZE_COOKIE: data.get("size") if data.get("size") in SIZES else None,
        ELDER_COOKIE: data.get("elder") if data.get("elder") in ("0", "1") else None,
    }
    for key, value in chosen.items():
        if value is not None:
            response.cookies.append(
                Cookie(key=key, value=value, path="/", max_age=YEAR, samesite="lax", httponly=True)
            )
    return response


# ---------------------------------------------------------------- errors as pages


def error_page(request: Request[Any, Any, State], exc: Exception) -> Response[Any]:
    """Refusals on pages are pages too, in the page's language (the API answers problems)."""
    language = language_of(request)
    _ = gettext_for(language)
    if isinstance(exc, AuthenticationError):
        return to_login(request)
    if isinstance(exc, CareError):
        status, title, detail = (
            status_of(exc),
            _("Not allowed"),
            care_detail(exc, language),
        )
    elif isinstance(exc, AccountsError):
        status = status_of(exc)
        title, detail = describe_error(exc, language)
    elif isinstance(exc, PermissionDeniedException) and "CSRF" in str(exc.detail):
        status, (title, detail) = 403, describe("csrf", "the form has expired", language)
        # The page the form was on, opened again with a fresh form (and, for the ask form's
        # check step, her choices in its address): nothing she chose is lost.
        again = page_to_return_to(request)
        return render(
            request,
            "error.html",
            viewer(request),
            status=status,
            title=title,
            detail=detail,
            again=again if again != "/" else None,
        )
    elif isinstance(exc, NotFoundException):
        status, (title, detail) = 404, describe("not-found", "no such page", language)
    elif isinstance(exc, MethodNotAllowedException):  # a form's address opened as a page
        status, title = 405, _("This page cannot be opened here")
        detail = _("This address only takes a form's answer. Open the page from the start.")
    elif isinstance(exc, HTTPException):
        status, title, detail = exc.status_code, str(exc.detail), str(exc.detail)
    else:
        raise exc
    return render(request, "error.html", viewer(request), status=status, title=title, detail=detail)


PAGE_HANDLERS = [
    home,
    login_page,
    login,
    logout,
    logout_all,
    account,
    change_password,
    register_page,
    register,
    preferences,
]
