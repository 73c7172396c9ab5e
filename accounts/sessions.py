"""Credentials in use: login (with lockout and per-client throttling), sessions and bearer
tokens, partner keys at the door, logout, password changes, disabling a user."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from accounts import passwords, totp
from accounts.base import AccountsBase, user_id_of
from accounts.errors import (
    AccountsError,
    Forbidden,
    InvalidCredentials,
    InvalidInput,
    LoginThrottled,
    NotFound,
    TokenInvalid,
    Words,
)
from accounts.model import (
    Grant,
    MemberStatus,
    Principal,
    Role,
    User,
)
from accounts.rows import user_of_row
from accounts.storage import (
    Tx,
    members,
    partner_keys,
    role_grants,
    sessions,
    users,
    utc,
)
from accounts.tokens import PARTNER_PREFIX, SESSION_PREFIX, new_id, new_secret, secret_hash


@dataclass(frozen=True)
class LoginResult:
    token: str
    expires_at: datetime
    principal: Principal


class Sessions(AccountsBase):
    """Logging in and out, sessions, passwords, and who a token is."""

    def issue_token(self, username: str) -> LoginResult:
        """Operators issue a session token for a user (e.g. for a kiosk), no password needed."""
        with self.store.transaction() as tx:
            row = tx.first(users, users.c.username == username)
            if row is None or row.disabled_at is not None:
                raise NotFound("no active user with this username", field="user")
            return self._open_session(tx, row, second_factor=False)

    def login(
        self, username: str, password: str, totp_code: str | None, client: str
    ) -> LoginResult:
        now = self.clock()
        client_key = hashlib.sha256(f"client:{client}".encode()).hexdigest()
        # A username nobody has is locked out exactly as a real one would be, so the answers
        # (401, then 429 with the same Retry-After) do not tell which names exist.
        name_key = hashlib.sha256(f"name:{username}".encode()).hexdigest()
        with self.store.transaction() as tx:
            failures = tx.throttle_count(client_key, now, self.policy.client_window_seconds)
            if failures >= self.policy.client_attempts_per_window:
                raise LoginThrottled(self.policy.client_window_seconds)
            row = (
                tx.first(users, users.c.username == username) if isinstance(username, str) else None
            )
            if row is not None:
                locked_until = utc(row.locked_until)
            else:
                failures, last = tx.name_failures(name_key)
                lock = self.policy.lock_after(failures)
                locked_until = last + lock if last is not None and lock is not None else None
            if locked_until is not None and locked_until > now:
                raise LoginThrottled(int((locked_until - now).total_seconds()) + 1)
        ok = passwords.verify_password(row.password_hash if row else None, password)
        failure: AccountsError | None = None
        with self.store.transaction() as tx:
            if ok and row is not None and self._awaiting_approval(tx, row.id):
                # Not before an organisation approved the member: else registering a name and
                # logging in with it would tell whether the name existed (``self_register``).
                failure = InvalidCredentials("wrong username or password")
            elif row is None or row.disabled_at is not None or not ok:
                tx.throttle(client_key, now, self.policy.client_window_seconds)
                if row is not None:
                    self._count_failure(tx, row.id, now)
                else:
                    tx.count_name_failure(name_key, now)
                failure = InvalidCredentials("wrong username or password")
            elif self._revoked(tx, row.id):
                failure = Forbidden(
                    "this login was revoked; ask your organisation's administrator",
                    field="username",
                )
            elif (one_time_until := utc(row.one_time_until)) is not None and one_time_until <= now:
                failure = InvalidCredentials(
                    "this one-time password has expired; ask your administrator for a new one",
                    field="password",
                )
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

    @staticmethod
    def _revoked(tx: Tx, user_id: str) -> bool:
        """Every role the login held was revoked and it is no member's: signing in would only
        lead to pages that refuse it. Said after the right password only (no oracle)."""
        grants = tx.find(role_grants, role_grants.c.user_id == user_id)
        return (
            bool(grants)
            and all(g.revoked_at is not None for g in grants)
            and tx.first(members, members.c.user_id == user_id) is None
        )

    @staticmethod
    def _awaiting_approval(tx: Tx, user_id: str) -> bool:
        """The login belongs to a member not (or not yet) approved by their organisation."""
        member = tx.first(members, members.c.user_id == user_id)
        return member is not None and member.status != MemberStatus.ACTIVE

    def _count_failure(self, tx: Tx, user_id: str, now: datetime) -> None:
        """Lock an account for a short, growing, capped time: an attacker can slow a victim's
        logins but never lock them out for more than ``account_lock_max`` at a time."""
        row = tx.get(users, user_id)
        assert row is not None
        failures = int(row.failed_logins or 0) + 1
        lock = self.policy.lock_after(failures)
        locked_until = now + lock if lock is not None else None
        tx.update(users, row.id, failed_logins=failures, locked_until=locked_until)

    def _open_session(self, tx: Tx, row: Any, second_factor: bool) -> LoginResult:
        token = new_secret(SESSION_PREFIX)
        now = self.clock()
        session_id = new_id()
        one_time = row.one_time_until is not None
        principal = self._principal(tx, row, second_factor, session_id, one_time)
        short = principal.works_at_a_desk or one_time
        ttl = self.policy.desk_session_ttl if short else self.policy.session_ttl
        expires = now + ttl
        tx.insert(
            sessions,
            id=session_id,
            token_hash=secret_hash(token),
            user_id=row.id,
            created_at=now,
            expires_at=expires,
            second_factor=second_factor,
            one_time=one_time,
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
            return self._principal(
                tx, row, bool(session.second_factor), session.id, bool(session.one_time)
            )

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
        self,
        tx: Tx,
        row: Any,
        second_factor: bool,
        session_id: str | None,
        one_time_session: bool = False,
    ) -> Principal:
        if row.one_time_until is not None:
            # Whoever holds a one-time password may only replace it (and enrol TOTP): no role
            # works until the password is the person's own.
            return Principal(
                user_id=row.id,
                bank_id=row.bank_id,
                grants=(),
                session_id=session_id,
                password_change_due=True,
                one_time_session=one_time_session,
            )
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
            one_time_session=one_time_session,
        )

    def user_by_username(self, username: str) -> User | None:
        with self.store.snapshot() as tx:
            row = tx.first(users, users.c.username == username)
        return user_of_row(row) if row is not None else None

    def principal_for_user(self, user_id: str) -> Principal:
        """The principal of a user without a session (right after they registered)."""
        with self.store.snapshot() as tx:
            row = tx.get(users, user_id)
            if row is None:
                raise NotFound("no user %(id)s", id=user_id)
            return self._principal(tx, row, second_factor=False, session_id=None)

    def logout(self, principal: Principal) -> None:
        if principal.session_id is None:
            raise Forbidden("only a login session can log out")
        with self.store.transaction() as tx:
            tx.update(sessions, principal.session_id, revoked_at=self.clock())

    def logout_everywhere(self, principal: Principal) -> int:
        user_id = user_id_of(principal)
        now = self.clock()
        with self.store.transaction() as tx:
            live = tx.find(sessions, sessions.c.user_id == user_id, sessions.c.revoked_at.is_(None))
            for s in live:
                tx.update(sessions, s.id, revoked_at=now)
        return len(live)

    def change_password(self, principal: Principal, old: str, new: str) -> None:
        user_id = user_id_of(principal)
        with self.store.snapshot() as tx:
            row = tx.get(users, user_id)
        assert row is not None
        if not passwords.verify_password(row.password_hash, old):
            with self.store.transaction() as tx:
                self._count_failure(tx, user_id, self.clock())
            raise InvalidInput("current password is wrong", field="old_password")
        passwords.check_policy(new, row.username, field="new_password")
        with self.store.transaction() as tx:
            tx.update(
                users, user_id, password_hash=passwords.hash_password(new), one_time_until=None
            )
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
            row = self._administered_user(tx, principal, user_id, Words("disable or enable"))
            tx.update(users, row.id, disabled_at=self.clock() if disabled else None)
            if disabled:
                self._end_sessions(tx, row.id)
            updated = tx.get(users, row.id)
        return user_of_row(updated)

    def _administered_user(self, tx: Tx, principal: Principal, user_id: str, what: str) -> Any:
        """The login ``principal`` administers: any of the bank for a bank admin; for an
        organisation's admin, its staff and its members' logins, bank admins excepted. Nobody
        administers their own login."""
        row = tx.get(users, user_id) if isinstance(user_id, str) else None
        if row is None or row.bank_id != principal.bank_id or principal.is_partner:
            raise NotFound("no user %(id)s", id=user_id)
        if row.id == principal.user_id:
            raise Forbidden("you cannot %(action)s your own login", action=Words(what))
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
                raise Forbidden(
                    "only a bank admin may %(action)s a bank admin's login", action=Words(what)
                )
        return row
