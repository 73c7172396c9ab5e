"""The consent links and webhook tables. They live in the accounts store's database and are
written through its transactions (``accounts.storage.Tx``): a link and the member it names
change together, and an event enters the webhook outbox in the transaction of its change."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    bindparam,
    select,
    update,
)

from accounts.storage import Tx, partner_keys
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

partner_exchanges = Table(
    "partner_exchanges",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("bank_id", String(ID), ForeignKey("banks.id"), nullable=False),
    Column("partner_key_id", String(ID), ForeignKey("partner_keys.id"), nullable=False),
    Column("link_id", String(ID), ForeignKey("partner_links.id"), nullable=False),
    Column("member_id", String(ID), ForeignKey("members.id"), nullable=False),
    Column("handle", String(40), nullable=False),
    Column("reference", String(64), nullable=False),  # the partner's, unique per partner key
    Column("description", String(300), nullable=False),
    Column("minutes", Integer, nullable=False),
    # pending, confirming (claimed, its entry being appended), confirmed, declined, cancelled
    Column("status", String(16), nullable=False),
    Column("requested_at", TS, nullable=False),
    Column("expires_at", TS, nullable=False),
    Column("decided_by", String(ID), nullable=True),
    Column("decided_at", TS, nullable=True),
    Column("entry_id", String(128), nullable=True),
    Column("seq", BigInteger, nullable=True),
)
Index(
    "ix_partner_exchanges_reference",
    partner_exchanges.c.partner_key_id,
    partner_exchanges.c.reference,
    unique=True,
)
Index("ix_partner_exchanges_member", partner_exchanges.c.member_id)

webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("bank_id", String(ID), ForeignKey("banks.id"), nullable=False),
    Column("partner_key_id", String(ID), ForeignKey("partner_keys.id"), nullable=False),
    Column("url", String(500), nullable=False),
    Column("scheme", String(8), nullable=False),  # v1 (HMAC-SHA256) or v1a (Ed25519)
    Column("secret", LargeBinary, nullable=False),  # sealed (accounts.protection.Protector)
    Column("public_key", String(60), nullable=True),  # whpk_…, for v1a
    Column("enabled", Boolean, nullable=False),
    Column("disabled_reason", String(200), nullable=True),
    # Space-separated event types the endpoint takes; NULL: every event but those only sent
    # on subscription (checkpoint.published, see partners.webhooks.OPT_IN).
    Column("events", String(300), nullable=True),
    Column("checkpoint_size", BigInteger, nullable=True),  # the last tree size published to it
    Column("created_by", String(ID), nullable=False),
    Column("created_at", TS, nullable=False),
)
Index("ix_webhook_endpoints_partner", webhook_endpoints.c.partner_key_id)

webhook_outbox = Table(
    "webhook_outbox",
    metadata,
    Column("id", String(40), primary_key=True),  # msg_…, the webhook-id header
    Column("endpoint_id", String(ID), ForeignKey("webhook_endpoints.id"), nullable=False),
    Column("event_type", String(40), nullable=False),
    Column("payload", Text, nullable=False),  # the exact body sent, JSON
    Column("status", String(16), nullable=False),  # pending, delivered, dead
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", TS, nullable=False),
    Column("last_error", String(300), nullable=True),
    Column("created_at", TS, nullable=False),
    Column("delivered_at", TS, nullable=True),
)
Index("ix_webhook_outbox_due", webhook_outbox.c.status, webhook_outbox.c.next_attempt_at)


def move_exchange(tx: Tx, exchange_id: str, seen: str, **values: Any) -> bool:
    """Change an exchange only if its status is still ``seen``: whether it was (of two racing
    decisions one wins, and a confirmation claims an exchange before posting it)."""
    changed = tx.conn.execute(
        update(partner_exchanges)
        .where(partner_exchanges.c.id == exchange_id, partner_exchanges.c.status == seen)
        .values(**values)
    ).rowcount
    return bool(changed == 1)


def advance_checkpoint(tx: Tx, endpoint_id: str, seen: int | None, size: int) -> bool:
    """Note that ``size`` was published to an endpoint, only if ``seen`` is still its last one:
    whether it was (of two workers one publishes each new checkpoint)."""
    last = webhook_endpoints.c.checkpoint_size
    changed = tx.conn.execute(
        update(webhook_endpoints)
        .where(
            webhook_endpoints.c.id == endpoint_id,
            last.is_(None) if seen is None else last == seen,
        )
        .values(checkpoint_size=size)
    ).rowcount
    return bool(changed == 1)


def claim_message(tx: Tx, msg_id: str, seen: int, **values: Any) -> bool:
    """Change an outbox row only if it is still pending after ``seen`` attempts: whether it
    was (two workers never send one attempt twice)."""
    changed = tx.conn.execute(
        update(webhook_outbox)
        .where(
            webhook_outbox.c.id == msg_id,
            webhook_outbox.c.status == "pending",
            webhook_outbox.c.attempts == seen,
        )
        .values(**values)
    ).rowcount
    return bool(changed == 1)


_links, _endpoints = partner_links.c, webhook_endpoints.c
# Built once: every deposit, gift and redemption asks it, and building the select cost more
# than running it (docs/performance.md, the deposit path).
_MEMBER_RECEIVERS = (
    select(
        _links.partner_key_id,
        _links.handle,
        _links.scopes.label("link_scopes"),
        _links.expires_at,
        partner_keys.c.scopes.label("key_scopes"),
        _endpoints.id.label("endpoint_id"),
        _endpoints.events,
    )
    .join(partner_keys, partner_keys.c.id == _links.partner_key_id)
    .join(webhook_endpoints, _endpoints.partner_key_id == _links.partner_key_id)
    .where(
        _links.member_id == bindparam("member_id"),
        _links.status == "active",
        partner_keys.c.revoked_at.is_(None),
        _endpoints.enabled.is_(True),
    )
    .order_by(_endpoints.id)
)


def member_receivers(tx: Tx, member_id: str) -> list[Any]:
    """In one query: the member's active links, each joined to its partner key (not revoked)
    and that key's enabled endpoints — who may hear of a change to this member. The caller
    checks the scopes and the link's expiry."""
    return list(tx.conn.execute(_MEMBER_RECEIVERS, {"member_id": member_id}))
