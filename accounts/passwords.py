"""Passwords: argon2id with OWASP parameters, NIST-style policy (length and a deny list).

No composition rules: length of at least 8 characters and not one of the common passwords
(``common_passwords.txt``, compared case-insensitively) or the username itself.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from accounts.errors import WeakPassword

MIN_LENGTH = 8
MAX_LENGTH = 256

# OWASP Password Storage Cheat Sheet: argon2id, m=19 MiB, t=2, p=1.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# A hash of a random value, verified against when a user does not exist, so that
# unknown usernames cost as much time as wrong passwords.
_DUMMY_HASH = _HASHER.hash("timebank-no-such-user-7f1c")


@cache
def common_passwords() -> frozenset[str]:
    text = resources.files("accounts").joinpath("common_passwords.txt").read_text("utf-8")
    return frozenset(
        line.strip().lower()
        for line in text.splitlines()
        if line.strip() and not line.startswith("#")
    )


def check_policy(password: str, username: str | None = None, field: str = "password") -> None:
    if not isinstance(password, str) or len(password) < MIN_LENGTH:
        raise WeakPassword("password must be at least %(n)s characters", field=field, n=MIN_LENGTH)
    if len(password) > MAX_LENGTH:
        raise WeakPassword("password must be at most %(n)s characters", field=field, n=MAX_LENGTH)
    lowered = password.lower()
    if lowered in common_passwords():
        raise WeakPassword("password is too common; choose another", field=field)
    if username and lowered == username.lower():
        raise WeakPassword("password must not be the username", field=field)


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    return _HASHER.check_needs_rehash(stored_hash)
