"""Mutual witnessing between peers (federation.witness_storage, docs/federation.md): the key
each peer cosigns our checkpoints with, the latest checkpoint we cosigned for each peer's log,
and the split views we refused.

Revision ID: 0018_peer_witnessing
Revises: 0017_federation_peers
Create Date: 2026-12-05 20:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018_peer_witnessing"
down_revision: str | None = "0017_federation_peers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("federation_peers") as batch:
        batch.add_column(sa.Column("witness_key", sa.String(length=300), nullable=True))
    op.create_table(
        "federation_witnessed",
        sa.Column("origin", sa.String(length=200), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("origin"),
    )
    op.create_table(
        "federation_split_views",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("origin", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.String(length=300), nullable=False),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_federation_split_views_origin", "federation_split_views", ["origin"])


def downgrade() -> None:
    op.drop_index("ix_federation_split_views_origin", table_name="federation_split_views")
    op.drop_table("federation_split_views")
    op.drop_table("federation_witnessed")
    with op.batch_alter_table("federation_peers") as batch:
        batch.drop_column("witness_key")
