"""Tables of the workflow (SQLAlchemy Core on the shared metadata) and row → record mapping.

The ledger is the record of every minute that moved; these tables hold the workflow around it
(who asked, who served, who confirmed, who verified) and point at ledger entries by ``seq``.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
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
    UniqueConstraint,
)

from accounts.storage import utc
from care.model import (
    Category,
    ConfirmedAs,
    RecordStatus,
    RequestStatus,
    ServiceRecord,
    ServiceRequest,
    ServiceType,
)
from database import metadata

ID = 32
TS = DateTime(timezone=True)

service_types = Table(
    "service_types",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("bank_id", String(ID), ForeignKey("banks.id"), nullable=False),
    Column("code", String(32), nullable=False),
    Column("name_zh", String(100), nullable=False),
    Column("name_en", String(100), nullable=False),
    Column("category", String(32), nullable=False),
    Column("weight_permille", Integer, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("version", Integer, nullable=False),
    Column("ledger_seq", BigInteger, nullable=True),
    Column("updated_by", String(ID), nullable=True),
    Column("updated_at", TS, nullable=False),
    UniqueConstraint("bank_id", "code", name="uq_service_types_bank_code"),
)

bank_policies = Table(
    "bank_policies",
    metadata,
    Column("bank_id", String(ID), ForeignKey("banks.id"), primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("values_json", Text, nullable=False),
    Column("set_by", String(ID), nullable=True),
    Column("set_at", TS, nullable=False),
    Column("ledger_seq", BigInteger, nullable=True),
)

service_requests = Table(
    "service_requests",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("bank_id", String(ID), ForeignKey("banks.id"), nullable=False),
    Column("elder_id", String(ID), ForeignKey("members.id"), nullable=False, index=True),
    Column("org_id", String(ID), ForeignKey("organisations.id"), nullable=False, index=True),
    Column("service_type_id", String(ID), ForeignKey("service_types.id"), nullable=False),
    Column("window_start", TS, nullable=False),
    Column("window_end", TS, nullable=False),
    Column("minutes", Integer, nullable=False),
    Column("notes", String(500), nullable=True),
    Column("redeem", Boolean, nullable=False),
    Column("status", String(16), nullable=False),
    Column("requested_by", String(ID), nullable=False),
    Column("acting_for", Boolean, nullable=False),
    Column("volunteer_id", String(ID), ForeignKey("members.id"), nullable=True, index=True),
    Column("assigned_by", String(ID), nullable=True),
    Column("hold_minutes", Integer, nullable=False),
    Column("cancelled_by", String(ID), nullable=True),
    Column("cancel_reason", String(500), nullable=True),
    Column("created_at", TS, nullable=False),
)

service_records = Table(
    "service_records",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("bank_id", String(ID), ForeignKey("banks.id"), nullable=False),
    Column("request_id", String(ID), ForeignKey("service_requests.id"), nullable=True),
    Column("volunteer_id", String(ID), ForeignKey("members.id"), nullable=False),
    Column("elder_id", String(ID), ForeignKey("members.id"), nullable=False, index=True),
    Column("org_id", String(ID), ForeignKey("organisations.id"), nullable=False, index=True),
    Column("service_type_id", String(ID), ForeignKey("service_types.id"), nullable=False),
    Column("check_in", TS, nullable=False),
    Column("check_out", TS, nullable=False),
    Column("minutes", Integer, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("device_key_id", String(64), nullable=True),
    Column("device_signature", String(200), nullable=True),
    Column("status", String(16), nullable=False),
    Column("confirmed_by", String(ID), nullable=True),
    Column("confirmed_as", String(32), nullable=True),
    Column("confirmed_at", TS, nullable=True),
    Column("verified_by", String(ID), nullable=True),
    Column("verified_at", TS, nullable=True),
    Column("rejected_reason", String(500), nullable=True),
    Column("deposit_seq", BigInteger, nullable=True),
    Column("deposit_minutes", Integer, nullable=True),
    Column("created_by", String(ID), nullable=False),
    Column("created_at", TS, nullable=False),
)

confirmation_codes = Table(
    "confirmation_codes",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("elder_id", String(ID), ForeignKey("members.id"), nullable=False, index=True),
    Column("code_hash", String(64), nullable=False),
    Column("created_by", String(ID), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("expires_at", TS, nullable=False),
    Column("used_at", TS, nullable=True),
    Column("record_id", String(ID), nullable=True),
)

reversal_requests = Table(
    "reversal_requests",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("bank_id", String(ID), ForeignKey("banks.id"), nullable=False),
    Column("entry_seq", BigInteger, nullable=False),
    Column("reason", String(500), nullable=False),
    Column("reason_code", String(32), nullable=False, server_default="other"),
    Column("status", String(16), nullable=False),
    Column("requested_by", String(ID), nullable=False),
    Column("requested_at", TS, nullable=False),
    Column("decided_by", String(ID), nullable=True),
    Column("decided_at", TS, nullable=True),
    Column("reversal_seq", BigInteger, nullable=True),
)

# Free text that belongs with a ledger entry but not in the public log (a grant's reason), sealed
# with the data key under the entry's id.
entry_notes = Table(
    "entry_notes",
    metadata,
    Column("entry_id", String(128), primary_key=True),
    Column("bank_id", String(ID), ForeignKey("banks.id"), nullable=False),
    Column("note_sealed", LargeBinary, nullable=False),
    Column("written_by", String(ID), nullable=False),
    Column("written_at", TS, nullable=False),
)

Index(
    "ix_service_records_volunteer_time", service_records.c.volunteer_id, service_records.c.check_in
)


def to_type(r: Any) -> ServiceType:
    return ServiceType(
        r.id,
        r.bank_id,
        r.code,
        r.name_zh,
        r.name_en,
        Category(r.category),
        r.weight_permille,
        bool(r.active),
        r.version,
        r.ledger_seq,
    )


def to_request(r: Any) -> ServiceRequest:
    return ServiceRequest(
        id=r.id,
        bank_id=r.bank_id,
        elder_id=r.elder_id,
        org_id=r.org_id,
        service_type_id=r.service_type_id,
        window_start=_ts(r.window_start),
        window_end=_ts(r.window_end),
        minutes=r.minutes,
        notes=r.notes,
        redeem=bool(r.redeem),
        status=RequestStatus(r.status),
        requested_by=r.requested_by,
        acting_for=bool(r.acting_for),
        volunteer_id=r.volunteer_id,
        assigned_by=r.assigned_by,
        hold_minutes=r.hold_minutes,
        cancelled_by=r.cancelled_by,
        cancel_reason=r.cancel_reason,
        created_at=_ts(r.created_at),
    )


def stored_request(r: ServiceRequest) -> dict[str, Any]:
    """A new request's row (enums by value), the inverse of ``to_request``."""
    return {
        f.name: getattr(r, f.name).value if f.name == "status" else getattr(r, f.name)
        for f in dataclasses.fields(r)
    }


def to_record(r: Any) -> ServiceRecord:
    return ServiceRecord(
        id=r.id,
        bank_id=r.bank_id,
        request_id=r.request_id,
        volunteer_id=r.volunteer_id,
        elder_id=r.elder_id,
        org_id=r.org_id,
        service_type_id=r.service_type_id,
        check_in=_ts(r.check_in),
        check_out=_ts(r.check_out),
        minutes=r.minutes,
        digest=r.digest,
        device_key_id=r.device_key_id,
        device_signature=r.device_signature,
        status=RecordStatus(r.status),
        confirmed_by=r.confirmed_by,
        confirmed_as=ConfirmedAs(r.confirmed_as) if r.confirmed_as else None,
        confirmed_at=utc(r.confirmed_at),
        verified_by=r.verified_by,
        verified_at=utc(r.verified_at),
        rejected_reason=r.rejected_reason,
        deposit_seq=r.deposit_seq,
        deposit_minutes=r.deposit_minutes,
        created_by=r.created_by,
        created_at=_ts(r.created_at),
    )


def _ts(value: Any) -> datetime:
    stamp = utc(value)
    assert stamp is not None
    return stamp
