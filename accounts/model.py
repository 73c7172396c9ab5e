"""The people and organisations of a time bank, and who may act for whom.

Plain immutable records; no web or database code. Personal data (name, phone, ID number,
address, birth date, health notes) lives only in the accounts tables and never reaches the log:
the ledger sees a member only as the opaque ``ledger_account``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


class Role(enum.StrEnum):
    VOLUNTEER = "volunteer"
    ELDER = "elder"
    FAMILY_PROXY = "family_proxy"
    ORG_STAFF = "org_staff"
    ORG_ADMIN = "org_admin"
    BANK_ADMIN = "bank_admin"
    AUDITOR = "auditor"


STAFF_ROLES = frozenset({Role.ORG_STAFF, Role.ORG_ADMIN})
# Roles that act on other people's records: their sessions are kept short.
DESK_ROLES = STAFF_ROLES | {Role.BANK_ADMIN, Role.AUDITOR}


class OrgKind(enum.StrEnum):
    COMMUNITY_CENTRE = "community_centre"  # 社区
    SERVICE_STATION = "service_station"  # 服务站
    SOCIAL_ORGANISATION = "social_organisation"  # 社会组织


class MemberStatus(enum.StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    REJECTED = "rejected"


class Relation(enum.StrEnum):
    SPOUSE = "spouse"
    PARENT = "parent"
    CHILD = "child"
    GRANDPARENT = "grandparent"
    GRANDCHILD = "grandchild"
    SIBLING = "sibling"


class RelativeStatus(enum.StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"


class PriorityFlag(enum.StrEnum):
    LIVING_ALONE = "living_alone"  # 独居
    DISABLED = "disabled"  # 失能
    ADVANCED_AGE = "advanced_age"  # 高龄
    LOW_INCOME = "low_income"  # 经济困难
    EMPTY_NEST = "empty_nest"  # 空巢


class PartnerScope(enum.StrEnum):
    """What a partner key may ask of a member; a consent link grants a subset of these."""

    READ_POINTS = "read_points"
    READ_STATEMENT = "read_statement"
    RECEIVE_WEBHOOKS = "receive_webhooks"
    REQUEST_EXCHANGE = "request_exchange"


@dataclass(frozen=True)
class Grant:
    """One role held in one scope: a bank, an organisation, or one elder (family proxy)."""

    role: Role
    bank_id: str
    org_id: str | None = None
    member_id: str | None = None


@dataclass(frozen=True)
class Principal:
    """Who is calling, as established from a bearer token or a partner API key."""

    user_id: str | None
    bank_id: str
    grants: tuple[Grant, ...]
    member_id: str | None = None  # the caller's own member record, if any
    second_factor: bool = False  # the session was opened with TOTP
    partner_key_id: str | None = None
    partner_scopes: frozenset[str] = field(default_factory=frozenset)
    session_id: str | None = None
    member_active: bool = False  # the caller's member record is approved (status active)
    # Logged in with a one-time password not yet changed: no roles until it is changed.
    password_change_due: bool = False
    one_time_session: bool = False  # the session was opened with a one-time password

    @property
    def acting_member_id(self) -> str | None:
        """The caller's member id where it grants anything: only an active member acts as
        the elder or the volunteer of a request or record."""
        return self.member_id if self.member_active else None

    def has(self, role: Role) -> bool:
        return any(g.role is role for g in self.grants)

    def orgs(self, *roles: Role) -> set[str]:
        wanted = set(roles) or STAFF_ROLES
        return {g.org_id for g in self.grants if g.role in wanted and g.org_id}

    def proxied_members(self) -> set[str]:
        return {g.member_id for g in self.grants if g.role is Role.FAMILY_PROXY and g.member_id}

    @property
    def works_at_a_desk(self) -> bool:
        return any(g.role in DESK_ROLES for g in self.grants)

    @property
    def is_bank_admin(self) -> bool:
        return self.has(Role.BANK_ADMIN)

    @property
    def is_partner(self) -> bool:
        return self.partner_key_id is not None


@dataclass(frozen=True)
class Bank:
    id: str
    name: str
    created_at: datetime


@dataclass(frozen=True)
class Organisation:
    id: str
    bank_id: str
    name: str
    kind: OrgKind
    created_at: datetime
    created_by: str | None
    phone: str | None = None  # shown on every page as "call the centre"


@dataclass(frozen=True)
class User:
    id: str
    bank_id: str
    username: str
    created_at: datetime
    disabled: bool = False
    totp_enabled: bool = False


@dataclass(frozen=True)
class Member:
    id: str
    bank_id: str
    ledger_account: str
    is_volunteer: bool
    is_elder: bool
    status: MemberStatus
    org_id: str | None  # the organisation that approved or registered the member
    user_id: str | None
    registered_by: str | None  # user id of staff/family who registered them; None = self
    assisted: bool  # registered by someone else on the member's behalf
    approved_by: str | None
    approved_at: datetime | None
    created_at: datetime


@dataclass(frozen=True)
class Flag:
    id: str
    member_id: str
    flag: PriorityFlag
    note: str | None
    set_by: str
    set_at: datetime
    cleared_by: str | None = None
    cleared_at: datetime | None = None


@dataclass(frozen=True)
class ProxyGrant:
    """A family member acting for an elder: their login, their own member record (if
    any) and who granted it when."""

    username: str
    member_id: str | None
    granted_by: str | None
    granted_at: datetime


@dataclass(frozen=True)
class ProxyCandidate:
    """A confirmed relative of an elder whom staff may make her proxy: member, login, and
    how the two are related (as declared, from either side)."""

    member_id: str
    username: str
    relation: Relation


@dataclass(frozen=True)
class RelativeLink:
    id: str
    member_id: str
    relative_id: str
    relation: Relation
    status: RelativeStatus
    declared_by: str
    declared_at: datetime
    decided_by: str | None = None
    decided_at: datetime | None = None


@dataclass(frozen=True)
class DeviceKey:
    id: str  # hex SHA-256 of the public key, first 16 bytes
    user_id: str
    public_key: bytes
    name: str
    created_at: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True)
class PartnerKey:
    id: str
    bank_id: str
    name: str
    scopes: frozenset[PartnerScope]
    created_by: str
    created_at: datetime
    revoked_at: datetime | None = None
