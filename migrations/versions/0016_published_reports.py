"""Published half-yearly reports: the document as hashed into the log's report entry.

Revision ID: 0016_published_reports
Revises: 0015_coverage_frozen
Create Date: 2026-12-05 17:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_published_reports"
down_revision: str | None = "0015_coverage_frozen"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "published_reports",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("bank_id", sa.String(length=32), nullable=False),
        sa.Column("half", sa.String(length=8), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("document", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("entry_id", sa.String(length=128), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("published_by", sa.String(length=32), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["bank_id"], ["banks.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_published_reports_half", "published_reports", ["bank_id", "half"], unique=True
    )


def downgrade() -> None:
    op.drop_index("ix_published_reports_half", table_name="published_reports")
    op.drop_table("published_reports")
