"""The ground of the accounts use cases: the store, the data key, the ledger port, the clock
and the security policy; creating users and granting roles; input checks shared by all."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from accounts import passwords
from accounts.access_cache import AccessCache
from accounts.errors import (
    Choices,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    Words,
)
from accounts.model import (
    STAFF_ROLES,
    Bank,
    Principal,
    Role,
    User,
)
from accounts.protection import (
    Protector,
)
from accounts.storage import (
    AccountsStore,
    Tx,
    banks,
    organisations,
    role_grants,
    users,
)
from accounts.tokens import ONE_TIME_PREFIX, new_id, new_secret
from ledger import LedgerPort
from ledger.config import ConfigError

BANK_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}\Z")


USERNAME = re.compile(r"^[A-Za-z0-9._@+-]{3,64}\Z")


MAX_PAGE = 200


@dataclass(frozen=True)
class SecurityPolicy:
    session_ttl: timedelta = timedelta(hours=12)
    desk_session_ttl: timedelta = timedelta(hours=4)  # staff, admins and auditors
    account_failures_before_lock: int = 5
    account_lock_base: timedelta = timedelta(seconds=30)
    account_lock_max: timedelta = timedelta(minutes=15)
    client_attempts_per_window: int = 20
    client_window_seconds: int = 300
    # A one-time password an administrator issued works this long, only to choose a new one.
    one_time_password_ttl: timedelta = timedelta(hours=72)
    # A TOTP enrolment code an administrator issued works this long, once.
    enrolment_code_ttl: timedelta = timedelta(hours=72)
    # Searches of members by phone or ID number one login makes in a window: a busy desk looks
    # up a person every minute or two, running through masked numbers takes thousands.
    member_searches_per_window: int = 30
    member_search_window_seconds: int = 600

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SecurityPolicy:
        """The defaults, with ``TIMEBANK_MEMBER_SEARCHES`` (1 to 10000) searches per
        ``TIMEBANK_MEMBER_SEARCH_WINDOW_SECONDS`` (1 to 86400) when they are set."""
        return cls(
            member_searches_per_window=_whole_number(
                env, "TIMEBANK_MEMBER_SEARCHES", cls.member_searches_per_window, 10_000
            ),
            member_search_window_seconds=_whole_number(
                env,
                "TIMEBANK_MEMBER_SEARCH_WINDOW_SECONDS",
                cls.member_search_window_seconds,
                86_400,
            ),
        )

    def lock_after(self, failures: int) -> timedelta | None:
        """How long a name stays locked after ``failures`` failed logins in a row: none before
        ``account_failures_before_lock``, then doubling from ``account_lock_base`` up to
        ``account_lock_max`` (an attacker can slow a victim's logins, never lock her out)."""
        over = failures - self.account_failures_before_lock
        if over < 0:
            return None
        lock: timedelta = self.account_lock_base * (2 ** min(over, 16))
        return min(lock, self.account_lock_max)


def _whole_number(env: Mapping[str, str], name: str, default: int, most: int) -> int:
    """Setting ``name`` from ``env``: a whole number from 1 to ``most``; ``default`` when unset
    or empty. Anything else stops the server at start, naming the variable."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= most:
        raise ConfigError(f"{name} must be a whole number from 1 to {most}")
    return int(raw)


@dataclass(frozen=True)
class NewUser:
    user: User
    one_time_password: str | None


def utc_now() -> datetime:
    return datetime.now(UTC)


def user_id_of(principal: Principal) -> str:
    if principal.user_id is None:
        raise Forbidden("this needs a personal login, not an API key")
    return principal.user_id


def clean_text(
    value: Any, field: str, max_length: int, *, multiline: bool = False, called: Words | None = None
) -> str:
    """Trimmed, non-empty text of at most ``max_length`` characters, without control
    characters (names, reasons); ``multiline`` text (notes) may also hold line breaks and tabs.
    The one rule for free text, shared by accounts and care. A refusal names the field by
    ``called`` where its own name says too little (an organisation's ``name`` is no person's)."""
    what = called or Words(field)
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("%(what)s must not be empty", field=field, what=what)
    value = value.strip()
    if len(value) > max_length:
        raise InvalidInput(
            "%(what)s must be at most %(most)s characters", field=field, what=what, most=max_length
        )
    allowed = "\n\r\t" if multiline else ""
    if any(ord(c) < 0x20 and c not in allowed for c in value):
        raise InvalidInput("%(what)s must not contain control characters", field=field, what=what)
    return str(value)


def optional_text(
    value: Any, field: str, max_length: int, *, multiline: bool = False
) -> str | None:
    """``clean_text``, or None when nothing (or only blanks) was given."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return clean_text(value, field, max_length, multiline=multiline)


def parse_enum(kind: Any, value: Any, field: str) -> Any:
    try:
        return kind(value)
    except ValueError as exc:
        allowed = Choices(str(v) for v in kind)
        raise InvalidInput(
            "%(field)s must be one of: %(allowed)s", field=field, allowed=allowed
        ) from exc


class AccountsBase:
    """The base of the accounts use cases: what they share, and how users and grants are made."""

    def __init__(
        self,
        store: AccountsStore,
        protector: Protector,
        ledger: LedgerPort,
        clock: Callable[[], datetime] = utc_now,
        policy: SecurityPolicy | None = None,
    ) -> None:
        self.store = store
        self.protector = protector
        self.ledger = ledger
        self.clock = clock
        self.policy = policy or SecurityPolicy()
        self.access_cache = AccessCache()

    def create_bank(self, bank_id: str, name: str) -> Bank:
        if not BANK_ID.match(bank_id):
            raise InvalidInput("bank id must be 1-32 of a-z, 0-9 and '-'", field="bank_id")
        name = clean_text(name, "name", 200)
        now = self.clock()
        with self.store.transaction() as tx:
            if tx.get(banks, bank_id):
                raise Conflict("bank %(bank)s already exists", field="bank_id", bank=bank_id)
            tx.insert(banks, id=bank_id, name=name, created_at=now)
        return Bank(bank_id, name, now)

    def create_user(
        self,
        bank_id: str,
        username: str,
        role: Role,
        org_id: str | None = None,
        password: str | None = None,
        granted_by: str | None = None,
    ) -> NewUser:
        """An operator creates a login with one role; prints a one-time password if none given."""
        with self.store.transaction() as tx:
            if not tx.get(banks, bank_id):
                raise NotFound("no bank %(id)s", id=bank_id, field="bank_id")
            if role in STAFF_ROLES:
                org = tx.get(organisations, org_id) if org_id else None
                if org is None or org.bank_id != bank_id:
                    raise InvalidInput(
                        "%(role)s needs --org of bank %(bank)s",
                        field="org_id",
                        role=role,
                        bank=bank_id,
                    )
            elif org_id is not None:
                raise InvalidInput(
                    "%(role)s is not an organisation role", field="org_id", role=role
                )
            if role in (Role.VOLUNTEER, Role.ELDER, Role.FAMILY_PROXY):
                raise InvalidInput(
                    "volunteers, elders and family members are registered as members",
                    field="role",
                )
            new = self._new_user(tx, bank_id, username, password)
            self._grant(tx, new.user.id, role, bank_id, org_id, None, granted_by)
        return new

    @staticmethod
    def _check_username(username: str) -> None:
        if not isinstance(username, str) or not USERNAME.match(username):
            raise InvalidInput("username must be 3-64 letters, digits or ._@+-", field="username")

    @classmethod
    def _check_new_login(cls, username: str, password: str) -> None:
        """What a new login's name and password must be, whoever else exists."""
        cls._check_username(username)
        passwords.check_policy(password, username)

    def _new_user(self, tx: Tx, bank_id: str, username: str, password: str | None) -> NewUser:
        self._check_username(username)
        if tx.first(users, users.c.username == username):
            raise Conflict("username %(name)s is taken", field="username", name=username)
        one_time = None
        if password is None:
            one_time = new_secret(ONE_TIME_PREFIX)
            password = one_time
        else:
            passwords.check_policy(password, username)
        user = User(new_id(), bank_id, username, self.clock())
        one_time_until = user.created_at + self.policy.one_time_password_ttl if one_time else None
        tx.insert(
            users,
            id=user.id,
            bank_id=bank_id,
            username=username,
            password_hash=passwords.hash_password(password),
            created_at=user.created_at,
            failed_logins=0,
            one_time_until=one_time_until,
        )
        return NewUser(user, one_time)

    def _grant(
        self,
        tx: Tx,
        user_id: str,
        role: Role,
        bank_id: str,
        org_id: str | None,
        member_id: str | None,
        granted_by: str | None,
    ) -> None:
        tx.insert(
            role_grants,
            id=new_id(),
            user_id=user_id,
            role=str(role),
            bank_id=bank_id,
            org_id=org_id,
            member_id=member_id,
            granted_by=granted_by,
            granted_at=self.clock(),
        )
