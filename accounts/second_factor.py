"""The second factor: TOTP enrolment (a pending secret confirmed by a first code) and the
step-up that staff need before they verify hours or see personal data.

A password alone never enrols TOTP: whoever learnt a staff member's password could otherwise
enrol their own phone and verify hours in that person's name. Enrolment needs either an
enrolment code an administrator issued (``issue_enrolment_code``, which also resets a lost
second factor) or a session opened with the one-time password an administrator issued.
"""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Any

from accounts import totp
from accounts.base import user_id_of
from accounts.errors import (
    Conflict,
    EnrolmentCodeRequired,
    InvalidInput,
    SecondFactorRequired,
    Words,
)
from accounts.model import (
    Principal,
)
from accounts.sessions import Sessions
from accounts.storage import (
    users,
    utc,
)
from accounts.tokens import ENROLMENT_PREFIX, new_secret, secret_hash


class SecondFactor(Sessions):
    """TOTP enrolment, its reset by an administrator, and the step-up rule."""

    def issue_enrolment_code(self, principal: Principal, user_id: str) -> tuple[str, datetime]:
        """An administrator of the login (``_administered_user``) issues a code that lets its
        owner enrol TOTP once; a second factor enrolled before is removed and the login's
        sessions end (whoever holds the lost phone is out). Returns (code, valid until); the
        code is shown once, only its hash is kept."""
        code = new_secret(ENROLMENT_PREFIX)
        until = self.clock() + self.policy.enrolment_code_ttl
        with self.store.transaction() as tx:
            row = self._administered_user(
                tx, principal, user_id, Words("reset the second factor of")
            )
            if row.totp_sealed is not None:
                self._end_sessions(tx, row.id)
            tx.update(
                users,
                row.id,
                totp_sealed=None,
                totp_pending_sealed=None,
                totp_last_step=None,
                enrolment_code_hash=secret_hash(code),
                enrolment_code_until=until,
            )
        return code, until

    def begin_totp(
        self, principal: Principal, enrolment_code: str | None = None, secret: str | None = None
    ) -> tuple[str, str]:
        """Start enrolment: returns (secret, otpauth URI); active after ``confirm_totp``.
        ``secret`` is for the demo bank only, whose staff secret is published."""
        user_id = user_id_of(principal)
        secret = secret or totp.new_secret()
        with self.store.transaction() as tx:
            row = tx.get(users, user_id)
            assert row is not None
            if row.totp_sealed is not None:
                raise Conflict("a second factor is already enrolled", field="totp")
            if not (principal.one_time_session or self._code_works(row, enrolment_code)):
                raise EnrolmentCodeRequired(
                    "enrolling a second factor needs the enrolment code your administrator issued",
                    field="enrolment_code",
                )
            tx.update(
                users, user_id, totp_pending_sealed=self.protector.seal(secret, user_id, "totp")
            )
        return secret, totp.provisioning_uri(secret, row.username)

    def _code_works(self, row: Any, code: str | None) -> bool:
        until = utc(row.enrolment_code_until)
        return (
            isinstance(code, str)
            and row.enrolment_code_hash is not None
            and until is not None
            and until > self.clock()
            and hmac.compare_digest(secret_hash(code), row.enrolment_code_hash)
        )

    def confirm_totp(self, principal: Principal, code: str) -> None:
        user_id = user_id_of(principal)
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
                enrolment_code_hash=None,  # used up
                enrolment_code_until=None,
            )

    @staticmethod
    def require_second_factor(principal: Principal) -> None:
        """Staff who verify hours must hold a session opened with TOTP."""
        if not principal.second_factor:
            raise SecondFactorRequired(
                "log in with your one-time code (TOTP) to verify hours; enrol at /v1/me/totp"
            )
