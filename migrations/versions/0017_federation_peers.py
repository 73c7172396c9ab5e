"""The district banks this deployment knows as peers (federation.storage).

Revision ID: 0017_federation_peers
Revises: 0016_published_reports
Create Date: 2026-12-05 19:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_federation_peers"
down_revision: str | None = "0016_published_reports"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "federation_peers",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("url", sa.String(length=300), nullable=False),
        sa.Column("log_origin", sa.String(length=200), nullable=False),
        sa.Column("log_key", sa.String(length=300), nullable=False),
        sa.Column("request_key", sa.String(length=300), nullable=False),
        sa.Column("request_key_id", sa.String(length=250), nullable=False),
        sa.Column("added_by", sa.String(length=64), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
        sa.UniqueConstraint("log_origin"),
        sa.UniqueConstraint("request_key_id"),
    )


def downgrade() -> None:
    op.drop_table("federation_peers")
