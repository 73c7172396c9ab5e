"""One-time passwords expire and must be changed; TOTP enrolment needs an enrolment code from an
administrator or a session opened with a one-time password.

Revision ID: 0011_enrolment
Revises: 0010_partner_links
Create Date: 2026-12-05 05:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_enrolment"
down_revision: str | None = "0010_partner_links"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("one_time_until", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("enrolment_code_hash", sa.String(length=64), nullable=True))
        batch.add_column(
            sa.Column("enrolment_code_until", sa.DateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(
            sa.Column("one_time", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("one_time")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("enrolment_code_until")
        batch.drop_column("enrolment_code_hash")
        batch.drop_column("one_time_until")
