"""Tables for accounts and a unit of work over them (SQLAlchemy Core).

``AccountsStore.transaction()`` yields a ``Tx`` bound to one serialized write transaction that
rolls back unless the block completes; ``snapshot()`` yields one for consistent reads.
Personal data is in ``member_personal``, apart from everything else, with the sensitive
columns sealed by ``accounts.protection``. ``pii_access`` is append-only.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Select,
    String,
    Table,
    UniqueConstraint,
    Update,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Row

from database import Database, metadata, opened

ID = 32


def _id_column(name: str = "id") -> Column[Any]:
    return Column(name, String(ID), primary_key=True)


TS = DateTime(timezone=True)

banks = Table(
    "banks",
    metadata,
    _id_column(),
    Column("name", String(200), nullable=False),
    Column("created_at", TS, nullable=False),
)

organisations = Table(
    "organisations",
    metadata,
    _id_column(),
    Column("bank_id", String(ID), ForeignKey("banks.id"), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("created_by", String(ID), nullable=True),
    Column("phone", String(32), nullable=True),  # the centre's public number, not personal data
    UniqueConstraint("bank_id", "name", name="uq_organisations_bank_name"),
)

users = Table(
    "users",
    metadata,
    _id_column(),
    Column("bank_id", String(ID), ForeignKey("banks.id"), nullable=False, index=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("password_hash", String(200), nullable=True),
    Column("created_at", TS, nullable=False),
    Column("disabled_at", TS, nullable=True),
    Column("totp_sealed", LargeBinary, nullable=True),
    Column("totp_pending_sealed", LargeBinary, nullable=True),
    Column("totp_last_step", Integer, nullable=True),
    Column("failed_logins", Integer, nullable=False, default=0),
    Column("locked_until", TS, nullable=True),
    # Set while the password is a one-time password an administrator issued: it works until
    # then, and only to change it (and enrol TOTP).
    Column("one_time_until", TS, nullable=True),
    # A TOTP enrolment code an administrator issued (its hash) and until when it works.
    Column("enrolment_code_hash", String(64), nullable=True),
    Column("enrolment_code_until", TS, nullable=True),
)

role_grants = Table(
    "role_grants",
    metadata,
    _id_column(),
    Column("user_id", String(ID), ForeignKey("users.id"), nullable=False, index=True),
    Column("role", String(32), nullable=False),
    Column("bank_id", String(ID), ForeignKey("banks.id"), nullable=False),
    Column("org_id", String(ID), ForeignKey("organisations.id"), nullable=True),
    Column("member_id", String(ID), nullable=True),
    Column("granted_by", String(ID), nullable=True),
    Column("granted_at", TS, nullable=False),
    Column("revoked_at", TS, nullable=True),
)

members = Table(
    "members",
    metadata,
    _id_column(),
    Column("bank_id", String(ID), ForeignKey("banks.id"), nullable=False, index=True),
    Column("ledger_account", String(128), nullable=False, unique=True),
    Column("is_volunteer", Boolean, nullable=False),
    Column("is_elder", Boolean, nullable=False),
    Column("status", String(16), nullable=False),
    Column("org_id", String(ID), ForeignKey("organisations.id"), nullable=True, index=True),
    Column("user_id", String(ID), ForeignKey("users.id"), nullable=True, unique=True),
    Column("registered_by", String(ID), nullable=True),
    Column("assisted", Boolean, nullable=False),
    Column("approved_by", String(ID), nullable=True),
    Column("approved_at", TS, nullable=True),
    Column("rejected_reason", String(500), nullable=True),
    Column("created_at", TS, nullable=False),
)

member_personal = Table(
    "member_personal",
    metadata,
    Column("member_id", String(ID), ForeignKey("members.id"), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("phone_sealed", LargeBinary, nullable=True),
    Column("phone_index", String(64), nullable=True, index=True),
    Column("id_number_sealed", LargeBinary, nullable=True),
    Column("id_number_index", String(64), nullable=True, index=True),
    Column("address_sealed", LargeBinary, nullable=True),
    Column("birth_date", Date, nullable=True),
    Column("health_sealed", LargeBinary, nullable=True),
)

member_flags = Table(
    "member_flags",
    metadata,
    _id_column(),
    Column("member_id", String(ID), ForeignKey("members.id"), nullable=False, index=True),
    Column("flag", String(32), nullable=False),
    Column("note", String(500), nullable=True),
    Column("set_by", String(ID), nullable=False),
    Column("set_at", TS, nullable=False),
    Column("cleared_by", String(ID), nullable=True),
    Column("cleared_at", TS, nullable=True),
)

relatives = Table(
    "relatives",
    metadata,
    _id_column(),
    Column("member_id", String(ID), ForeignKey("members.id"), nullable=False, index=True),
    Column("relative_id", String(ID), ForeignKey("members.id"), nullable=False, index=True),
    Column("relation", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("declared_by", String(ID), nullable=False),
    Column("declared_at", TS, nullable=False),
    Column("decided_by", String(ID), nullable=True),
    Column("decided_at", TS, nullable=True),
    UniqueConstraint("member_id", "relative_id", name="uq_relatives_pair"),
)

sessions = Table(
    "sessions",
    metadata,
    _id_column(),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("user_id", String(ID), ForeignKey("users.id"), nullable=False, index=True),
    Column("created_at", TS, nullable=False),
    Column("expires_at", TS, nullable=False),
    Column("revoked_at", TS, nullable=True),
    Column("second_factor", Boolean, nullable=False),
    Column("one_time", Boolean, nullable=False, default=False),  # opened with a one-time password
)

device_keys = Table(
    "device_keys",
    metadata,
    _id_column(),
    Column("user_id", String(ID), ForeignKey("users.id"), nullable=False, index=True),
    Column("public_key", LargeBinary(32), nullable=False, unique=True),
    Column("name", String(100), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("revoked_at", TS, nullable=True),
)

partner_keys = Table(
    "partner_keys",
    metadata,
    _id_column(),
    Column("bank_id", String(ID), ForeignKey("banks.id"), nullable=False, index=True),
    Column("name", String(100), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("scopes", String(200), nullable=False),
    Column("created_by", String(ID), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("revoked_at", TS, nullable=True),
)

login_throttle = Table(
    "login_throttle",
    metadata,
    Column("client_key", String(64), primary_key=True),
    Column("window_start", TS, nullable=False),
    Column("attempts", Integer, nullable=False),
)

pii_access = Table(
    "pii_access",
    metadata,
    _id_column(),
    Column("at", TS, nullable=False),
    Column("actor_user_id", String(ID), nullable=False),
    Column("actor_role", String(32), nullable=False),
    Column("member_id", String(ID), nullable=False, index=True),
    Column("fields", String(200), nullable=False),
    Column("reason", String(500), nullable=False),
)

Index("ix_role_grants_scope", role_grants.c.bank_id, role_grants.c.org_id)

# What who a caller is (``Sessions.authenticate``) and how they relate to a member
# (``MemberViews.member_access``) are read from: a write to any of them must go through
# ``AccountsStore.transaction`` (which bumps ``AccountsStore.writes``).
CALLER_TABLES = frozenset(
    t.name
    for t in (banks, organisations, users, role_grants, members, relatives, sessions, partner_keys)
)


def utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# Statements by id, built once per table: the id (and an update's values) are parameters, so
# nothing is constructed per call. Building a statement cost more than running it on the hot
# paths (a profile of a donation: docs/performance.md).
@functools.cache
def _select_by_id(table: Table) -> Select[Any]:
    return select(table).where(table.c.id == bindparam("b_row_id"))


@functools.cache
def _update_by_id(table: Table) -> Update:
    return update(table).where(table.c.id == bindparam("b_row_id"))


class Tx:
    """Row-level operations inside one transaction."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def insert(self, table: Table, **values: Any) -> None:
        # The values as parameters, not in the statement: one cached compiled form per table
        # and column set, nothing built per row (inserts sit inside every write).
        self.conn.execute(insert(table), values)

    def update(self, table: Table, row_id: str, **values: Any) -> int:
        result = self.conn.execute(_update_by_id(table), {"b_row_id": row_id, **values})
        return int(result.rowcount)

    def get(self, table: Table, row_id: str) -> Row[Any] | None:
        return self.conn.execute(_select_by_id(table), {"b_row_id": row_id}).first()

    def find(
        self,
        table: Table,
        *conditions: Any,
        order: Sequence[Any] = (),
        limit: int | None = None,
    ) -> list[Row[Any]]:
        stmt = select(table).where(and_(*conditions)) if conditions else select(table)
        return list(self.conn.execute(stmt.order_by(*order).limit(limit)))

    def first(self, table: Table, *conditions: Any) -> Row[Any] | None:
        return self.conn.execute(select(table).where(and_(*conditions))).first()

    def count(self, table: Table, *conditions: Any) -> int:
        stmt = select(func.count()).select_from(table)
        if conditions:
            stmt = stmt.where(and_(*conditions))
        return int(self.conn.execute(stmt).scalar_one())

    def personal(self, member_id: str) -> Row[Any] | None:
        return self.first(member_personal, member_personal.c.member_id == member_id)

    def members_in_scope(
        self,
        bank_id: str,
        org_ids: set[str] | None,
        indexes: list[str] | None,
        limit: int,
        offset: int,
    ) -> list[Row[Any]]:
        """Members of a bank (of ``org_ids`` only, if given), optionally by blind index."""
        stmt = select(members).where(members.c.bank_id == bank_id)
        if org_ids is not None:
            stmt = stmt.where(members.c.org_id.in_(org_ids))
        if indexes is not None:
            stmt = stmt.join(member_personal, member_personal.c.member_id == members.c.id).where(
                or_(
                    member_personal.c.phone_index.in_(indexes),
                    member_personal.c.id_number_index.in_(indexes),
                )
            )
        stmt = stmt.order_by(members.c.created_at, members.c.id).limit(limit).offset(offset)
        return list(self.conn.execute(stmt))

    def index_held_by_another_active(self, member_id: str, column: str) -> bool:
        """Whether an active member of ``member_id``'s bank other than it has its phone or ID
        number (``column``: ``phone_index`` or ``id_number_index``)."""
        own = (
            select(members.c.bank_id, member_personal.c[column])
            .join(member_personal, member_personal.c.member_id == members.c.id)
            .where(members.c.id == member_id)
        )
        row = self.conn.execute(own).first()
        if row is None or row[1] is None:
            return False
        stmt = (
            select(member_personal.c.member_id)
            .join(members, members.c.id == member_personal.c.member_id)
            .where(
                members.c.bank_id == row[0],
                member_personal.c[column] == row[1],
                members.c.status == "active",
                members.c.id != member_id,
            )
            .limit(1)
        )
        return self.conn.execute(stmt).first() is not None

    def index_holder_orgs(self, bank_id: str, column: str, value: str) -> set[str | None]:
        """The organisations of the bank's members holding this blind index (none: it is free)."""
        stmt = (
            select(members.c.org_id)
            .join(member_personal, members.c.id == member_personal.c.member_id)
            .where(members.c.bank_id == bank_id, member_personal.c[column] == value)
        )
        return {row.org_id for row in self.conn.execute(stmt)}

    def throttle(self, client_key: str, now: datetime, window_seconds: int) -> int:
        """Count one attempt for ``client_key`` in the current window; returns the count."""
        row = self.first(login_throttle, login_throttle.c.client_key == client_key)
        window_start = utc(row.window_start) if row else None
        if row is None:
            self.insert(login_throttle, client_key=client_key, window_start=now, attempts=1)
            return 1
        assert window_start is not None
        if (now - window_start).total_seconds() >= window_seconds:
            self.conn.execute(
                update(login_throttle)
                .where(login_throttle.c.client_key == client_key)
                .values(window_start=now, attempts=1)
            )
            return 1
        self.conn.execute(
            update(login_throttle)
            .where(login_throttle.c.client_key == client_key)
            .values(attempts=login_throttle.c.attempts + 1)
        )
        return int(row.attempts) + 1

    def name_failures(self, name_key: str) -> tuple[int, datetime | None]:
        """Failed logins in a row under a username nobody has, and when the last one was."""
        row = self.first(login_throttle, login_throttle.c.client_key == name_key)
        return (int(row.attempts), utc(row.window_start)) if row else (0, None)

    def count_name_failure(self, name_key: str, now: datetime) -> None:
        """One more failed login under a username nobody has (``window_start`` holds the
        time of the last one, as ``users.locked_until`` follows the last for a real user)."""
        if self.first(login_throttle, login_throttle.c.client_key == name_key) is None:
            self.insert(login_throttle, client_key=name_key, window_start=now, attempts=1)
            return
        self.conn.execute(
            update(login_throttle)
            .where(login_throttle.c.client_key == name_key)
            .values(attempts=login_throttle.c.attempts + 1, window_start=now)
        )

    def throttle_started(self, client_key: str) -> datetime | None:
        """When ``client_key``'s current window started (None before its first attempt)."""
        row = self.first(login_throttle, login_throttle.c.client_key == client_key)
        return utc(row.window_start) if row else None

    def throttle_count(self, client_key: str, now: datetime, window_seconds: int) -> int:
        """Failures counted for ``client_key`` in its current window (0 once it has passed)."""
        row = self.first(login_throttle, login_throttle.c.client_key == client_key)
        if row is None:
            return 0
        start = utc(row.window_start)
        assert start is not None
        return 0 if (now - start).total_seconds() >= window_seconds else int(row.attempts)


class AccountsStore:
    def __init__(self, database: Database | str) -> None:
        self.database, self._owned = opened(database)
        self.writer, self.reader = self.database.writer, self.database.reader
        # Bumped by every write transaction, committed or not: what a reader caches from these
        # tables (who a token is, how a caller relates to a member) is stale once this moved.
        # The workflow's writes, which change no caller, are not among them
        # (``care.base.CareBase._commit_workflow``).
        self.writes = 0

    def dispose(self) -> None:
        if self._owned:
            self.database.dispose()

    def holds_personal_data(self) -> bool:
        with self.snapshot() as tx:
            return tx.count(member_personal) > 0

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        try:
            with self.database.writing(), self.writer.begin() as conn:
                yield Tx(conn)
        finally:
            self.writes += 1

    @contextmanager
    def snapshot(self) -> Iterator[Tx]:
        with self.reader.begin() as conn:
            yield Tx(conn)
