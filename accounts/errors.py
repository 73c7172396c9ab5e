"""Errors raised by accounts (the statuses below are the web layer's, ``web.statuses``).

The hierarchy::

    AccountsError
    ├── InvalidInput            bad value for a named field (400/422)
    │   └── WeakPassword        too short or a common password
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
"""

from __future__ import annotations


class AccountsError(Exception):
    slug = "accounts-error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InvalidInput(AccountsError):
    slug = "invalid-input"


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
        super().__init__(f"too many login attempts; try again in {retry_after} seconds")
        self.retry_after = retry_after
