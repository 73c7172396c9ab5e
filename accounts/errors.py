"""Errors raised by accounts (the statuses below are the web layer's, ``web.statuses``).

The hierarchy::

    AccountsError
    ├── InvalidInput            bad value for a named field (400/422)
    │   ├── WeakPassword        too short or a common password
    │   └── InvalidFields       several of them in one form, every one named
    ├── NotFound                no such object, or the caller may not know it exists (404)
    ├── Forbidden               the caller is known but may not do this (403)
    │   ├── SecondFactorRequired   the action needs a session opened with TOTP
    │   ├── EnrolmentCodeRequired  enrolling TOTP needs an administrator's enrolment code
    │   └── PasswordChangeRequired a one-time password must be changed before anything else
    ├── Conflict                the object is not in a state that allows this (409)
    ├── SearchThrottled         too many searches by phone or ID number; ``retry_after`` (429)
    └── AuthenticationError     who the caller is could not be established (401)
        ├── InvalidCredentials  wrong username or password (never says which)
        ├── TokenInvalid        unknown, expired or revoked token or key
        └── LoginThrottled      too many attempts; ``retry_after`` seconds (429)

A message is English with ``%(name)s`` where a value goes, the values given apart
(``InvalidInput("minutes must be 1-%(most)s", field="minutes", most=120)``), so the pages and
the API translate the message whole and fill the values in after (``web.i18n.describe_error``).
``%(field)s`` is the field at fault, named in the reader's language where it is shown;
``fields`` every field the refusal is about (a date of birth in the ID number that is not the
one typed is about both).
"""

from __future__ import annotations

from collections.abc import Sequence


class Words(str):
    """A value of a message that is words to translate where it is shown (what a field is
    called: ``Words("organisation name")``), unlike data such as a number or a code."""


class Choices(tuple[str, ...]):
    """The codes a field allows (``Choices(f.value for f in PriorityFlag)``): in English as
    they are, comma-separated; where a page labels them, a translation lists the labels."""

    def __str__(self) -> str:
        return ", ".join(self)


class AccountsError(Exception):
    slug = "accounts-error"

    def __init__(self, message: str, *, field: str | None = None, **values: object) -> None:
        self.template = message
        self.values: dict[str, object] = {"field": Words(field or ""), **values}
        try:
            super().__init__(message % self.values if "%(" in message else message)
        except (KeyError, ValueError, TypeError):  # someone's input quoted, holding a stray %
            super().__init__(message)
        self.field = field
        self.fields: tuple[str, ...] = (field,) if field else ()


class InvalidInput(AccountsError):
    slug = "invalid-input"


class InvalidFields(InvalidInput):
    """Several problems with one form, in one answer, so the person fixes them all at once:
    ``problems`` in the form's order. ``field`` and the message's template and values are the
    first problem's; ``fields`` every field at fault; ``str()`` every message."""

    def __init__(self, problems: Sequence[InvalidInput]) -> None:
        first = problems[0]
        values = {k: v for k, v in first.values.items() if k != "field"}
        super().__init__(first.template, field=first.field, **values)
        self.problems = tuple(problems)
        self.fields = tuple(dict.fromkeys(f for p in problems for f in p.fields))
        self.args = ("; ".join(str(p) for p in problems),)

    @staticmethod
    def raise_any(problems: Sequence[InvalidInput]) -> None:
        """Raise the one problem as it is, several as one ``InvalidFields``; none, nothing."""
        if len(problems) == 1:
            raise problems[0]
        if problems:
            raise InvalidFields(problems)


class WeakPassword(InvalidInput):
    slug = "weak-password"


class NotFound(AccountsError):
    slug = "not-found"


class Forbidden(AccountsError):
    slug = "forbidden"


class SecondFactorRequired(Forbidden):
    slug = "second-factor-required"


class EnrolmentCodeRequired(Forbidden):
    slug = "enrolment-code-required"


class PasswordChangeRequired(Forbidden):
    slug = "password-change-required"


class Conflict(AccountsError):
    slug = "conflict"


class NumberOnFile(Conflict):
    """Staff registering, or approving, a phone or ID number already on file: the refusal
    tells that the number is in the bank, so it counts as a search by number."""


class SearchThrottled(AccountsError):
    """A login searched members by phone or ID number more often than the policy allows."""

    slug = "search-throttled"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"too many searches by phone or ID number; try again in {retry_after} seconds",
            field="search",
        )
        self.retry_after = retry_after


class AuthenticationError(AccountsError):
    slug = "unauthenticated"


class InvalidCredentials(AuthenticationError):
    slug = "invalid-credentials"


class TokenInvalid(AuthenticationError):
    slug = "token-invalid"


class LoginThrottled(AuthenticationError):
    slug = "login-throttled"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "too many login attempts; try again in %(seconds)s seconds", seconds=retry_after
        )
        self.retry_after = retry_after
