"""Transfers between peers (federation.transfer_storage, docs/federation.md#transfers): the
receiving member's id in the peer bank for each transfer sent, so a retry can deliver again.

Revision ID: 0019_peer_transfers
Revises: 0018_peer_witnessing
Create Date: 2026-12-05 20:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019_peer_transfers"
down_revision: str | None = "0018_peer_witnessing"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "federation_transfers",
        sa.Column("transfer", sa.String(length=32), nullable=False),
        sa.Column("peer", sa.String(length=32), nullable=False),
        sa.Column("to_member_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("transfer"),
    )


def downgrade() -> None:
    op.drop_table("federation_transfers")
