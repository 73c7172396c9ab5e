"""The consent links table. Links live in the accounts store's database and are written through
its transactions (``accounts.storage.Tx``), so a link and the member it names change together."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, ForeignKey, Index, Integer, String, Table

from database import metadata

ID = 32
TS = DateTime(timezone=True)

partner_links = Table(
    "partner_links",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("bank_id", String(ID), ForeignKey("banks.id"), nullable=False),
    Column("partner_key_id", String(ID), ForeignKey("partner_keys.id"), nullable=False),
    Column("scopes", String(200), nullable=False),
    Column("valid_days", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("requested_at", TS, nullable=False),
    Column("member_id", String(ID), ForeignKey("members.id"), nullable=True),
    Column("handle", String(40), nullable=True),
    Column("decided_by", String(ID), nullable=True),
    Column("decided_at", TS, nullable=True),
    Column("expires_at", TS, nullable=True),
    Column("revoked_by", String(ID), nullable=True),
    Column("revoked_at", TS, nullable=True),
)
Index("ix_partner_links_partner_handle", partner_links.c.partner_key_id, partner_links.c.handle)
Index("ix_partner_links_member", partner_links.c.member_id)
