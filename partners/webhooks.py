"""Signed webhooks to partner platforms (Standard Webhooks).

A bank admin registers an endpoint for a partner key: a URL and a signing scheme, ``v1``
(HMAC-SHA256 with a ``whsec_`` secret) or ``v1a`` (Ed25519: the bank keeps the ``whsk_`` key,
the partner verifies with the ``whpk_`` public key). The secret is sealed with the data key like
members' personal data.

Events enter the outbox (``webhook_outbox``) inside the transaction of the state change that
causes them (``Outbox.member_event``, ``Outbox.partner_event``): a change rolled back leaves no
event, a committed one leaves its event for the delivery worker (``partners.delivery``). A
member event goes to each partner whose consent link with the member is active, unexpired and
grants ``receive_webhooks``, and names the member by that partner's handle only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from accounts.errors import Conflict, Forbidden, InvalidInput, NotFound
from accounts.model import PartnerScope, Principal
from accounts.protection import Protector
from accounts.storage import AccountsStore, Tx, partner_keys, utc
from accounts.tokens import new_id
from partners.storage import (
    advance_checkpoint,
    member_receivers,
    webhook_endpoints,
    webhook_outbox,
)

SCHEMES = ("v1", "v1a")
EVENT_TYPES = (
    "deposit.verified",
    "redemption.completed",
    "transfer.posted",
    "exchange.confirmed",
    "link.revoked",
    "checkpoint.published",
)
OPT_IN = frozenset({"checkpoint.published"})  # sent only to endpoints that list it
SECRET_FIELD = "webhook_secret"  # noqa: S105 (the name sealing binds to, not a secret)


def _now() -> datetime:
    return datetime.now(UTC)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def signed_content(msg_id: str, timestamp: int, body: bytes) -> bytes:
    """What both schemes sign: ``id.timestamp.body``."""
    return f"{msg_id}.{timestamp}.".encode() + body


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for ``secret`` (``whsec_…`` or ``whsk_…``)."""
    content = signed_content(msg_id, timestamp, body)
    if secret.startswith("whsec_"):
        key = base64.b64decode(secret.removeprefix("whsec_"))
        return "v1," + _b64(hmac.new(key, content, hashlib.sha256).digest())
    seed = base64.b64decode(secret.removeprefix("whsk_"))
    return "v1a," + _b64(Ed25519PrivateKey.from_private_bytes(seed).sign(content))


def new_secret(scheme: str) -> tuple[str, str | None]:
    """A fresh signing secret and, for ``v1a``, its ``whpk_`` public key."""
    if scheme == "v1":
        return "whsec_" + _b64(secrets.token_bytes(32)), None
    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes_raw()
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return "whsk_" + _b64(seed), "whpk_" + _b64(public)


@dataclass(frozen=True)
class HostPolicy:
    """Where webhooks may go: ``https`` to the hosts the admin allowed; plain ``http`` and
    loopback addresses only when ``allow_loopback`` (tests, a receiver on the same machine)."""

    allowed_hosts: frozenset[str]
    allow_loopback: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> HostPolicy:
        """``TIMEBANK_WEBHOOK_HOSTS`` (comma-separated host names) and
        ``TIMEBANK_WEBHOOK_ALLOW_LOOPBACK`` (``1`` in tests only)."""
        hosts = env.get("TIMEBANK_WEBHOOK_HOSTS", "")
        return cls(
            frozenset(h.strip().lower() for h in hosts.split(",") if h.strip()),
            env.get("TIMEBANK_WEBHOOK_ALLOW_LOOPBACK", "") == "1",
        )

    def check(self, url: str) -> None:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        loopback = host == "localhost" or _is_loopback(host)
        if loopback and not self.allow_loopback:
            raise InvalidInput("webhooks to loopback addresses are not allowed", field="url")
        if parts.scheme != "https" and not (loopback and parts.scheme == "http"):
            raise InvalidInput("a webhook URL must use https", field="url")
        if not loopback and host not in self.allowed_hosts:
            raise InvalidInput(
                "the host %(host)s is not among the allowed webhook hosts",
                field="url",
                host=host or "(none)",
            )
        if parts.username or parts.password or parts.fragment:
            raise InvalidInput("a webhook URL carries no credentials or fragment", field="url")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Endpoint:
    id: str
    bank_id: str
    partner_key_id: str
    url: str
    scheme: str
    public_key: str | None
    enabled: bool
    disabled_reason: str | None
    created_at: datetime
    events: tuple[str, ...] | None = None  # None: every event but the opt-in ones

    def takes(self, event_type: str) -> bool:
        return takes(self.events, event_type)


def takes(events: tuple[str, ...] | None, event_type: str) -> bool:
    """Whether an endpoint subscribed to ``events`` (None: every event but the opt-in ones)
    gets ``event_type``."""
    if events is None:
        return event_type not in OPT_IN
    return event_type in events


def _endpoint(r: Any) -> Endpoint:
    created = utc(r.created_at)
    assert created is not None
    return Endpoint(
        r.id,
        r.bank_id,
        r.partner_key_id,
        r.url,
        r.scheme,
        r.public_key,
        bool(r.enabled),
        r.disabled_reason,
        created,
        tuple(r.events.split()) if r.events is not None else None,
    )


@dataclass(frozen=True)
class Message:
    id: str
    endpoint_id: str
    event_type: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


def _message(r: Any) -> Message:
    return Message(
        r.id,
        r.endpoint_id,
        r.event_type,
        r.status,
        r.attempts,
        r.next_attempt_at.replace(tzinfo=r.next_attempt_at.tzinfo or UTC),
        r.last_error,
        r.created_at.replace(tzinfo=r.created_at.tzinfo or UTC),
        utc(r.delivered_at),
    )


class Outbox:
    """Endpoints and the events queued for them."""

    def __init__(
        self,
        store: AccountsStore,
        protector: Protector,
        hosts: HostPolicy,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.store = store
        self.protector = protector
        self.hosts = hosts
        self.clock = clock

    # ------------------------------------------------------------------ endpoints

    def add_endpoint(
        self,
        principal: Principal,
        partner_key_id: str,
        url: str,
        scheme: str,
        events: Sequence[str] | None = None,
    ) -> tuple[Endpoint, str | None]:
        """A bank admin registers ``url`` for a partner key of the bank holding
        ``receive_webhooks``; returns the endpoint and, for ``v1``, its ``whsec_`` secret, shown
        this once (for ``v1a`` the partner needs only the endpoint's public key)."""
        self._require_admin(principal)
        if scheme not in SCHEMES:
            raise InvalidInput("scheme is v1 or v1a", field="scheme")
        if not isinstance(url, str) or len(url) > 500:
            raise InvalidInput("give the endpoint's URL (at most 500 characters)", field="url")
        self.hosts.check(url)
        if events is not None:
            unknown = sorted(set(events) - set(EVENT_TYPES))
            if unknown or not events:
                raise InvalidInput(
                    "events are some of %(events)s", field="events", events=", ".join(EVENT_TYPES)
                )
        secret, public = new_secret(scheme)
        endpoint_id = new_id()
        with self.store.transaction() as tx:
            key = tx.get(partner_keys, partner_key_id)
            if key is None or key.bank_id != principal.bank_id:
                raise NotFound("no partner key %(id)s", id=partner_key_id, field="partner_key_id")
            if PartnerScope.RECEIVE_WEBHOOKS not in key.scopes.split():
                raise InvalidInput(
                    "the partner key does not hold receive_webhooks", field="partner_key_id"
                )
            tx.insert(
                webhook_endpoints,
                id=endpoint_id,
                bank_id=principal.bank_id,
                partner_key_id=partner_key_id,
                url=url,
                scheme=scheme,
                secret=self.protector.seal(secret, endpoint_id, SECRET_FIELD),
                public_key=public,
                enabled=True,
                events=" ".join(sorted(set(events))) if events is not None else None,
                created_by=principal.user_id or "",
                created_at=self.clock(),
            )
            row = tx.get(webhook_endpoints, endpoint_id)
        return _endpoint(row), secret if public is None else None

    def endpoints(self, principal: Principal) -> list[Endpoint]:
        self._require_admin(principal)
        with self.store.snapshot() as tx:
            rows = tx.find(
                webhook_endpoints,
                webhook_endpoints.c.bank_id == principal.bank_id,
                order=[webhook_endpoints.c.created_at],
            )
        return [_endpoint(r) for r in rows]

    def set_enabled(self, principal: Principal, endpoint_id: str, enabled: bool) -> Endpoint:
        self._require_admin(principal)
        with self.store.transaction() as tx:
            self._own_endpoint(tx, principal, endpoint_id)
            reason = None if enabled else "disabled by an administrator"
            tx.update(webhook_endpoints, endpoint_id, enabled=enabled, disabled_reason=reason)
            return _endpoint(tx.get(webhook_endpoints, endpoint_id))

    def messages(self, principal: Principal, endpoint_id: str, limit: int = 100) -> list[Message]:
        """An endpoint's latest messages, newest first (dead letters among them)."""
        self._require_admin(principal)
        with self.store.snapshot() as tx:
            self._own_endpoint(tx, principal, endpoint_id)
            rows = tx.find(
                webhook_outbox,
                webhook_outbox.c.endpoint_id == endpoint_id,
                order=[webhook_outbox.c.created_at.desc()],
                limit=limit,
            )
        return [_message(r) for r in rows]

    def replay(self, principal: Principal | None, msg_id: str) -> Message:
        """Queue a dead letter again, from its first attempt: for a bank admin, a message of
        the bank's; for the operator (``principal`` None), any."""
        if principal is not None:
            self._require_admin(principal)
        with self.store.transaction() as tx:
            row = tx.get(webhook_outbox, msg_id)
            if row is not None and principal is not None:
                self._own_endpoint(tx, principal, row.endpoint_id)
            if row is None:
                raise NotFound("no webhook message %(id)s", id=msg_id)
            if row.status != "dead":
                raise Conflict(
                    "message %(id)s is %(status)s, not dead", id=msg_id, status=row.status
                )
            tx.update(
                webhook_outbox,
                msg_id,
                status="pending",
                attempts=0,
                next_attempt_at=self.clock(),
                last_error=None,
            )
            return _message(tx.get(webhook_outbox, msg_id))

    @staticmethod
    def _own_endpoint(tx: Tx, principal: Principal, endpoint_id: str) -> Any:
        row = tx.get(webhook_endpoints, endpoint_id)
        if row is None or row.bank_id != principal.bank_id:
            raise NotFound("no webhook endpoint %(id)s", id=endpoint_id)
        return row

    def open_secret(self, endpoint_row: Any) -> str:
        """The signing secret (``whsec_…`` or the Ed25519 seed) of an endpoint's row."""
        return self.protector.open(endpoint_row.secret, endpoint_row.id, SECRET_FIELD)

    @staticmethod
    def _require_admin(principal: Principal) -> None:
        if principal.is_partner or not principal.is_bank_admin:
            raise Forbidden("only a bank administrator manages webhook endpoints")

    # ------------------------------------------------------------------ events

    def member_event(
        self, tx: Tx, member_id: str, event_type: str, data: Mapping[str, Any]
    ) -> None:
        """Queue ``event_type`` about a member, in ``tx``, for every partner the member linked
        with ``receive_webhooks``: the payload names the member by that partner's handle.
        One query finds them (this runs inside every deposit, grant and gift)."""
        now = self.clock()
        told: set[str] = set()  # one message an endpoint, however many links name the member
        for r in member_receivers(tx, member_id):
            if r.endpoint_id in told:
                continue
            expires = utc(r.expires_at)
            if expires is not None and now >= expires:
                continue
            wanted = PartnerScope.RECEIVE_WEBHOOKS
            if wanted not in r.link_scopes.split() or wanted not in r.key_scopes.split():
                continue
            events = tuple(r.events.split()) if r.events is not None else None
            if r.handle and takes(events, event_type):
                told.add(r.endpoint_id)
                self._queue(tx, r.endpoint_id, event_type, {"handle": r.handle, **data})

    def partner_event(
        self, tx: Tx, partner_key_id: str, event_type: str, data: Mapping[str, Any]
    ) -> None:
        """Queue ``event_type`` for each enabled endpoint of a live partner key that holds
        ``receive_webhooks``, in ``tx``."""
        key = tx.get(partner_keys, partner_key_id)
        if key is None or key.revoked_at is not None:
            return
        if PartnerScope.RECEIVE_WEBHOOKS not in key.scopes.split():
            return
        for endpoint in self._live_endpoints(tx, partner_key_id):
            if endpoint.takes(event_type):
                self._queue(tx, endpoint.id, event_type, data)

    def publish_checkpoint(self, size: int) -> int:
        """Queue ``checkpoint.published`` for the log's tree of ``size`` entries to each enabled
        endpoint subscribed to it (of a live key holding ``receive_webhooks``) that was not told
        this size yet, each in the transaction noting it; how many were queued."""
        queued = 0
        with self.store.snapshot() as tx:
            rows = tx.find(webhook_endpoints, webhook_endpoints.c.enabled.is_(True))
        for row in rows:
            endpoint = _endpoint(row)
            if not endpoint.takes("checkpoint.published") or (row.checkpoint_size or 0) >= size:
                continue
            with self.store.transaction() as tx:
                key = tx.get(partner_keys, endpoint.partner_key_id)
                if key is None or key.revoked_at is not None:
                    continue
                if PartnerScope.RECEIVE_WEBHOOKS not in key.scopes.split():
                    continue
                if advance_checkpoint(tx, endpoint.id, row.checkpoint_size, size):
                    data = {"tree_size": size, "checkpoint_url": "/v1/log/checkpoint"}
                    self._queue(tx, endpoint.id, "checkpoint.published", data)
                    queued += 1
        return queued

    def _queue(self, tx: Tx, endpoint_id: str, event_type: str, data: Mapping[str, Any]) -> None:
        now = self.clock()
        msg_id = "msg_" + new_id()
        body = {
            "type": event_type,
            "timestamp": now.isoformat().replace("+00:00", "Z"),
            "data": dict(data),
        }
        tx.insert(
            webhook_outbox,
            id=msg_id,
            endpoint_id=endpoint_id,
            event_type=event_type,
            payload=json.dumps(body, separators=(",", ":"), sort_keys=True),
            status="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )

    @staticmethod
    def _live_endpoints(tx: Tx, partner_key_id: str) -> Iterable[Endpoint]:
        rows = tx.find(
            webhook_endpoints,
            webhook_endpoints.c.partner_key_id == partner_key_id,
            webhook_endpoints.c.enabled.is_(True),
        )
        return [_endpoint(r) for r in rows]
