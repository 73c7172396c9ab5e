"""Reading entry bodies and postings for the kinds' types, each failure naming its field."""

from __future__ import annotations

from collections.abc import Mapping

from ledger.entry import JSON, EntryRequest, Posting
from ledger.errors import N_, MalformedEntry
from ledger.postings import parse_account


def weighted(minutes: int, weight_permille: int) -> int:
    """What ``minutes`` of a service with weight ``weight_permille`` (‰) are worth: rounded
    half up to a whole minute, integers only. The one formula of deposits and holds."""
    return (minutes * weight_permille + 500) // 1000


def of_kind(request: EntryRequest, kind: str) -> None:
    if request.kind != kind:
        raise MalformedEntry(
            "entry is a %(kind)s, not a %(wanted)s", field="kind", kind=request.kind, wanted=kind
        )


def text(body: Mapping[str, JSON], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise MalformedEntry("body.%(name)s must be a string", field=f"body.{name}", name=name)
    return value


def maybe_text(body: Mapping[str, JSON], name: str) -> str | None:
    return None if body.get(name) is None else text(body, name)


def whole(body: Mapping[str, JSON], name: str, *, default: int | None = None) -> int:
    value = body.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise MalformedEntry(
            "body.%(name)s must be a whole number ≥ 0", field=f"body.{name}", name=name
        )
    return value


def flag(body: Mapping[str, JSON], name: str) -> bool:
    value = body.get(name)
    if not isinstance(value, bool):
        raise MalformedEntry("body.%(name)s must be true or false", field=f"body.{name}", name=name)
    return value


def optional(**fields: JSON) -> dict[str, JSON]:
    """Body fields without those that are None (the entry leaves them out)."""
    return {name: value for name, value in fields.items() if value is not None}


def moved(request: EntryRequest, role: str, sign: int) -> Posting:
    """The one posting of ``request`` to an account of ``role`` in the direction ``sign``."""
    found = [
        p
        for p in request.postings
        if parse_account(p.account)[1] == role and (p.minutes > 0) == (sign > 0)
    ]
    if len(found) != 1:
        message = (
            N_("a %(kind)s has one credit of a %(role)s account")
            if sign > 0
            else N_("a %(kind)s has one debit of a %(role)s account")
        )
        raise MalformedEntry(message, field="postings", kind=request.kind, role=role)
    return found[0]


def pair(request: EntryRequest, debit: str, credit: str) -> tuple[Posting, Posting]:
    """The two postings of an entry that moves minutes from a ``debit`` to a ``credit`` role."""
    if len(request.postings) != 2:
        raise MalformedEntry("a %(kind)s has two postings", field="postings", kind=request.kind)
    out, into = moved(request, debit, -1), moved(request, credit, +1)
    if out.minutes != -into.minutes:
        raise MalformedEntry(
            "a %(kind)s's postings do not balance", field="postings", kind=request.kind
        )
    return out, into


def bank_of(account: str) -> str:
    return parse_account(account)[0]
