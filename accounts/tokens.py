"""Opaque secrets handed to clients: only their SHA-256 is stored, so a database leak
cannot be replayed. Prefixes tell the kind apart (``tbs_`` session, ``tbk_`` partner key,
``tbo_`` one-time password for new staff, ``tbe_`` TOTP enrolment code).
"""

from __future__ import annotations

import hashlib
import secrets

SESSION_PREFIX = "tbs_"
PARTNER_PREFIX = "tbk_"
ONE_TIME_PREFIX = "tbo_"
ENROLMENT_PREFIX = "tbe_"


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_id() -> str:
    return secrets.token_hex(8)
