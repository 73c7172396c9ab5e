"""Final months of visit coverage, frozen as computed once the month could no longer change.

Revision ID: 0015_coverage_frozen
Revises: 0014_webhook_subscriptions
Create Date: 2026-12-05 17:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_coverage_frozen"
down_revision: str | None = "0014_webhook_subscriptions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "coverage_months",
        sa.Column("bank_id", sa.String(32), sa.ForeignKey("banks.id"), primary_key=True),
        sa.Column("month", sa.String(7), primary_key=True),
        sa.Column("flags", sa.String(200), nullable=False),
        sa.Column("services", sa.String(500), nullable=False),
        sa.Column("frozen_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "coverage_elders",
        sa.Column("bank_id", sa.String(32), sa.ForeignKey("banks.id"), primary_key=True),
        sa.Column("month", sa.String(7), primary_key=True),
        sa.Column("member_id", sa.String(32), sa.ForeignKey("members.id"), primary_key=True),
        sa.Column("org_id", sa.String(32), nullable=True),
        sa.Column("flags", sa.String(200), nullable=False),
        sa.Column("visited", sa.Boolean(), nullable=False),
        sa.Column("last_visit", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("coverage_elders")
    op.drop_table("coverage_months")
