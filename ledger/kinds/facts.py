"""Kinds that record facts and move no minutes: policy, approvals, device keys, seals, reports."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Self

from ledger.entry import JSON, EntryRequest
from ledger.errors import MalformedEntry
from ledger.kinds.fields import (
    flag,
    of_kind,
    text,
    whole,
)


@dataclass(frozen=True)
class BankPolicy:
    """A bank's complete policy at ``version`` (``values``: caps, windows, time zone, how
    points show; their names are care's, listed in docs/formats.md#policy)."""

    kind: ClassVar[str] = "policy"
    bank: str
    version: int
    set_by: str
    values: Mapping[str, JSON] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"policy:{self.bank}:{self.version}"

    def to_request(self) -> EntryRequest:
        body = {"bank": self.bank, "version": self.version, "set_by": self.set_by, **self.values}
        return EntryRequest(self.kind, self.id, body=body)

    @classmethod
    def from_entry(cls, request: EntryRequest) -> Self:
        of_kind(request, cls.kind)
        body = request.body
        if not request.id.startswith("policy:"):
            raise MalformedEntry("a bank policy's id is policy:<bank>:<version>", field="id")
        values = {k: v for k, v in body.items() if k not in ("bank", "version", "set_by")}
        return cls(text(body, "bank"), whole(body, "version"), text(body, "set_by"), values)


@dataclass(frozen=True)
class CatalogueEntry:
    """A service type of a bank's catalogue at ``version``: its category and weight (‰)."""

    kind: ClassVar[str] = "policy"
    bank: str
    service: str
    version: int
    category: str
    weight: int
    active: bool
    name_zh: str
    name_en: str
    set_by: str

    @property
    def id(self) -> str:
        return f"service:{self.bank}:{self.service}:{self.version}"

    def to_request(self) -> EntryRequest:
        body: dict[str, JSON] = {
            "bank": self.bank,
            "service": self.service,
            "version": self.version,
            "category": self.category,
            "weight": self.weight,
            "active": self.active,
            "name_zh": self.name_zh,
            "name_en": self.name_en,
            "set_by": self.set_by,
        }
        return EntryRequest(self.kind, self.id, body=body)

    @classmethod
    def from_entry(cls, request: EntryRequest) -> Self:
        of_kind(request, cls.kind)
        if not request.id.startswith("service:"):
            raise MalformedEntry("a catalogue entry's id is service:<bank>:<code>:<v>", field="id")
        body = request.body
        return cls(
            text(body, "bank"),
            text(body, "service"),
            whole(body, "version"),
            text(body, "category"),
            whole(body, "weight"),
            flag(body, "active"),
            text(body, "name_zh"),
            text(body, "name_en"),
            text(body, "set_by"),
        )


@dataclass(frozen=True)
class Approval:
    """A member account became active: its roles and organisation, no name or flag."""

    kind: ClassVar[str] = "approval"
    id: str
    account: str
    roles: tuple[str, ...]
    org: str
    approved_by: str
    assisted: bool

    def to_request(self) -> EntryRequest:
        body: dict[str, JSON] = {
            "account": self.account,
            "roles": list(self.roles),
            "org": self.org,
            "approved_by": self.approved_by,
            "assisted": self.assisted,
        }
        return EntryRequest(self.kind, self.id, body=body)

    @classmethod
    def from_entry(cls, request: EntryRequest) -> Self:
        of_kind(request, cls.kind)
        body = request.body
        roles = body.get("roles")
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise MalformedEntry("body.roles must be a list of roles", field="body.roles")
        return cls(
            request.id,
            text(body, "account"),
            tuple(roles),
            text(body, "org"),
            text(body, "approved_by"),
            flag(body, "assisted"),
        )


@dataclass(frozen=True)
class Device:
    """A volunteer's phone key registered or revoked (``action``); the auditor checks
    deposits' device signatures against it."""

    kind: ClassVar[str] = "device"
    id: str
    key: str
    public_key: str  # base64 of the 32-byte Ed25519 key
    account: str
    action: str

    def to_request(self) -> EntryRequest:
        body: dict[str, JSON] = {
            "key": self.key,
            "public_key": self.public_key,
            "account": self.account,
            "action": self.action,
        }
        return EntryRequest(self.kind, self.id, body=body)

    @classmethod
    def from_entry(cls, request: EntryRequest) -> Self:
        of_kind(request, cls.kind)
        body = request.body
        return cls(
            request.id,
            text(body, "key"),
            text(body, "public_key"),
            text(body, "account"),
            text(body, "action"),
        )


@dataclass(frozen=True)
class Seal:
    """The audit trail's first ``audit_count`` events, sealed by the hash of the last."""

    kind: ClassVar[str] = "seal"
    audit_count: int
    audit_head: str  # base64 of the hash of event audit_count − 1

    @property
    def id(self) -> str:
        return f"audit-seal:{self.audit_count}"

    def to_request(self) -> EntryRequest:
        body: dict[str, JSON] = {"audit_count": self.audit_count, "audit_head": self.audit_head}
        return EntryRequest(self.kind, self.id, body=body)

    @classmethod
    def from_entry(cls, request: EntryRequest) -> Self:
        of_kind(request, cls.kind)
        return cls(whole(request.body, "audit_count"), text(request.body, "audit_head"))


@dataclass(frozen=True)
class ReportAnchor:
    """A half-yearly report's document anchored: its SHA-256 and the checkpoint size its public
    figures were computed at."""

    kind: ClassVar[str] = "report"
    bank: str
    half: str
    format: str
    sha256: str
    tree_size: int

    @property
    def id(self) -> str:
        return f"report:{self.bank}:{self.half}"

    def to_request(self) -> EntryRequest:
        body: dict[str, JSON] = {
            "bank": self.bank,
            "format": self.format,
            "half": self.half,
            "sha256": self.sha256,
            "tree_size": self.tree_size,
        }
        return EntryRequest(self.kind, self.id, body=body)

    @classmethod
    def from_entry(cls, request: EntryRequest) -> Self:
        of_kind(request, cls.kind)
        body = request.body
        return cls(
            text(body, "bank"),
            text(body, "half"),
            text(body, "format"),
            text(body, "sha256"),
            whole(body, "tree_size"),
        )
