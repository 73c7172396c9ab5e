"""Consent links between members and partner platforms, with the partner's member handle.

Revision ID: 0010_partner_links
Revises: 0007_private_reasons
Create Date: 2026-12-05 02:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_partner_links"
down_revision: str | None = "0007_private_reasons"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    ts = sa.DateTime(timezone=True)
    op.create_table(
        "partner_links",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("bank_id", sa.String(length=32), sa.ForeignKey("banks.id"), nullable=False),
        sa.Column(
            "partner_key_id",
            sa.String(length=32),
            sa.ForeignKey("partner_keys.id"),
            nullable=False,
        ),
        sa.Column("scopes", sa.String(length=200), nullable=False),
        sa.Column("valid_days", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("requested_at", ts, nullable=False),
        sa.Column("member_id", sa.String(length=32), sa.ForeignKey("members.id"), nullable=True),
        sa.Column("handle", sa.String(length=40), nullable=True),
        sa.Column("decided_by", sa.String(length=32), nullable=True),
        sa.Column("decided_at", ts, nullable=True),
        sa.Column("expires_at", ts, nullable=True),
        sa.Column("revoked_by", sa.String(length=32), nullable=True),
        sa.Column("revoked_at", ts, nullable=True),
    )
    op.create_index(
        "ix_partner_links_partner_handle", "partner_links", ["partner_key_id", "handle"]
    )
    op.create_index("ix_partner_links_member", "partner_links", ["member_id"])


def downgrade() -> None:
    op.drop_index("ix_partner_links_member", table_name="partner_links")
    op.drop_index("ix_partner_links_partner_handle", table_name="partner_links")
    op.drop_table("partner_links")
