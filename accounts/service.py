"""Use cases for banks, organisations, members and credentials, each checked against the caller.

Every method that acts for someone takes the calling ``Principal`` first and checks role **and**
scope before touching anything: own records, own organisation, own bank. Objects the caller
may not know about are reported as ``NotFound``, so existence does not leak across scopes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from accounts import passwords, totp
from accounts.errors import (
    AccountsError,
    Conflict,
    Forbidden,
    InvalidCredentials,
    InvalidInput,
    LoginThrottled,
    NotFound,
    SecondFactorRequired,
    TokenInvalid,
)
from accounts.model import (
    STAFF_ROLES,
    Bank,
    DeviceKey,
    Flag,
    Grant,
    MemberStatus,
    Organisation,
    OrgKind,
    PartnerKey,
    PartnerScope,
    Principal,
    PriorityFlag,
    Relation,
    RelativeLink,
    RelativeStatus,
    Role,
    User,
)
from accounts.model import Member as MemberRecord
from accounts.protection import (
    Protector,
    mask_address,
    mask_id_number,
    mask_name,
    mask_phone,
    normalise_id_number,
    normalise_phone,
)
from accounts.storage import (
    AccountsStore,
    Tx,
    banks,
    device_keys,
    member_flags,
    member_personal,
    members,
    organisations,
    partner_keys,
    pii_access,
    relatives,
    role_grants,
    sessions,
    users,
    utc,
)
from accounts.tokens import PARTNER_PREFIX, SESSION_PREFIX, new_id, new_secret, secret_hash
from ledger import AppendResult
from ledger.entry import EntryRequest
from ledger.postings import member_account

BANK_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
USERNAME = re.compile(r"^[A-Za-z0-9._@+-]{3,64}$")
ORG_PHONE = re.compile(r"^\+?[0-9][0-9 -]{1,30}[0-9]$")
MAX_PAGE = 200


REVEAL_REASON_MIN = 4  # "家访" says too little; "安排上门家访" says why


class LedgerPort(Protocol):
    """What accounts needs of the log: append an entry (idempotent by id)."""

    def append(self, request: EntryRequest) -> AppendResult: ...


@dataclass(frozen=True)
class SecurityPolicy:
    session_ttl: timedelta = timedelta(hours=12)
    desk_session_ttl: timedelta = timedelta(hours=4)  # staff, admins and auditors
    account_failures_before_lock: int = 5
    account_lock_base: timedelta = timedelta(seconds=30)
    account_lock_max: timedelta = timedelta(minutes=15)
    client_attempts_per_window: int = 20
    client_window_seconds: int = 300


@dataclass(frozen=True)
class MemberView:
    """A member as one caller may see it: personal data masked unless ``revealed``."""

    member: MemberRecord
    personal: dict[str, Any]
    revealed: bool
    flags: tuple[Flag, ...] = ()


@dataclass(frozen=True)
class LoginResult:
    token: str
    expires_at: datetime
    principal: Principal


@dataclass(frozen=True)
class NewUser:
    user: User
    one_time_password: str | None


@dataclass(frozen=True)
class NewMember:
    member: MemberRecord
    user: User | None = None


@dataclass
class PersonalInput:
    """Personal data as a caller supplies it; validated here, not in the web layer."""

    name: str
    phone: str | None = None
    id_number: str | None = None
    address: str | None = None
    birth_date: date | None = None
    health_notes: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _now() -> datetime:
    return datetime.now(UTC)


class AccountsService:
    def __init__(
        self,
        store: AccountsStore,
        protector: Protector,
        ledger: LedgerPort,
        clock: Callable[[], datetime] = _now,
        policy: SecurityPolicy | None = None,
    ) -> None:
        self.store = store
        self.protector = protector
        self.ledger = ledger
        self.clock = clock
        self.policy = policy or SecurityPolicy()

    # ================================================================ operators (CLI)

    def create_bank(self, bank_id: str, name: str) -> Bank:
        if not BANK_ID.match(bank_id):
            raise InvalidInput("bank id must be 1-32 of a-z, 0-9 and '-'", field="bank_id")
        name = _text(name, "name", 200)
        now = self.clock()
        with self.store.transaction() as tx:
            if tx.get(banks, bank_id):
                raise Conflict(f"bank {bank_id} already exists", field="bank_id")
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
                raise NotFound(f"no bank {bank_id}", field="bank_id")
            if role in STAFF_ROLES:
                org = tx.get(organisations, org_id) if org_id else None
                if org is None or org.bank_id != bank_id:
                    raise InvalidInput(f"{role} needs --org of bank {bank_id}", field="org_id")
            elif org_id is not None:
                raise InvalidInput(f"{role} is not an organisation role", field="org_id")
            if role in (Role.VOLUNTEER, Role.ELDER, Role.FAMILY_PROXY):
                raise InvalidInput(
                    "volunteers, elders and family members are registered as members",
                    field="role",
                )
            new = self._new_user(tx, bank_id, username, password)
            self._grant(tx, new.user.id, role, bank_id, org_id, None, granted_by)
        return new

    def issue_token(self, username: str) -> LoginResult:
        """Operators issue a session token for a user (e.g. for a kiosk), no password needed."""
        with self.store.transaction() as tx:
            row = tx.first(users, users.c.username == username)
            if row is None or row.disabled_at is not None:
                raise NotFound(f"no active user {username}", field="user")
            return self._open_session(tx, row, second_factor=False)

    # ================================================================ authentication

    def login(
        self, username: str, password: str, totp_code: str | None, client: str
    ) -> LoginResult:
        now = self.clock()
        client_key = hashlib.sha256(f"client:{client}".encode()).hexdigest()
        with self.store.transaction() as tx:
            failures = tx.throttle_count(client_key, now, self.policy.client_window_seconds)
            if failures >= self.policy.client_attempts_per_window:
                raise LoginThrottled(self.policy.client_window_seconds)
            row = (
                tx.first(users, users.c.username == username) if isinstance(username, str) else None
            )
            locked_until = utc(row.locked_until) if row is not None else None
            if locked_until is not None and locked_until > now:
                raise LoginThrottled(int((locked_until - now).total_seconds()) + 1)
        ok = passwords.verify_password(row.password_hash if row else None, password)
        failure: AccountsError | None = None
        with self.store.transaction() as tx:
            if row is None or row.disabled_at is not None or not ok:
                tx.throttle(client_key, now, self.policy.client_window_seconds)
                if row is not None:
                    self._count_failure(tx, row.id, now)
                failure = InvalidCredentials("wrong username or password")
            elif row.totp_sealed is None and totp_code is not None:
                failure = InvalidInput("this account has no second factor enrolled", field="totp")
            else:
                second_factor = False
                if row.totp_sealed is not None and totp_code is not None:
                    secret = self.protector.open(row.totp_sealed, row.id, "totp")
                    fresh = tx.get(users, row.id)
                    last = fresh.totp_last_step if fresh is not None else None
                    step = totp.accepted_step(secret, totp_code, now.timestamp(), last)
                    if step is None:
                        self._count_failure(tx, row.id, now)
                        failure = InvalidCredentials("wrong or reused one-time code", field="totp")
                    else:
                        tx.update(users, row.id, totp_last_step=step)
                        second_factor = True
                if failure is None:
                    tx.update(users, row.id, failed_logins=0, locked_until=None)
                    if row.password_hash and passwords.needs_rehash(row.password_hash):
                        tx.update(users, row.id, password_hash=passwords.hash_password(password))
                    result = self._open_session(tx, row, second_factor)
        # Raised after the commit, so failed attempts are counted even though the login fails.
        if failure is not None:
            raise failure
        return result

    def _count_failure(self, tx: Tx, user_id: str, now: datetime) -> None:
        """Lock an account for a short, growing, capped time: an attacker can slow a victim's
        logins but never lock them out for more than ``account_lock_max`` at a time."""
        row = tx.get(users, user_id)
        assert row is not None
        failures = int(row.failed_logins or 0) + 1
        locked_until = None
        over = failures - self.policy.account_failures_before_lock
        if over >= 0:
            lock = min(
                self.policy.account_lock_base * (2 ** min(over, 16)), self.policy.account_lock_max
            )
            locked_until = now + lock
        tx.update(users, row.id, failed_logins=failures, locked_until=locked_until)

    def _open_session(self, tx: Tx, row: Any, second_factor: bool) -> LoginResult:
        token = new_secret(SESSION_PREFIX)
        now = self.clock()
        session_id = new_id()
        principal = self._principal(tx, row, second_factor, session_id)
        ttl = self.policy.desk_session_ttl if principal.works_at_a_desk else self.policy.session_ttl
        expires = now + ttl
        tx.insert(
            sessions,
            id=session_id,
            token_hash=secret_hash(token),
            user_id=row.id,
            created_at=now,
            expires_at=expires,
            second_factor=second_factor,
        )
        return LoginResult(token, expires, principal)

    def authenticate(self, token: str) -> Principal:
        if token.startswith(PARTNER_PREFIX):
            return self._authenticate_partner(token)
        now = self.clock()
        with self.store.snapshot() as tx:
            session = tx.first(sessions, sessions.c.token_hash == secret_hash(token))
            if session is None or session.revoked_at is not None:
                raise TokenInvalid("unknown or revoked token")
            expires = utc(session.expires_at)
            assert expires is not None
            if expires <= now:
                raise TokenInvalid("token expired; log in again")
            row = tx.get(users, session.user_id)
            if row is None or row.disabled_at is not None:
                raise TokenInvalid("account disabled")
            return self._principal(tx, row, bool(session.second_factor), session.id)

    def _authenticate_partner(self, key: str) -> Principal:
        with self.store.snapshot() as tx:
            row = tx.first(partner_keys, partner_keys.c.key_hash == secret_hash(key))
            if row is None or row.revoked_at is not None:
                raise TokenInvalid("unknown or revoked API key")
            return Principal(
                user_id=None,
                bank_id=row.bank_id,
                grants=(),
                partner_key_id=row.id,
                partner_scopes=frozenset(row.scopes.split()),
            )

    def _principal(
        self, tx: Tx, row: Any, second_factor: bool, session_id: str | None
    ) -> Principal:
        grants = tuple(
            Grant(Role(g.role), g.bank_id, g.org_id, g.member_id)
            for g in tx.find(
                role_grants, role_grants.c.user_id == row.id, role_grants.c.revoked_at.is_(None)
            )
        )
        member = tx.first(members, members.c.user_id == row.id)
        if member is not None and member.status == MemberStatus.ACTIVE:
            if member.is_volunteer:
                grants += (Grant(Role.VOLUNTEER, member.bank_id, None, member.id),)
            if member.is_elder:
                grants += (Grant(Role.ELDER, member.bank_id, None, member.id),)
        return Principal(
            user_id=row.id,
            bank_id=row.bank_id,
            grants=grants,
            member_id=member.id if member is not None else None,
            member_active=member is not None and member.status == MemberStatus.ACTIVE,
            second_factor=second_factor,
            session_id=session_id,
        )

    def user_by_username(self, username: str) -> User | None:
        with self.store.snapshot() as tx:
            row = tx.first(users, users.c.username == username)
        return _user_record(row) if row is not None else None

    def principal_for_user(self, user_id: str) -> Principal:
        """The principal of a user without a session (right after they registered)."""
        with self.store.snapshot() as tx:
            row = tx.get(users, user_id)
            if row is None:
                raise NotFound(f"no user {user_id}")
            return self._principal(tx, row, second_factor=False, session_id=None)

    def logout(self, principal: Principal) -> None:
        if principal.session_id is None:
            raise Forbidden("only a login session can log out")
        with self.store.transaction() as tx:
            tx.update(sessions, principal.session_id, revoked_at=self.clock())

    def logout_everywhere(self, principal: Principal) -> int:
        user_id = _user(principal)
        now = self.clock()
        with self.store.transaction() as tx:
            live = tx.find(sessions, sessions.c.user_id == user_id, sessions.c.revoked_at.is_(None))
            for s in live:
                tx.update(sessions, s.id, revoked_at=now)
        return len(live)

    def change_password(self, principal: Principal, old: str, new: str) -> None:
        user_id = _user(principal)
        with self.store.snapshot() as tx:
            row = tx.get(users, user_id)
        assert row is not None
        if not passwords.verify_password(row.password_hash, old):
            with self.store.transaction() as tx:
                self._count_failure(tx, user_id, self.clock())
            raise InvalidInput("current password is wrong", field="old_password")
        passwords.check_policy(new, row.username, field="new_password")
        with self.store.transaction() as tx:
            tx.update(users, user_id, password_hash=passwords.hash_password(new))
            # Whoever knew the old password is logged out everywhere but here.
            self._end_sessions(tx, user_id, keep=principal.session_id)

    def _end_sessions(self, tx: Tx, user_id: str, keep: str | None = None) -> int:
        live = tx.find(sessions, sessions.c.user_id == user_id, sessions.c.revoked_at.is_(None))
        ended = [s for s in live if s.id != keep]
        for s in ended:
            tx.update(sessions, s.id, revoked_at=self.clock())
        return len(ended)

    def set_disabled(self, principal: Principal, user_id: str, disabled: bool) -> User:
        """A bank admin (any login of the bank), or an organisation's admin (its staff and
        the logins of its members), disables or enables a login; disabling ends its
        sessions at once. Nobody disables themselves."""
        with self.store.transaction() as tx:
            row = tx.get(users, user_id) if isinstance(user_id, str) else None
            if row is None or row.bank_id != principal.bank_id or principal.is_partner:
                raise NotFound(f"no user {user_id}")
            if row.id == principal.user_id:
                raise Forbidden("you cannot disable or enable yourself")
            if not principal.is_bank_admin:
                admin_of = principal.orgs(Role.ORG_ADMIN)
                staff_orgs = {
                    g.org_id
                    for g in tx.find(
                        role_grants,
                        role_grants.c.user_id == row.id,
                        role_grants.c.revoked_at.is_(None),
                    )
                }
                member = tx.first(members, members.c.user_id == row.id)
                orgs = staff_orgs | ({member.org_id} if member is not None else set())
                if not admin_of & orgs:
                    raise Forbidden("only a bank admin or the admin of their organisation")
                if any(
                    g.role == str(Role.BANK_ADMIN)
                    for g in tx.find(role_grants, role_grants.c.user_id == row.id)
                ):
                    raise Forbidden("only a bank admin disables a bank admin")
            tx.update(users, row.id, disabled_at=self.clock() if disabled else None)
            if disabled:
                self._end_sessions(tx, row.id)
            updated = tx.get(users, row.id)
        return _user_record(updated)

    def begin_totp(self, principal: Principal, secret: str | None = None) -> tuple[str, str]:
        """Start enrolment: returns (secret, otpauth URI); active after ``confirm_totp``.
        ``secret`` is for the demo bank only, whose staff secret is published."""
        user_id = _user(principal)
        secret = secret or totp.new_secret()
        with self.store.transaction() as tx:
            row = tx.get(users, user_id)
            assert row is not None
            if row.totp_sealed is not None:
                raise Conflict("a second factor is already enrolled", field="totp")
            tx.update(
                users, user_id, totp_pending_sealed=self.protector.seal(secret, user_id, "totp")
            )
        return secret, totp.provisioning_uri(secret, row.username)

    def confirm_totp(self, principal: Principal, code: str) -> None:
        user_id = _user(principal)
        with self.store.transaction() as tx:
            row = tx.get(users, user_id)
            assert row is not None
            if row.totp_pending_sealed is None:
                raise Conflict("start enrolment first", field="code")
            secret = self.protector.open(row.totp_pending_sealed, user_id, "totp")
            step = totp.accepted_step(secret, code, self.clock().timestamp(), None)
            if step is None:
                raise InvalidInput("the code does not match; check the phone's clock", field="code")
            tx.update(
                users,
                user_id,
                totp_sealed=self.protector.seal(secret, user_id, "totp"),
                totp_pending_sealed=None,
                totp_last_step=step,
            )

    @staticmethod
    def require_second_factor(principal: Principal) -> None:
        """Staff who verify hours must hold a session opened with TOTP."""
        if not principal.second_factor:
            raise SecondFactorRequired(
                "log in with your one-time code (TOTP) to verify hours; enrol at /v1/me/totp"
            )

    def me(self, principal: Principal) -> tuple[User | None, MemberView | None]:
        if principal.user_id is None:
            return None, None
        with self.store.snapshot() as tx:
            row = tx.get(users, principal.user_id)
            assert row is not None
            user = _user_record(row)
        view = self.get_member(principal, principal.member_id) if principal.member_id else None
        return user, view

    # ================================================================ organisations and staff

    def get_bank(self, principal: Principal, bank_id: str) -> Bank:
        _user(principal)
        if bank_id != principal.bank_id:
            raise NotFound(f"no bank {bank_id}")
        with self.store.snapshot() as tx:
            row = tx.get(banks, bank_id)
        if row is None:
            raise NotFound(f"no bank {bank_id}")
        return Bank(row.id, row.name, utc(row.created_at) or self.clock())

    def create_org(
        self, principal: Principal, name: str, kind: str, phone: str | None = None
    ) -> Organisation:
        if not principal.is_bank_admin:
            raise Forbidden("only a bank administrator creates organisations")
        name = _text(name, "name", 200)
        org_kind = _enum(OrgKind, kind, "kind")
        if phone is not None and not ORG_PHONE.match(phone):
            raise InvalidInput("phone: digits, spaces, '+' and '-', 3 to 32", field="phone")
        org = Organisation(
            new_id(), principal.bank_id, name, org_kind, self.clock(), principal.user_id, phone
        )
        with self.store.transaction() as tx:
            if tx.get(banks, principal.bank_id) is None:
                raise NotFound(f"no bank {principal.bank_id}", field="bank_id")
            if tx.first(
                organisations, organisations.c.bank_id == org.bank_id, organisations.c.name == name
            ):
                raise Conflict(f"an organisation named {name!r} exists", field="name")
            tx.insert(
                organisations,
                id=org.id,
                bank_id=org.bank_id,
                name=name,
                kind=str(org_kind),
                created_at=org.created_at,
                created_by=org.created_by,
                phone=org.phone,
            )
        return org

    def list_orgs(self, principal: Principal) -> list[Organisation]:
        """Everyone in a bank may see its organisations (to choose where to register)."""
        _user(principal)
        with self.store.snapshot() as tx:
            rows = tx.find(
                organisations,
                organisations.c.bank_id == principal.bank_id,
                order=[organisations.c.name],
            )
        return [_org(r) for r in rows]

    def organisations_taking_volunteers(self) -> list[tuple[Bank, Organisation]]:
        """Public: the banks and organisations someone signing up may choose from."""
        with self.store.snapshot() as tx:
            bank_names = {
                b.id: Bank(b.id, b.name, utc(b.created_at) or _now()) for b in tx.find(banks)
            }
            rows = tx.find(organisations, order=[organisations.c.bank_id, organisations.c.name])
        return [(bank_names[r.bank_id], _org(r)) for r in rows if r.bank_id in bank_names]

    def get_org(self, principal: Principal, org_id: str) -> Organisation:
        _user(principal)
        with self.store.snapshot() as tx:
            row = tx.get(organisations, org_id)
        if row is None or row.bank_id != principal.bank_id:
            raise NotFound(f"no organisation {org_id}")
        return _org(row)

    def _require_org_admin(self, tx: Tx, principal: Principal, org_id: str) -> Any:
        org = tx.get(organisations, org_id)
        if org is None or org.bank_id != principal.bank_id:
            raise NotFound(f"no organisation {org_id}")
        if not (principal.is_bank_admin or org_id in principal.orgs(Role.ORG_ADMIN)):
            raise Forbidden("only this organisation's admin or a bank admin manages its staff")
        return org

    def create_staff(
        self, principal: Principal, org_id: str, username: str, role: str, password: str | None
    ) -> NewUser:
        staff_role = _enum(Role, role, "role")
        if staff_role not in STAFF_ROLES:
            raise InvalidInput("role must be org_staff or org_admin", field="role")
        with self.store.transaction() as tx:
            self._require_org_admin(tx, principal, org_id)
            new = self._new_user(tx, principal.bank_id, username, password)
            self._grant(
                tx, new.user.id, staff_role, principal.bank_id, org_id, None, principal.user_id
            )
        return new

    def list_staff(self, principal: Principal, org_id: str) -> list[tuple[User, Role]]:
        with self.store.snapshot() as tx:
            org = tx.get(organisations, org_id)
            if org is None or org.bank_id != principal.bank_id:
                raise NotFound(f"no organisation {org_id}")
            if not (principal.is_bank_admin or org_id in principal.orgs()):
                raise Forbidden("staff lists are for the organisation's staff and bank admins")
            grants = tx.find(
                role_grants, role_grants.c.org_id == org_id, role_grants.c.revoked_at.is_(None)
            )
            out = []
            for g in grants:
                row = tx.get(users, g.user_id)
                if row is not None:
                    out.append((_user_record(row), Role(g.role)))
        return out

    def revoke_staff(self, principal: Principal, org_id: str, user_id: str) -> None:
        with self.store.transaction() as tx:
            self._require_org_admin(tx, principal, org_id)
            live = tx.find(
                role_grants,
                role_grants.c.org_id == org_id,
                role_grants.c.user_id == user_id,
                role_grants.c.revoked_at.is_(None),
            )
            if not live:
                raise NotFound(f"user {user_id} is not staff of {org_id}")
            for g in live:
                tx.update(role_grants, g.id, revoked_at=self.clock())

    def _new_user(self, tx: Tx, bank_id: str, username: str, password: str | None) -> NewUser:
        if not isinstance(username, str) or not USERNAME.match(username):
            raise InvalidInput("username must be 3-64 letters, digits or ._@+-", field="username")
        if tx.first(users, users.c.username == username):
            raise Conflict(f"username {username} is taken", field="username")
        one_time = None
        if password is None:
            one_time = new_secret("tbo_")
            password = one_time
        else:
            passwords.check_policy(password, username)
        user = User(new_id(), bank_id, username, self.clock())
        tx.insert(
            users,
            id=user.id,
            bank_id=bank_id,
            username=username,
            password_hash=passwords.hash_password(password),
            created_at=user.created_at,
            failed_logins=0,
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

    # ================================================================ members

    def self_register(
        self,
        bank_id: str,
        org_id: str,
        username: str,
        password: str,
        personal: PersonalInput,
    ) -> NewMember:
        """A volunteer signs up on a phone; the organisation they chose approves them later."""
        with self.store.transaction() as tx:
            org = tx.get(organisations, org_id)
            if tx.get(banks, bank_id) is None:
                raise NotFound(f"no bank {bank_id}", field="bank_id")
            if org is None or org.bank_id != bank_id:
                raise NotFound(f"no organisation {org_id} in bank {bank_id}", field="org_id")
            new = self._new_user(tx, bank_id, username, password)
            member = self._insert_member(
                tx,
                bank_id,
                org_id,
                new.user.id,
                personal,
                volunteer=True,
                elder=False,
                registered_by=None,
                status=MemberStatus.PENDING,
                approved_by=None,
                check_duplicates=False,  # staff see duplicates when they approve
            )
        return NewMember(member, new.user)

    def register_member(
        self,
        principal: Principal,
        org_id: str,
        personal: PersonalInput,
        volunteer: bool,
        elder: bool,
        username: str | None = None,
        password: str | None = None,
    ) -> NewMember:
        """Staff register volunteers or elders (approved at once, by their organisation);
        a family member registers an elder (pending approval) and becomes their proxy."""
        if not (volunteer or elder):
            raise InvalidInput("a member is a volunteer, an elder, or both", field="is_volunteer")
        is_staff = principal.is_bank_admin or org_id in principal.orgs()
        active_member = principal.has(Role.VOLUNTEER) or principal.has(Role.ELDER)
        is_family = active_member and not is_staff
        if not is_staff and not is_family:
            raise Forbidden(
                "only organisation staff or a registered family member registers members"
            )
        if is_family and (volunteer or not elder):
            raise Forbidden("family members register elders only", field="is_volunteer")
        with self.store.transaction() as tx:
            org = tx.get(organisations, org_id)
            if org is None or org.bank_id != principal.bank_id:
                raise NotFound(f"no organisation {org_id}", field="org_id")
            user = None
            if username is not None:
                user = self._new_user(tx, principal.bank_id, username, password).user
            elif password is not None:
                raise InvalidInput("a password needs a username", field="username")
            member = self._insert_member(
                tx,
                principal.bank_id,
                org_id,
                user.id if user else None,
                personal,
                volunteer=volunteer,
                elder=elder,
                registered_by=principal.user_id,
                status=MemberStatus.ACTIVE if is_staff else MemberStatus.PENDING,
                approved_by=principal.user_id if is_staff else None,
            )
            if is_family:
                assert principal.user_id is not None
                self._grant(
                    tx,
                    principal.user_id,
                    Role.FAMILY_PROXY,
                    principal.bank_id,
                    None,
                    member.id,
                    principal.user_id,
                )
        if member.status is MemberStatus.ACTIVE:
            self._log_approval(member)
        return NewMember(member, user)

    def _insert_member(
        self,
        tx: Tx,
        bank_id: str,
        org_id: str,
        user_id: str | None,
        personal: PersonalInput,
        *,
        volunteer: bool,
        elder: bool,
        registered_by: str | None,
        status: MemberStatus,
        approved_by: str | None,
        check_duplicates: bool = True,
    ) -> MemberRecord:
        member_id = new_id()
        values = self._personal_columns(member_id, personal)
        for index_field in ("phone_index", "id_number_index"):
            if (
                check_duplicates
                and values.get(index_field)
                and tx.index_taken(bank_id, index_field, values[index_field])
            ):
                name = index_field.removesuffix("_index")
                raise Conflict(f"a member with this {name} is already registered", field=name)
        now = self.clock()
        record = MemberRecord(
            id=member_id,
            bank_id=bank_id,
            ledger_account=member_account(bank_id),
            is_volunteer=volunteer,
            is_elder=elder,
            status=status,
            org_id=org_id,
            user_id=user_id,
            registered_by=registered_by,
            assisted=registered_by is not None,
            approved_by=approved_by,
            approved_at=now if approved_by else None,
            created_at=now,
        )
        tx.insert(
            members,
            id=record.id,
            bank_id=bank_id,
            ledger_account=record.ledger_account,
            is_volunteer=volunteer,
            is_elder=elder,
            status=str(status),
            org_id=org_id,
            user_id=user_id,
            registered_by=registered_by,
            assisted=record.assisted,
            approved_by=approved_by,
            approved_at=record.approved_at,
            created_at=now,
        )
        tx.insert(member_personal, member_id=member_id, **values)
        return record

    def _personal_columns(self, member_id: str, p: PersonalInput) -> dict[str, Any]:
        if p.extra:
            raise InvalidInput(f"unknown field {sorted(p.extra)[0]}", field=sorted(p.extra)[0])
        values: dict[str, Any] = {"name": _text(p.name, "name", 100)}
        seal = self.protector.seal
        if p.phone is not None:
            phone = normalise_phone(p.phone)
            values["phone_sealed"] = seal(phone, member_id, "phone")
            values["phone_index"] = self.protector.blind_index("phone", phone)
        if p.id_number is not None:
            id_number = normalise_id_number(p.id_number)
            values["id_number_sealed"] = seal(id_number, member_id, "id_number")
            values["id_number_index"] = self.protector.blind_index("id", id_number)
        if p.address is not None:
            values["address_sealed"] = seal(_text(p.address, "address", 300), member_id, "address")
        if p.health_notes is not None:
            notes = _text(p.health_notes, "health_notes", 1000)
            values["health_sealed"] = seal(notes, member_id, "health_notes")
        if p.birth_date is not None:
            if p.birth_date > self.clock().date() or p.birth_date.year < 1900:
                raise InvalidInput("birth_date must be a past date after 1900", field="birth_date")
            values["birth_date"] = p.birth_date
        return values

    def _log_approval(self, member: MemberRecord) -> None:
        """The signed record that an organisation admitted this (opaque) account."""
        self.ledger.append(
            EntryRequest(
                kind="approval",
                id=f"approval:{member.ledger_account.rsplit(':', 1)[-1]}",
                body={
                    "account": member.ledger_account,
                    "roles": [
                        r
                        for r, on in (
                            ("volunteer", member.is_volunteer),
                            ("elder", member.is_elder),
                        )
                        if on
                    ],
                    "org": member.org_id or "",
                    "approved_by": member.approved_by or "",
                    "assisted": member.assisted,
                },
            )
        )

    def decide_registration(
        self, principal: Principal, member_id: str, approve: bool, reason: str | None
    ) -> MemberRecord:
        if approve:
            # The signed record first: if the commit below fails, a retry finds the entry
            # already appended (same id) instead of a member active without one.
            with self.store.snapshot() as tx:
                row = self._visible_member_row(tx, principal, member_id)
            if row.status == MemberStatus.PENDING and (
                principal.is_bank_admin or row.org_id in principal.orgs()
            ):
                self._log_approval(
                    replace(_member(row), approved_by=principal.user_id, approved_at=self.clock())
                )
        with self.store.transaction() as tx:
            row = self._visible_member_row(tx, principal, member_id)
            if not (principal.is_bank_admin or row.org_id in principal.orgs()):
                raise Forbidden("only staff of the member's organisation decide registrations")
            if row.status != MemberStatus.PENDING:
                raise Conflict(f"registration is already {row.status}")
            now = self.clock()
            if approve:
                tx.update(
                    members,
                    member_id,
                    status=str(MemberStatus.ACTIVE),
                    approved_by=principal.user_id,
                    approved_at=now,
                )
            else:
                text = _text(reason or "", "reason", 500)
                tx.update(
                    members,
                    member_id,
                    status=str(MemberStatus.REJECTED),
                    rejected_reason=text,
                    approved_by=principal.user_id,
                    approved_at=now,
                )
            return _member(tx.get(members, member_id))

    def _visible_member_row(self, tx: Tx, principal: Principal, member_id: str) -> Any:
        """The member row if the caller may know it exists; NotFound otherwise."""
        row = tx.get(members, member_id) if isinstance(member_id, str) else None
        if row is None or row.bank_id != principal.bank_id or self._access(principal, row) is None:
            raise NotFound(f"no member {member_id}")
        return row

    @staticmethod
    def _access(principal: Principal, row: Any) -> str | None:
        """How the caller relates to a member: self, proxy, staff, admin, auditor, or None."""
        if principal.is_partner:
            return None
        if principal.member_id == row.id:
            return "self"  # care refuses a member who is not active (care.errors.MemberNotActive)
        if principal.is_bank_admin:
            return "admin"
        if row.org_id in principal.orgs():
            return "staff"
        if row.id in principal.proxied_members():
            return "proxy"
        if principal.has(Role.AUDITOR):
            return "auditor"
        return None

    def member_access(self, principal: Principal, member_id: str) -> tuple[MemberRecord, str]:
        """The member and how the caller relates to them (self, proxy, staff, admin,
        auditor); NotFound when the caller may not know the member exists."""
        with self.store.snapshot() as tx:
            row = self._visible_member_row(tx, principal, member_id)
        access = self._access(principal, row)
        assert access is not None
        return _member(row), access

    def member(self, member_id: str) -> MemberRecord:
        """A member by id, without access checks: for other services that checked already."""
        with self.store.snapshot() as tx:
            row = tx.get(members, member_id)
        if row is None:
            raise NotFound(f"no member {member_id}")
        return _member(row)

    def birth_date(self, member_id: str) -> date | None:
        with self.store.snapshot() as tx:
            row = tx.personal(member_id)
        return row.birth_date if row is not None else None

    def get_member(
        self, principal: Principal, member_id: str, reveal_reason: str | None = None
    ) -> MemberView:
        with self.store.snapshot() as tx:
            row = self._visible_member_row(tx, principal, member_id)
            access = self._access(principal, row)
            personal_row = tx.personal(member_id)
            flags = tuple(
                _flag(f)
                for f in tx.find(
                    member_flags,
                    member_flags.c.member_id == member_id,
                    order=[member_flags.c.set_at],
                )
            )
        revealed = access == "self"
        if reveal_reason is not None and access != "self":
            if access not in ("staff", "admin"):
                raise Forbidden(
                    "only the member's organisation staff or a bank admin see full personal data"
                )
            reason = _text(reveal_reason, "reveal_reason", 500)
            if len(reason) < REVEAL_REASON_MIN:
                raise InvalidInput(
                    f"say why you need the full personal data ({REVEAL_REASON_MIN} characters "
                    "at least)",
                    field="reveal_reason",
                )
            self._record_access(principal, member_id, access, reason)
            revealed = True
        personal = self._personal_view(member_id, personal_row, revealed)
        if access == "auditor":
            personal = {"birth_year": personal.get("birth_year")}
        return MemberView(_member(row), personal, revealed, flags if access != "auditor" else ())

    def _record_access(self, principal: Principal, member_id: str, role: str, reason: str) -> None:
        with self.store.transaction() as tx:
            tx.insert(
                pii_access,
                id=new_id(),
                at=self.clock(),
                actor_user_id=principal.user_id or "",
                actor_role=role,
                member_id=member_id,
                fields="name phone id_number address birth_date health_notes",
                reason=reason,
            )

    def access_records(self, principal: Principal, member_id: str) -> list[dict[str, Any]]:
        """Who saw a member's full personal data: for the member, bank admins and auditors."""
        with self.store.snapshot() as tx:
            row = self._visible_member_row(tx, principal, member_id)
            if self._access(principal, row) not in ("self", "admin", "auditor"):
                raise Forbidden("access records are for the member, bank admins and auditors")
            rows = tx.find(pii_access, pii_access.c.member_id == member_id, order=[pii_access.c.at])
        return [
            {
                "at": utc(r.at),
                "actor": r.actor_user_id,
                "role": r.actor_role,
                "reason": r.reason,
                "fields": r.fields.split(),
            }
            for r in rows
        ]

    def _personal_view(self, member_id: str, row: Any, revealed: bool) -> dict[str, Any]:
        if row is None:
            return {}
        opened = {
            name: self.protector.open(getattr(row, f"{name}_sealed"), member_id, name)
            if getattr(row, f"{name}_sealed") is not None
            else None
            for name in ("phone", "id_number", "address")
        }
        health = (
            self.protector.open(row.health_sealed, member_id, "health_notes")
            if row.health_sealed is not None
            else None
        )
        birth: date | None = row.birth_date
        if revealed:
            return {
                "name": row.name,
                **opened,
                "birth_date": birth.isoformat() if birth else None,
                "birth_year": birth.year if birth else None,
                "health_notes": health,
            }
        return {
            "name": mask_name(row.name),
            "phone": mask_phone(opened["phone"]),
            "id_number": mask_id_number(opened["id_number"]),
            "address": mask_address(opened["address"]),
            "birth_year": birth.year if birth else None,
            "health_notes": "***" if health else None,
        }

    def list_members(
        self, principal: Principal, search: str | None, limit: int, offset: int
    ) -> list[MemberView]:
        """Members in the caller's scope; ``search`` matches a phone or ID number exactly."""
        if principal.is_partner:
            raise Forbidden("partner keys cannot list members")
        staff_view = principal.is_bank_admin or bool(principal.orgs())
        if not (staff_view or principal.has(Role.AUDITOR)):
            raise Forbidden("member lists are for organisation staff, bank admins and auditors")
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be 1-{MAX_PAGE}", field="limit")
        if offset < 0:
            raise InvalidInput("offset must not be negative", field="offset")
        indexes = None
        if search is not None:
            if not staff_view:
                raise Forbidden("auditors do not search by personal data")
            indexes = self._search_indexes(search)
        scope = (
            None if (principal.is_bank_admin or principal.has(Role.AUDITOR)) else principal.orgs()
        )
        with self.store.snapshot() as tx:
            rows = tx.members_in_scope(principal.bank_id, scope, indexes, limit, offset)
            personal_rows = {r.id: tx.personal(r.id) for r in rows}
        views = []
        for r in rows:
            personal = self._personal_view(r.id, personal_rows[r.id], revealed=False)
            if not staff_view:
                personal = {"birth_year": personal.get("birth_year")}
            views.append(MemberView(_member(r), personal, False))
        return views

    def _search_indexes(self, search: str) -> list[str]:
        indexes = []
        for kind, normalise in (("phone", normalise_phone), ("id", normalise_id_number)):
            try:
                indexes.append(self.protector.blind_index(kind, normalise(search, "search")))
            except InvalidInput:
                continue
        if not indexes:
            raise InvalidInput("search must be a phone or ID number", field="search")
        return indexes

    # ---------------------------------------------------------------- flags

    def set_flag(self, principal: Principal, member_id: str, flag: str, note: str | None) -> Flag:
        priority = _enum(PriorityFlag, flag, "flag")
        with self.store.transaction() as tx:
            row = self._visible_member_row(tx, principal, member_id)
            if self._access(principal, row) not in ("staff", "admin"):
                raise Forbidden("only staff of the member's organisation or a bank admin set flags")
            live = tx.first(
                member_flags,
                member_flags.c.member_id == member_id,
                member_flags.c.flag == str(priority),
                member_flags.c.cleared_at.is_(None),
            )
            if live is not None:
                raise Conflict(f"flag {priority} is already set", field="flag")
            record = Flag(
                new_id(),
                member_id,
                priority,
                _text(note, "note", 500) if note else None,
                principal.user_id or "",
                self.clock(),
            )
            tx.insert(
                member_flags,
                id=record.id,
                member_id=member_id,
                flag=str(priority),
                note=record.note,
                set_by=record.set_by,
                set_at=record.set_at,
            )
        return record

    def clear_flag(self, principal: Principal, member_id: str, flag_id: str) -> Flag:
        with self.store.transaction() as tx:
            row = self._visible_member_row(tx, principal, member_id)
            if self._access(principal, row) not in ("staff", "admin"):
                raise Forbidden(
                    "only staff of the member's organisation or a bank admin clear flags"
                )
            flag_row = tx.get(member_flags, flag_id)
            if flag_row is None or flag_row.member_id != member_id:
                raise NotFound(f"no flag {flag_id}")
            if flag_row.cleared_at is not None:
                raise Conflict("flag is already cleared")
            tx.update(member_flags, flag_id, cleared_by=principal.user_id, cleared_at=self.clock())
            return _flag(tx.get(member_flags, flag_id))

    def active_flags(self, member_id: str) -> set[PriorityFlag]:
        with self.store.snapshot() as tx:
            rows = tx.find(
                member_flags,
                member_flags.c.member_id == member_id,
                member_flags.c.cleared_at.is_(None),
            )
        return {PriorityFlag(r.flag) for r in rows}

    # ---------------------------------------------------------------- relatives

    def declare_relative(
        self, principal: Principal, member_id: str, relative_id: str, relation: str
    ) -> RelativeLink:
        kind = _enum(Relation, relation, "relation")
        with self.store.transaction() as tx:
            row = self._visible_member_row(tx, principal, member_id)
            if self._access(principal, row) not in ("self", "proxy", "staff", "admin"):
                raise Forbidden("a member, their family proxy or staff declares relatives")
            other = tx.get(members, relative_id) if isinstance(relative_id, str) else None
            if other is None or other.bank_id != row.bank_id:
                raise NotFound(f"no member {relative_id} in this bank", field="relative_id")
            if other.id == row.id:
                raise InvalidInput("a member cannot be their own relative", field="relative_id")
            if tx.first(
                relatives,
                relatives.c.member_id == member_id,
                relatives.c.relative_id == relative_id,
            ):
                raise Conflict("this relation is already declared", field="relative_id")
            link = RelativeLink(
                new_id(),
                member_id,
                relative_id,
                kind,
                RelativeStatus.PENDING,
                principal.user_id or "",
                self.clock(),
            )
            tx.insert(
                relatives,
                id=link.id,
                member_id=member_id,
                relative_id=relative_id,
                relation=str(kind),
                status=str(link.status),
                declared_by=link.declared_by,
                declared_at=link.declared_at,
            )
        return link

    def decide_relative(self, principal: Principal, link_id: str, confirm: bool) -> RelativeLink:
        with self.store.transaction() as tx:
            link = tx.get(relatives, link_id)
            if link is None:
                raise NotFound(f"no relation {link_id}")
            a = tx.get(members, link.member_id)
            b = tx.get(members, link.relative_id)
            assert a is not None
            assert b is not None
            if a.bank_id != principal.bank_id:
                raise NotFound(f"no relation {link_id}")
            staff_of = {self._access(principal, a), self._access(principal, b)}
            if not staff_of & {"staff", "admin"}:
                if staff_of & {"self", "proxy"}:
                    raise Forbidden("relations are confirmed by organisation staff")
                raise NotFound(f"no relation {link_id}")
            if link.status != RelativeStatus.PENDING:
                raise Conflict(f"relation is already {link.status}")
            status = RelativeStatus.CONFIRMED if confirm else RelativeStatus.REJECTED
            tx.update(
                relatives,
                link_id,
                status=str(status),
                decided_by=principal.user_id,
                decided_at=self.clock(),
            )
            return _relative(tx.get(relatives, link_id))

    def list_relatives(self, principal: Principal, member_id: str) -> list[RelativeLink]:
        with self.store.snapshot() as tx:
            row = self._visible_member_row(tx, principal, member_id)
            if self._access(principal, row) == "auditor":
                raise Forbidden("auditors do not read family relations")
            rows = tx.find(
                relatives,
                (relatives.c.member_id == member_id) | (relatives.c.relative_id == member_id),
                order=[relatives.c.declared_at],
            )
        return [_relative(r) for r in rows]

    def are_confirmed_relatives(self, member_a: str, member_b: str) -> bool:
        with self.store.snapshot() as tx:
            rows = tx.find(
                relatives,
                relatives.c.status == str(RelativeStatus.CONFIRMED),
                ((relatives.c.member_id == member_a) & (relatives.c.relative_id == member_b))
                | ((relatives.c.member_id == member_b) & (relatives.c.relative_id == member_a)),
            )
        return bool(rows)

    def grant_proxy(self, principal: Principal, member_id: str, username: str) -> None:
        """Staff let a family member act for an elder who cannot use a phone."""
        with self.store.transaction() as tx:
            row = self._visible_member_row(tx, principal, member_id)
            if self._access(principal, row) not in ("staff", "admin"):
                raise Forbidden("only staff of the member's organisation grant family proxies")
            user = tx.first(users, users.c.username == username)
            if user is None or user.bank_id != principal.bank_id:
                raise NotFound(f"no user {username}", field="username")
            if row.status != MemberStatus.ACTIVE or not row.is_elder:
                raise InvalidInput("proxies act for an active elder", field="member_id")
            own = tx.first(members, members.c.user_id == user.id)
            if user.disabled_at is not None or own is None or own.status != MemberStatus.ACTIVE:
                raise InvalidInput(
                    "only an active member (approved by their organisation) becomes a proxy",
                    field="username",
                )
            if self._proxy_grants(tx, user.id, member_id):
                return  # already their proxy
            self._grant(
                tx,
                user.id,
                Role.FAMILY_PROXY,
                principal.bank_id,
                None,
                member_id,
                principal.user_id,
            )

    def revoke_proxy(self, principal: Principal, member_id: str, username: str) -> None:
        """Staff of the elder's organisation, or the elder, end a family member's proxy."""
        with self.store.transaction() as tx:
            row = self._visible_member_row(tx, principal, member_id)
            if self._access(principal, row) not in ("self", "staff", "admin"):
                raise Forbidden("only the elder or their organisation's staff revoke a proxy")
            user = tx.first(users, users.c.username == username)
            grants = self._proxy_grants(tx, user.id, member_id) if user is not None else []
            if not grants:
                raise NotFound(f"{username} is not a proxy of this member", field="username")
            for grant in grants:
                tx.update(role_grants, grant.id, revoked_at=self.clock())

    @staticmethod
    def _proxy_grants(tx: Tx, user_id: str, member_id: str) -> list[Any]:
        return tx.find(
            role_grants,
            role_grants.c.user_id == user_id,
            role_grants.c.member_id == member_id,
            role_grants.c.role == str(Role.FAMILY_PROXY),
            role_grants.c.revoked_at.is_(None),
        )

    # ================================================================ device keys

    def add_device(self, principal: Principal, public_key_b64: str, name: str) -> DeviceKey:
        user_id = _user(principal)
        try:
            raw = base64.b64decode(public_key_b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidInput("public_key must be base64", field="public_key") from exc
        if len(raw) != 32:
            raise InvalidInput("public_key must be a 32-byte Ed25519 key", field="public_key")
        try:
            Ed25519PublicKey.from_public_bytes(raw)
        except ValueError as exc:
            raise InvalidInput("public_key is not an Ed25519 key", field="public_key") from exc
        key = DeviceKey(device_key_id(raw), user_id, raw, _text(name, "name", 100), self.clock())
        with self.store.transaction() as tx:
            if tx.get(device_keys, key.id):
                raise Conflict("this key is already registered", field="public_key")
            tx.insert(
                device_keys,
                id=key.id,
                user_id=user_id,
                public_key=raw,
                name=key.name,
                created_at=key.created_at,
            )
        return key

    def list_devices(self, principal: Principal) -> list[DeviceKey]:
        user_id = _user(principal)
        with self.store.snapshot() as tx:
            rows = tx.find(
                device_keys, device_keys.c.user_id == user_id, order=[device_keys.c.created_at]
            )
        return [_device(r) for r in rows]

    def revoke_device(self, principal: Principal, key_id: str) -> DeviceKey:
        user_id = _user(principal)
        with self.store.transaction() as tx:
            row = tx.get(device_keys, key_id)
            if row is None or row.user_id != user_id:
                raise NotFound(f"no device key {key_id}")
            if row.revoked_at is not None:
                raise Conflict("device key is already revoked")
            tx.update(device_keys, key_id, revoked_at=self.clock())
            return _device(tx.get(device_keys, key_id))

    def check_device_signature(
        self, user_id: str, key_id: str, message: bytes, signature_b64: str
    ) -> None:
        """Raise unless ``signature_b64`` is ``user_id``'s live device key's signature."""
        with self.store.snapshot() as tx:
            row = tx.get(device_keys, key_id)
        if row is None or row.user_id != user_id:
            raise TokenInvalid("unknown device key", field="device_key")
        if row.revoked_at is not None:
            raise TokenInvalid("device key has been revoked", field="device_key")
        try:
            signature = base64.b64decode(signature_b64, validate=True)
            Ed25519PublicKey.from_public_bytes(row.public_key).verify(signature, message)
        except (binascii.Error, ValueError, InvalidSignature) as exc:
            raise TokenInvalid("device signature does not verify", field="signature") from exc

    # ================================================================ partner keys

    def create_partner_key(
        self, principal: Principal, name: str, scopes: Sequence[str]
    ) -> tuple[PartnerKey, str]:
        if not principal.is_bank_admin:
            raise Forbidden("only a bank administrator creates partner keys")
        if not scopes:
            raise InvalidInput("give at least one scope", field="scopes")
        parsed = frozenset(_enum(PartnerScope, s, "scopes") for s in scopes)
        secret = new_secret(PARTNER_PREFIX)
        key = PartnerKey(
            new_id(),
            principal.bank_id,
            _text(name, "name", 100),
            parsed,
            principal.user_id or "",
            self.clock(),
        )
        with self.store.transaction() as tx:
            tx.insert(
                partner_keys,
                id=key.id,
                bank_id=key.bank_id,
                name=key.name,
                key_hash=secret_hash(secret),
                scopes=" ".join(sorted(parsed)),
                created_by=key.created_by,
                created_at=key.created_at,
            )
        return key, secret

    def list_partner_keys(self, principal: Principal) -> list[PartnerKey]:
        if not principal.is_bank_admin:
            raise Forbidden("only a bank administrator sees partner keys")
        with self.store.snapshot() as tx:
            rows = tx.find(
                partner_keys,
                partner_keys.c.bank_id == principal.bank_id,
                order=[partner_keys.c.created_at],
            )
        return [_partner(r) for r in rows]

    def revoke_partner_key(self, principal: Principal, key_id: str) -> PartnerKey:
        if not principal.is_bank_admin:
            raise Forbidden("only a bank administrator revokes partner keys")
        with self.store.transaction() as tx:
            row = tx.get(partner_keys, key_id)
            if row is None or row.bank_id != principal.bank_id:
                raise NotFound(f"no partner key {key_id}")
            if row.revoked_at is not None:
                raise Conflict("partner key is already revoked")
            tx.update(partner_keys, key_id, revoked_at=self.clock())
            return _partner(tx.get(partner_keys, key_id))


# ==================================================================== helpers


def device_key_id(public_key: bytes) -> str:
    return hashlib.sha256(public_key).hexdigest()[:32]


def _user(principal: Principal) -> str:
    if principal.user_id is None:
        raise Forbidden("this needs a personal login, not an API key")
    return principal.user_id


def _text(value: Any, field: str, max_length: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{field} must not be empty", field=field)
    value = value.strip()
    if len(value) > max_length:
        raise InvalidInput(f"{field} must be at most {max_length} characters", field=field)
    if any(ord(c) < 0x20 for c in value):
        raise InvalidInput(f"{field} must not contain control characters", field=field)
    return str(value)


def _enum(kind: Any, value: Any, field: str) -> Any:
    try:
        return kind(value)
    except ValueError as exc:
        allowed = ", ".join(str(v) for v in kind)
        raise InvalidInput(f"{field} must be one of: {allowed}", field=field) from exc


def _org(r: Any) -> Organisation:
    return Organisation(
        r.id,
        r.bank_id,
        r.name,
        OrgKind(r.kind),
        utc(r.created_at) or _now(),
        r.created_by,
        r.phone,
    )


def _user_record(r: Any) -> User:
    return User(
        r.id,
        r.bank_id,
        r.username,
        utc(r.created_at) or _now(),
        r.disabled_at is not None,
        r.totp_sealed is not None,
    )


def _member(r: Any) -> MemberRecord:
    return MemberRecord(
        id=r.id,
        bank_id=r.bank_id,
        ledger_account=r.ledger_account,
        is_volunteer=bool(r.is_volunteer),
        is_elder=bool(r.is_elder),
        status=MemberStatus(r.status),
        org_id=r.org_id,
        user_id=r.user_id,
        registered_by=r.registered_by,
        assisted=bool(r.assisted),
        approved_by=r.approved_by,
        approved_at=utc(r.approved_at),
        created_at=utc(r.created_at) or _now(),
    )


def _flag(r: Any) -> Flag:
    return Flag(
        r.id,
        r.member_id,
        PriorityFlag(r.flag),
        r.note,
        r.set_by,
        utc(r.set_at) or _now(),
        r.cleared_by,
        utc(r.cleared_at),
    )


def _relative(r: Any) -> RelativeLink:
    return RelativeLink(
        r.id,
        r.member_id,
        r.relative_id,
        Relation(r.relation),
        RelativeStatus(r.status),
        r.declared_by,
        utc(r.declared_at) or _now(),
        r.decided_by,
        utc(r.decided_at),
    )


def _device(r: Any) -> DeviceKey:
    return DeviceKey(
        r.id, r.user_id, bytes(r.public_key), r.name, utc(r.created_at) or _now(), utc(r.revoked_at)
    )


def _partner(r: Any) -> PartnerKey:
    return PartnerKey(
        r.id,
        r.bank_id,
        r.name,
        frozenset(PartnerScope(s) for s in r.scopes.split()),
        r.created_by,
        utc(r.created_at) or _now(),
        utc(r.revoked_at),
    )
