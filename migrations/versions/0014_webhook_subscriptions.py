"""Which events a webhook endpoint takes, and the last log checkpoint published to it.

Revision ID: 0014_webhook_subscriptions
Revises: 0013_partner_exchanges
Create Date: 2026-12-05 10:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_webhook_subscriptions"
down_revision: str | None = "0013_partner_exchanges"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("webhook_endpoints", sa.Column("events", sa.String(length=300), nullable=True))
    op.add_column("webhook_endpoints", sa.Column("checkpoint_size", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhook_endpoints") as batch:
        batch.drop_column("checkpoint_size")
        batch.drop_column("events")
