"""Webhook endpoints of partner keys and the outbox of signed events to deliver.

Revision ID: 0012_webhooks
Revises: 0011_enrolment
Create Date: 2026-12-05 06:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_webhooks"
down_revision: str | None = "0011_enrolment"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    ts = sa.DateTime(timezone=True)
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("bank_id", sa.String(length=32), sa.ForeignKey("banks.id"), nullable=False),
        sa.Column(
            "partner_key_id",
            sa.String(length=32),
            sa.ForeignKey("partner_keys.id"),
            nullable=False,
        ),
        sa.Column("url", sa.String(length=500), nullable=False),
        sa.Column("scheme", sa.String(length=8), nullable=False),
        sa.Column("secret", sa.LargeBinary(), nullable=False),
        sa.Column("public_key", sa.String(length=60), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.String(length=200), nullable=True),
        sa.Column("created_by", sa.String(length=32), nullable=False),
        sa.Column("created_at", ts, nullable=False),
    )
    op.create_index("ix_webhook_endpoints_partner", "webhook_endpoints", ["partner_key_id"])
    op.create_table(
        "webhook_outbox",
        sa.Column("id", sa.String(length=40), primary_key=True),
        sa.Column(
            "endpoint_id",
            sa.String(length=32),
            sa.ForeignKey("webhook_endpoints.id"),
            nullable=False,
        ),
        sa.Column("event_type", sa.String(length=40), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", ts, nullable=False),
        sa.Column("last_error", sa.String(length=300), nullable=True),
        sa.Column("created_at", ts, nullable=False),
        sa.Column("delivered_at", ts, nullable=True),
    )
    op.create_index("ix_webhook_outbox_due", "webhook_outbox", ["status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_outbox_due", table_name="webhook_outbox")
    op.drop_table("webhook_outbox")
    op.drop_index("ix_webhook_endpoints_partner", table_name="webhook_endpoints")
    op.drop_table("webhook_endpoints")
