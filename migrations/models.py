"""Every table the application defines, for Alembic's autogenerate and ``alembic check``."""

from __future__ import annotations

import accounts.storage  # noqa: F401 - registers the accounts tables on the shared metadata
from ledger.storage import metadata as target_metadata

__all__ = ["target_metadata"]
