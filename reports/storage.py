"""The statistics' own tables: each final month's visit coverage as it was frozen. They live in
the accounts store's database and are written through its transactions (``accounts.storage``)."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, DateTime, ForeignKey, String, Table

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
