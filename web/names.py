"""How the pages name the elders a family member acts for. A proxy reads her record masked
(王*英), so two elders can read the same (张* and 张*); where they do, the name gets what tells
them apart from what the proxy already reads of each (``GET /v1/members/{id}``, masked): the
year she was born and the organisation serving her, then her masked phone (138****2222) if
those are the same too. Nothing is unmasked, and a name nobody shares is shown alone."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from contextlib import suppress
from typing import Any

from litestar import Request
from litestar.datastructures import State

from accounts.errors import AccountsError
from accounts.member_views import MemberView
from accounts.model import Principal
from web.i18n import gettext_for
from web.pages import language_of
from web.session import accounts_of


def proxied_names(
    request: Request[Any, Any, State], principal: Principal, member_ids: Iterable[str]
) -> dict[str, str]:
    """Each member's name as the caller sees it, told apart where two read the same."""
    _ = gettext_for(language_of(request))
    views: dict[str, MemberView | None] = {}
    for member_id in member_ids:
        try:
            views[member_id] = accounts_of(request).get_member(principal, member_id)
        except AccountsError:
            views[member_id] = None
    names = {m: _masked_name(view) or _("an elder") for m, view in views.items()}
    shared = {name for name, n in Counter(names.values()).items() if n > 1}
    details = {
        m: _details(request, principal, views[m]) if names[m] in shared else [] for m in names
    }
    labels = {m: _label(request, names[m], details[m]) for m in names}
    alike = {label for label, n in Counter(labels.values()).items() if n > 1}
    return {
        m: _label(request, names[m], details[m] + _phone(views[m])) if labels[m] in alike else label
        for m, label in labels.items()
    }


def _masked_name(view: MemberView | None) -> str | None:
    name = view.personal.get("name") if view else None
    return name if isinstance(name, str) and name else None


def _details(
    request: Request[Any, Any, State], principal: Principal, view: MemberView | None
) -> list[str]:
    """The year she was born and the organisation serving her, as a proxy reads them."""
    _ = gettext_for(language_of(request))
    found: list[str] = []
    if view is None:
        return found
    year = view.personal.get("birth_year")
    if isinstance(year, int):
        found.append(_("born %(year)s", year=year))
    if view.member.org_id is not None:
        with suppress(AccountsError):
            found.append(accounts_of(request).get_org(principal, view.member.org_id).name)
    return found


def _phone(view: MemberView | None) -> list[str]:
    """The masked phone (138****2222), for two born the same year at one centre."""
    phone = view.personal.get("phone") if view else None
    return [phone] if isinstance(phone, str) and phone else []


def _label(request: Request[Any, Any, State], name: str, details: list[str]) -> str:
    if not details:
        return name
    if language_of(request) == "zh-CN":
        return f"{name}（{' · '.join(details)}）"
    return f"{name} ({' · '.join(details)})"
