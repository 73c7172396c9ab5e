"""Confirmation codes: six digits an elder reads to the volunteer; stored as a keyed hash,
used once, and throttled per record, per volunteer and per elder."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from accounts.errors import Forbidden
from accounts.model import Principal
from accounts.storage import Tx, utc
from accounts.tokens import new_id
from care.base import require_active
from care.errors import (
    InvalidConfirmationCode,
    TooManyCodeAttempts,
)
from care.requests import Requests
from care.storage import (
    confirmation_codes,
)
from database.group import Refused

CODE_TTL = timedelta(minutes=30)


CODE_DIGITS = 6


# Wrong confirmation codes allowed (key prefix: failures, window in seconds): a record's code
# confirmation locks after 5 (the elder's side or staff confirm it instead), a person trying
# codes and an elder whose codes are tried get 10 an hour. 10 guesses in 10^6 codes.
CODE_LIMITS = {"code-record": (5, 86400), "code-by": (10, 3600), "code-elder": (10, 3600)}


def code_throttle_keys(record_id: str | None, by: str | None, elder_id: str) -> list[str]:
    keys = [f"code-by:{by or 'anonymous'}", f"code-elder:{elder_id}"]
    return ([f"code-record:{record_id}"] if record_id else []) + keys


def refuse_if_throttled(tx: Tx, keys: list[str], now: datetime) -> None:
    for key in keys:
        limit, window = CODE_LIMITS[key.split(":", 1)[0]]
        if tx.throttle_count(key, now, window) >= limit:
            if key.startswith("code-record:"):
                raise TooManyCodeAttempts(
                    "%(limit)s wrong codes for this record: the elder, their family or staff "
                    "confirm it instead",
                    field="confirmation_code",
                    limit=limit,
                )
            raise TooManyCodeAttempts(
                "%(limit)s wrong confirmation codes within %(minutes)s minutes; try again later",
                field="confirmation_code",
                limit=limit,
                minutes=window // 60,
            )


class Codes(Requests):
    """One-time confirmation codes and their throttling."""

    def create_confirmation_code(self, principal: Principal, elder_id: str) -> tuple[str, datetime]:
        """A short code the elder's side reads to the volunteer to confirm a service."""
        elder, access = self.accounts.member_access(principal, elder_id)
        if access not in ("self", "proxy", "staff", "admin") or not elder.is_elder:
            raise Forbidden("only the elder, their family or staff create confirmation codes")
        require_active(elder, "elder_id")
        code = "".join(secrets.choice("0123456789") for _ in range(CODE_DIGITS))
        expires = self.clock() + CODE_TTL
        with self.store.transaction() as tx:
            tx.insert(
                confirmation_codes,
                id=new_id(),
                elder_id=elder.id,
                code_hash=self._code_hash(elder.id, code),
                created_by=principal.user_id or "",
                created_at=self.clock(),
                expires_at=expires,
            )
        return code, expires

    def _code_hash(self, elder_id: str, code: str) -> str:
        key = self.accounts.protector.data_key
        return hmac.new(key, f"confirm:{elder_id}:{code}".encode(), hashlib.sha256).hexdigest()

    def _take_code(
        self, tx: Tx, elder_id: str, code: str, now: datetime, record_id: str
    ) -> str | Refused:
        """Use up a live confirmation code of ``elder_id`` for ``record_id``; returns who
        created it, or a wrong code's refusal before anything is written."""
        row = tx.first(
            confirmation_codes,
            confirmation_codes.c.elder_id == elder_id,
            confirmation_codes.c.code_hash == self._code_hash(elder_id, code),
            confirmation_codes.c.used_at.is_(None),
        )
        expires = utc(row.expires_at) if row is not None else None
        if row is None or expires is None or expires <= now:
            return Refused(
                InvalidConfirmationCode(
                    "confirmation code is wrong, used or expired", field="confirmation_code"
                )
            )
        tx.update(confirmation_codes, row.id, used_at=now, record_id=record_id)
        return str(row.created_by)

    def _count_wrong_code(self, keys: list[str], now: datetime) -> None:
        """Count a wrong code against ``keys``, after the refused write rolled back."""
        with self.store.transaction() as tx:
            for key in keys:
                tx.throttle(key, now, CODE_LIMITS[key.split(":", 1)[0]][1])
