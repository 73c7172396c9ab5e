"""The facts of each entry the statistics sum (``log_facts``, ledger/facts.py), written with the
entry from now on and backfilled here from the leaves already in the log, so the half-yearly
report sums narrow rows instead of reading every leaf (docs/performance.md).

Append-only like the other log tables. The backfill runs inside the migration's transaction,
under the migration lock (migrations.runner) and, on PostgreSQL, the log writer's lock, so no
entry is appended between the rows it reads and the rows it writes.

Revision ID: 0023_log_facts
Revises: 0021_open_transfers
Create Date: 2026-12-05 23:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from ledger import fill_facts
from migrations.triggers import create_append_only_triggers, drop_append_only_triggers

revision: str = "0023_log_facts"
down_revision: str | None = "0021_open_transfers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PG_WRITER_LOCK = 0x7469_6D65_6261_6E6B  # ledger.storage_sql.PG_WRITER_LOCK ("timebank")


def upgrade() -> None:
    op.create_table(
        "log_facts",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("bank", sa.String(length=32), nullable=True),
        sa.Column("credited", sa.BigInteger(), nullable=False),
        sa.Column("service", sa.String(length=64), nullable=True),
        sa.Column("org", sa.String(length=64), nullable=True),
        sa.Column("served", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
    )
    create_append_only_triggers(["log_facts"])
    bind = op.get_bind()
    postgresql = bind.dialect.name == "postgresql"
    if postgresql:
        bind.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_WRITER_LOCK})
    fill_facts(bind)
    if postgresql:
        # Statistics now, not at autovacuum's leisure: without them the planner expects a
        # few rows and sorts a million to group them (6.5 s instead of 0.5 s at 10^6 entries).
        op.execute("ANALYZE log_facts")


def downgrade() -> None:
    drop_append_only_triggers(["log_facts"])
    op.drop_table("log_facts")
