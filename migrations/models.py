"""Every table the application defines, for Alembic's autogenerate and ``alembic check``."""

from __future__ import annotations

import accounts.storage  # noqa: F401 - registers the accounts tables on the shared metadata
import api.idempotency  # noqa: F401 - registers idempotency_keys
import audit.trail  # noqa: F401 - registers audit_events
import care.storage  # noqa: F401 - registers the workflow tables
from ledger.storage import metadata as target_metadata

__all__ = ["target_metadata"]
