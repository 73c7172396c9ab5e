"""Witness cosignatures on checkpoints (C2SP tlog-cosignature/v1), append-only.

Revision ID: 0002_cosignatures
Revises: 0001_ledger
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.triggers import create_append_only_triggers, drop_append_only_triggers

revision: str = "0002_cosignatures"
down_revision: str | None = "0001_ledger"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "log_cosignatures",
        sa.Column("size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("witness", sa.String(length=300), nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("size", "witness"),
    )
    create_append_only_triggers(["log_cosignatures"])


def downgrade() -> None:
    drop_append_only_triggers(["log_cosignatures"])
    op.drop_table("log_cosignatures")
