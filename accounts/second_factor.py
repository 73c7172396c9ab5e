"""The second factor: TOTP enrolment (a pending secret confirmed by a first code) and the
step-up that staff need before they verify hours or see personal data."""

from __future__ import annotations

from accounts import totp
from accounts.base import user_id_of
from accounts.errors import (
    Conflict,
    InvalidInput,
    SecondFactorRequired,
)
from accounts.model import (
    Principal,
)
from accounts.sessions import Sessions
from accounts.storage import (
    users,
)


class SecondFactor(Sessions):
    """TOTP enrolment and the step-up rule."""

    def begin_totp(self, principal: Principal, secret: str | None = None) -> tuple[str, str]:
        """Start enrolment: returns (secret, otpauth URI); active after ``confirm_totp``.
        ``secret`` is for the demo bank only, whose staff secret is published."""
        user_id = user_id_of(principal)
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
            )

    @staticmethod
    def require_second_factor(principal: Principal) -> None:
        """Staff who verify hours must hold a session opened with TOTP."""
        if not principal.second_factor:
            raise SecondFactorRequired(
                "log in with your one-time code (TOTP) to verify hours; enrol at /v1/me/totp"
            )
