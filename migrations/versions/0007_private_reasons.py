"""Reasons off the public log: grants and reversals log a reason code; a grant's free-text
reason is sealed in entry_notes, a reversal's stays with its request.

Revision ID: 0007_private_reasons
Revises: 0006_org_phone
Create Date: 2026-12-04 22:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_private_reasons"
down_revision: str | None = "0006_org_phone"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "entry_notes",
        sa.Column("entry_id", sa.String(length=128), primary_key=True),
        sa.Column("bank_id", sa.String(length=32), sa.ForeignKey("banks.id"), nullable=False),
        sa.Column("note_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("written_by", sa.String(length=32), nullable=False),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("reversal_requests") as batch:
        batch.add_column(
            sa.Column("reason_code", sa.String(length=32), nullable=False, server_default="other")
        )


def downgrade() -> None:
    with op.batch_alter_table("reversal_requests") as batch:
        batch.drop_column("reason_code")
    op.drop_table("entry_notes")
