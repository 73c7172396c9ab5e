"""Exchanges partners ask for: a member's minutes spent on a service the partner delivers,
confirmed by the member (or their proxy) in Timebank.

Revision ID: 0013_partner_exchanges
Revises: 0012_webhooks
Create Date: 2026-12-05 10:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_partner_exchanges"
down_revision: str | None = "0012_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    ts = sa.DateTime(timezone=True)
    op.create_table(
        "partner_exchanges",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("bank_id", sa.String(length=32), sa.ForeignKey("banks.id"), nullable=False),
        sa.Column(
            "partner_key_id",
            sa.String(length=32),
            sa.ForeignKey("partner_keys.id"),
            nullable=False,
        ),
        sa.Column(
            "link_id", sa.String(length=32), sa.ForeignKey("partner_links.id"), nullable=False
        ),
        sa.Column("member_id", sa.String(length=32), sa.ForeignKey("members.id"), nullable=False),
        sa.Column("handle", sa.String(length=40), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=300), nullable=False),
        sa.Column("minutes", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("requested_at", ts, nullable=False),
        sa.Column("expires_at", ts, nullable=False),
        sa.Column("decided_by", sa.String(length=32), nullable=True),
        sa.Column("decided_at", ts, nullable=True),
        sa.Column("entry_id", sa.String(length=128), nullable=True),
        sa.Column("seq", sa.BigInteger(), nullable=True),
    )
    op.create_index(
        "ix_partner_exchanges_reference",
        "partner_exchanges",
        ["partner_key_id", "reference"],
        unique=True,
    )
    op.create_index("ix_partner_exchanges_member", "partner_exchanges", ["member_id"])


def downgrade() -> None:
    op.drop_index("ix_partner_exchanges_member", table_name="partner_exchanges")
    op.drop_index("ix_partner_exchanges_reference", table_name="partner_exchanges")
    op.drop_table("partner_exchanges")
