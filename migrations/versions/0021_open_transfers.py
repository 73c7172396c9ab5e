"""Open transfers (federation.transfer_storage, docs/federation.md#the-retry-worker): each
transfer sent remembers whether it is still open, indexed, so the retry worker of
``timebank serve`` visits only the held ones, not every transfer ever sent.

Rows from before are ``open``: the first round of the worker (or ``timebank peers transfers
retry``) finds the closed ones closed in the log and marks them.

Revision ID: 0021_open_transfers
Revises: 0019_peer_transfers
Create Date: 2026-12-05 22:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021_open_transfers"
down_revision: str | None = "0019_peer_transfers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "federation_transfers",
        sa.Column("status", sa.String(length=8), nullable=False, server_default="open"),
    )
    op.create_index(
        "ix_federation_transfers_status", "federation_transfers", ["status", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_federation_transfers_status", table_name="federation_transfers")
    with op.batch_alter_table("federation_transfers") as batch:
        batch.drop_column("status")
