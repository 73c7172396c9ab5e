"""The statistics' own tables: each final month's visit coverage as it was frozen, and the
published half-yearly reports (each document's canonical bytes exactly as hashed into the log's
``report`` entry). They live in the accounts store's database and are written through its
transactions (``accounts.storage``)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Table,
)

from database import metadata

ID = 32
TS = DateTime(timezone=True)

# A month frozen for a bank: the flags and services that counted when it was frozen.
coverage_months = Table(
    "coverage_months",
    metadata,
    Column("bank_id", String(ID), ForeignKey("banks.id"), primary_key=True),
    Column("month", String(7), primary_key=True),
    Column("flags", String(200), nullable=False),
    Column("services", String(500), nullable=False),
    Column("frozen_at", TS, nullable=False),
)

# Each priority elder of a frozen month: her organisation then, her flags, whether she was
# visited, and her last visit before the month ended.
coverage_elders = Table(
    "coverage_elders",
    metadata,
    Column("bank_id", String(ID), ForeignKey("banks.id"), primary_key=True),
    Column("month", String(7), primary_key=True),
    Column("member_id", String(ID), ForeignKey("members.id"), primary_key=True),
    Column("org_id", String(ID), nullable=True),
    Column("flags", String(200), nullable=False),
    Column("visited", Boolean, nullable=False),
    Column("last_visit", TS, nullable=True),
)

published_reports = Table(
    "published_reports",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("bank_id", String(ID), ForeignKey("banks.id"), nullable=False),
    Column("half", String(8), nullable=False),  # YYYY-H1 or YYYY-H2
    Column("sha256", String(64), nullable=False),  # hex, of ``document``
    Column("tree_size", BigInteger, nullable=False),  # the checkpoint the public part is at
    Column("document", LargeBinary, nullable=False),  # canonical JSON (RFC 8785), as hashed
    # pending: stored, its entry being appended; published: the entry is in the log at ``seq``
    Column("status", String(16), nullable=False),
    Column("entry_id", String(128), nullable=False),
    Column("seq", BigInteger, nullable=True),
    Column("published_by", String(ID), nullable=False),
    Column("published_at", DateTime(timezone=True), nullable=False),
)
Index(
    "ix_published_reports_half", published_reports.c.bank_id, published_reports.c.half, unique=True
)
