"""Rows of the accounts tables as model objects (the one place that maps columns to fields)."""

from __future__ import annotations

from typing import Any

from accounts.base import utc_now
from accounts.model import (
    DeviceKey,
    Flag,
    MemberStatus,
    Organisation,
    OrgKind,
    PartnerKey,
    PartnerScope,
    PriorityFlag,
    ProxyGrant,
    Relation,
    RelativeLink,
    RelativeStatus,
    User,
)
from accounts.model import Member as MemberRecord
from accounts.storage import (
    utc,
)


def org_of_row(r: Any) -> Organisation:
    return Organisation(
        r.id,
        r.bank_id,
        r.name,
        OrgKind(r.kind),
        utc(r.created_at) or utc_now(),
        r.created_by,
        r.phone,
    )


def user_of_row(r: Any) -> User:
    return User(
        r.id,
        r.bank_id,
        r.username,
        utc(r.created_at) or utc_now(),
        r.disabled_at is not None,
        r.totp_sealed is not None,
    )


def member_of_row(r: Any) -> MemberRecord:
    return MemberRecord(
        id=r.id,
        bank_id=r.bank_id,
        ledger_account=r.ledger_account,
        is_volunteer=bool(r.is_volunteer),
        is_elder=bool(r.is_elder),
        status=MemberStatus(r.status),
        org_id=r.org_id,
        user_id=r.user_id,
        registered_by=r.registered_by,
        assisted=bool(r.assisted),
        approved_by=r.approved_by,
        approved_at=utc(r.approved_at),
        created_at=utc(r.created_at) or utc_now(),
    )


def flag_of_row(r: Any) -> Flag:
    return Flag(
        r.id,
        r.member_id,
        PriorityFlag(r.flag),
        r.note,
        r.set_by,
        utc(r.set_at) or utc_now(),
        r.cleared_by,
        utc(r.cleared_at),
    )


def proxy_of_row(grant: Any, username: str, member_id: str | None) -> ProxyGrant:
    return ProxyGrant(username, member_id, grant.granted_by, utc(grant.granted_at) or utc_now())


def relative_of_row(r: Any) -> RelativeLink:
    return RelativeLink(
        r.id,
        r.member_id,
        r.relative_id,
        Relation(r.relation),
        RelativeStatus(r.status),
        r.declared_by,
        utc(r.declared_at) or utc_now(),
        r.decided_by,
        utc(r.decided_at),
    )


def device_of_row(r: Any) -> DeviceKey:
    return DeviceKey(
        r.id,
        r.user_id,
        bytes(r.public_key),
        r.name,
        utc(r.created_at) or utc_now(),
        utc(r.revoked_at),
    )


def partner_of_row(r: Any) -> PartnerKey:
    return PartnerKey(
        r.id,
        r.bank_id,
        r.name,
        frozenset(PartnerScope(s) for s in r.scopes.split()),
        r.created_by,
        utc(r.created_at) or utc_now(),
        utc(r.revoked_at),
    )
