"""Every table the application defines, for Alembic's autogenerate and ``alembic check``."""

from __future__ import annotations

import accounts.storage  # noqa: F401 - registers the accounts tables on the shared metadata
import audit.trail  # noqa: F401 - registers audit_events
import care.storage  # noqa: F401 - registers the workflow tables
import federation.storage
import federation.transfer_storage
import federation.witness_storage  # noqa: F401 - registers the mutual witnessing tables
import idempotency.store  # noqa: F401 - registers idempotency_keys
import ledger  # noqa: F401 - registers the log tables (ledger.storage)
import partners.storage  # noqa: F401 - registers the consent links, exchanges and webhook tables
import reports.storage  # noqa: F401 - registers the frozen coverage tables, published_reports
from database import metadata as target_metadata

__all__ = ["target_metadata"]
