"""The signed audit trail: every state-changing action and every read of full personal data.

Events are hash-chained in ``audit_events`` (append-only, like the log): each event's hash is
``SHA-256("timebank-audit-v1\\n" ‖ canonical JSON of the event with the previous hash)``.
The chain is **sealed into the ledger**: a ``seal`` entry carries the head hash and the count,
so the log's signed checkpoint (and every witness cosignature on it) covers the trail too.
Anyone holding the events and the log can check that no event was edited, removed, inserted
or reordered before the last seal.

Events hold ids only (user, member, key, object ids), never names, phones or other personal
data.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    func,
    select,
)

from database import Database, metadata, opened
from database.driver import driver_rows
from database.group import Pending, Row, RowStatement
from ledger import AppendResult, LedgerPort
from ledger.entry import canonical_json
from ledger.kinds import Seal as SealEntry

DOMAIN = b"timebank-audit-v1\n"
ZERO = bytes(32)

audit_events = Table(
    "audit_events",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("time", String(32), nullable=False),
    Column("bank_id", String(32), nullable=True, index=True),
    Column("actor", String(64), nullable=False),
    Column("role", String(32), nullable=False),
    Column("on_behalf", String(64), nullable=True),
    Column("action", String(200), nullable=False),
    Column("objects", Text, nullable=False),
    Column("client", String(64), nullable=False),
    Column("device_key", String(64), nullable=True),
    Column("outcome", String(16), nullable=False),
    Column("status", Integer, nullable=False),
    Column("prev", LargeBinary(32), nullable=False, unique=True),
    Column("hash", LargeBinary(32), nullable=False),
)
Index("ix_audit_events_actor", audit_events.c.actor, audit_events.c.seq)


@dataclass(frozen=True)
class AuditEvent:
    seq: int
    time: str
    bank_id: str | None
    actor: str
    role: str
    on_behalf: str | None
    action: str
    objects: tuple[str, ...]
    client: str
    device_key: str | None
    outcome: str  # ok | refused | failed
    status: int
    prev: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time,
            "bank": self.bank_id,
            "actor": self.actor,
            "role": self.role,
            "on_behalf": self.on_behalf,
            "action": self.action,
            "objects": list(self.objects),
            "client": self.client,
            "device_key": self.device_key,
            "outcome": self.outcome,
            "status": self.status,
            "prev": base64.b64encode(self.prev).decode(),
        }

    def hash(self) -> bytes:
        return hashlib.sha256(DOMAIN + canonical_json(self.to_json())).digest()

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> AuditEvent:
        return cls(
            seq=int(raw["seq"]),
            time=str(raw["time"]),
            bank_id=raw.get("bank"),
            actor=str(raw["actor"]),
            role=str(raw["role"]),
            on_behalf=raw.get("on_behalf"),
            action=str(raw["action"]),
            objects=tuple(str(o) for o in raw["objects"]),
            client=str(raw["client"]),
            device_key=raw.get("device_key"),
            outcome=str(raw["outcome"]),
            status=int(raw["status"]),
            prev=base64.b64decode(raw["prev"]),
        )


@dataclass(frozen=True)
class Seal:
    """What a ``seal`` ledger entry claims about the trail."""

    ledger_seq: int
    count: int
    head: bytes


# A bound of the time filter: a day or an RFC 3339 UTC time (``2026-12-01``,
# ``2026-12-01T08:00Z``, ``…T08:00:00.5Z``).
TIME_BOUND = re.compile(r"\d{4}-\d\d-\d\d(T\d\d:\d\d(:\d\d(\.\d{1,6})?)?Z)?\Z")


def time_bound(text: str) -> str | None:
    """``text`` as events write their times (``2026-12-01`` → ``2026-12-01T00:00:00.000000Z``),
    since the filter compares them as text; None when it is not a day or a UTC time."""
    if not TIME_BOUND.match(text):
        return None
    day, _, clock = text.removesuffix("Z").partition("T")
    try:
        moment = datetime.fromisoformat(f"{day}T{clock or '00:00'}+00:00")
    except ValueError:  # 2026-02-30, 25:00
        return None
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def outcome_of(status: int, role: str = "") -> str:
    """An HTTP status's outcome; for an operator command (``role`` "operator", which only the
    command line records), its exit status's: 0 is ok, anything else refused."""
    if role == "operator":
        return "ok" if status == 0 else "refused"
    return "ok" if status < 400 else ("failed" if status >= 500 else "refused")


# The chain's last event: read by the first event appended in a transaction (built once).
_LAST_EVENT = (
    select(audit_events.c.seq, audit_events.c.hash).order_by(audit_events.c.seq.desc()).limit(1)
)

# What every keyed write runs (the chain's head once a batch, its event each request) goes to
# the driver directly (``database.driver``): SQLAlchemy's execution layers cost more CPU than
# the statement itself, ~90 µs of it on PostgreSQL.
_LAST_EVENT_SQL = "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1"
_EVENT_COLUMNS = [c.name for c in audit_events.columns]
_INSERT_EVENT_SQL = (
    f"INSERT INTO audit_events ({', '.join(_EVENT_COLUMNS)})"  # noqa: S608 - names, no values
    f" VALUES ({', '.join('?' * len(_EVENT_COLUMNS))})"
)


@lru_cache(maxsize=64)
def _insert_events(count: int) -> str:
    marks = f"({', '.join('?' * len(_EVENT_COLUMNS))})"
    return (
        f"INSERT INTO audit_events ({', '.join(_EVENT_COLUMNS)})"  # noqa: S608 - names, no values
        f" VALUES {', '.join([marks] * count)}"
    )


_EVENT_ROW = RowStatement(_INSERT_EVENT_SQL, _insert_events)


@dataclass(frozen=True)
class _Head:
    seq: int
    hash: bytes


_HEAD_KEY = "audit.chain_head"


def _chain_head(conn: Connection) -> _Head | None:
    """The chain's last event as this transaction sees it. A batch of the group commit appends
    many events in one transaction: each after the first takes the head the one before left
    (kept with the connection, for this very transaction only), instead of a query. Under a
    savepoint (a batch run again piece by piece, any piece may be rolled back) it is read."""
    known = conn.info.get(_HEAD_KEY)
    if (
        known is not None
        and known[0] is conn.get_transaction()
        and conn.get_nested_transaction() is None
    ):
        head: _Head = known[1]
        return head
    last = driver_rows(conn, _LAST_EVENT_SQL, ())
    return _Head(int(last[0][0]), bytes(last[0][1])) if last else None


def _remember_head(conn: Connection, head: _Head) -> None:
    if conn.get_nested_transaction() is None:
        conn.info[_HEAD_KEY] = (conn.get_transaction(), head)
    else:
        conn.info.pop(_HEAD_KEY, None)


class AuditTrail:
    def __init__(self, database: Database | str) -> None:
        self.database, self._owned = opened(database)
        self.writer, self.reader = self.database.writer, self.database.reader
        self.is_sqlite = self.database.is_sqlite

    def dispose(self) -> None:
        if self._owned:
            self.database.dispose()

    def record(
        self,
        *,
        actor: str,
        role: str,
        action: str,
        objects: Sequence[str],
        client: str,
        status: int,
        bank_id: str | None = None,
        on_behalf: str | None = None,
        device_key: str | None = None,
    ) -> AuditEvent:
        """Append one event to the chain (serialized, durable before it returns; committed
        together with the other requests' events and keys of the moment, ``database.group``)."""
        return self.record_later(
            actor=actor,
            role=role,
            action=action,
            objects=objects,
            client=client,
            status=status,
            bank_id=bank_id,
            on_behalf=on_behalf,
            device_key=device_key,
        ).wait()

    def record_later(
        self,
        *,
        actor: str,
        role: str,
        action: str,
        objects: Sequence[str],
        client: str,
        status: int,
        bank_id: str | None = None,
        on_behalf: str | None = None,
        device_key: str | None = None,
    ) -> Pending[AuditEvent]:
        """``record``, submitted: the event is durable once the ``Pending`` is waited for."""

        def append(conn: Connection) -> Row[AuditEvent]:
            # one batch at a time, on PostgreSQL under the group's lock: the chain stays a chain
            last = _chain_head(conn)
            event = AuditEvent(
                seq=last.seq + 1 if last else 0,
                time=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                bank_id=bank_id,
                actor=actor[:64],
                role=role[:32],
                on_behalf=on_behalf,
                action=action[:200],
                objects=tuple(o[:64] for o in objects),
                client=client[:64],
                device_key=device_key[:64] if device_key else None,
                outcome=outcome_of(status, role),
                status=status,
                prev=last.hash if last else ZERO,
            )
            row = _row(event)
            _remember_head(conn, _Head(event.seq, row["hash"]))
            values = tuple(row[name] for name in _EVENT_COLUMNS)
            return Row(_EVENT_ROW, event.seq, values, event)

        # Pipelined: in a batch the chain's head is read once (waiting for the statements
        # sent before it) and the events go out as one statement (``database.group.Row``).
        return self.database.group.submit(append, pipelined=True)

    def head(self) -> tuple[int, bytes]:
        """(count, hash of the last event) — what a seal commits to."""
        with self.reader.begin() as conn:
            last = conn.execute(_LAST_EVENT).first()
        return (last.seq + 1, bytes(last.hash)) if last else (0, ZERO)

    def seal(self, ledger: LedgerPort) -> AppendResult | None:
        """Seal the chain into the log; nothing to do if no event came since the last seal."""
        count, head = self.head()
        if count == 0:
            return None
        return ledger.append(SealEntry(count, base64.b64encode(head).decode()).to_request())

    def events(
        self,
        *,
        bank_id: str | None,
        after_seq: int | None = None,
        since: str | None = None,
        until: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        object_id: str | None = None,
        limit: int = 100,
    ) -> list[AuditEvent]:
        stmt = select(audit_events).order_by(audit_events.c.seq).limit(limit)
        if bank_id is not None:
            stmt = stmt.where(
                (audit_events.c.bank_id == bank_id) | audit_events.c.bank_id.is_(None)
            )
        if after_seq is not None:
            stmt = stmt.where(audit_events.c.seq > after_seq)
        if since is not None:
            stmt = stmt.where(audit_events.c.time >= since)
        if until is not None:
            stmt = stmt.where(audit_events.c.time < until)
        if actor is not None:
            stmt = stmt.where(audit_events.c.actor == actor)
        if action is not None:
            stmt = stmt.where(audit_events.c.action.startswith(action, autoescape=True))
        if object_id is not None:
            stmt = stmt.where(
                audit_events.c.objects.contains(json.dumps(object_id), autoescape=True)
            )
        with self.reader.begin() as conn:
            return [_event(r) for r in conn.execute(stmt)]

    def all_events(self) -> list[AuditEvent]:
        with self.reader.begin() as conn:
            rows = conn.execute(select(audit_events).order_by(audit_events.c.seq))
            return [_event(r) for r in rows]

    def count(self) -> int:
        with self.reader.begin() as conn:
            return int(conn.execute(select(func.count()).select_from(audit_events)).scalar_one())


def _row(event: AuditEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "time": event.time,
        "bank_id": event.bank_id,
        "actor": event.actor,
        "role": event.role,
        "on_behalf": event.on_behalf,
        "action": event.action,
        "objects": json.dumps(list(event.objects)),
        "client": event.client,
        "device_key": event.device_key,
        "outcome": event.outcome,
        "status": event.status,
        "prev": event.prev,
        "hash": event.hash(),
    }


def _event(r: Any) -> AuditEvent:
    return AuditEvent(
        seq=int(r.seq),
        time=r.time,
        bank_id=r.bank_id,
        actor=r.actor,
        role=r.role,
        on_behalf=r.on_behalf,
        action=r.action,
        objects=tuple(json.loads(r.objects)),
        client=r.client,
        device_key=r.device_key,
        outcome=r.outcome,
        status=int(r.status),
        prev=bytes(r.prev),
    )


# ------------------------------------------------------------------ verification (pure)


def check_chain(
    events: Iterable[AuditEvent], stored_hashes: dict[int, bytes] | None = None
) -> tuple[list[str], dict[int, bytes]]:
    """Every problem in the chain, and the hash after each event (by count)."""
    problems: list[str] = []
    heads: dict[int, bytes] = {}
    prev = ZERO
    expected = 0
    for event in events:
        if event.seq != expected:
            problems.append(
                f"audit event {event.seq}: expected seq {expected} (events missing, "
                "inserted or reordered)"
            )
        if event.prev != prev:
            problems.append(
                f"audit event {event.seq}: prev does not match the hash of the event before it"
            )
        # Chain from the recomputed hash, not the stored prev: an edit anywhere changes every
        # head after it, so the sealed head exposes it even if later prevs were rewritten.
        digest = replace(event, prev=prev).hash()
        if stored_hashes is not None and stored_hashes.get(event.seq) not in (None, digest):
            problems.append(
                f"audit event {event.seq}: stored hash does not match its content (event edited)"
            )
        prev = digest
        expected = event.seq + 1
        heads[expected] = digest
    return problems, heads


def check_seals(seals: Iterable[Seal], heads: dict[int, bytes]) -> list[str]:
    problems = []
    for seal in seals:
        where = f"seq {seal.ledger_seq}"
        if seal.count not in heads:
            problems.append(
                f"{where}: seal covers {seal.count} audit events, but the trail "
                f"has {max(heads, default=0)}"
            )
        elif heads[seal.count] != seal.head:
            problems.append(
                f"{where}: sealed audit head at count {seal.count} differs from the "
                "trail (events edited, removed, inserted or reordered)"
            )
    return problems


def seal_of(seq: int, kind: str, body: dict[str, Any]) -> Seal | None:
    if kind != "seal" or "audit_head" not in body:
        return None
    return Seal(seq, int(body["audit_count"]), base64.b64decode(str(body["audit_head"])))
