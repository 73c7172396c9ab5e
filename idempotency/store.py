"""The idempotency keys' store: which (caller, method, path, key) ran with which request
fingerprint, and its response sealed with the data key (bodies carry personal data and
one-time secrets). Only hashes of keys are stored. The HTTP side is ``api.idempotency``."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Literal

from sqlalchemy import (
    Column,
    Connection,
    Integer,
    LargeBinary,
    String,
    Table,
    bindparam,
    delete,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from accounts.protection import Protector
from accounts.storage import TS, utc
from database import Database, metadata
from database.driver import driver_rows
from database.group import Pending, Row, RowStatement

KEY_HEADER = "Idempotency-Key"


MAX_KEY_LENGTH = 200


KEY_TTL = timedelta(hours=24)


ABANDONED_AFTER = timedelta(minutes=10)


idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    # sha256 of (caller, method, path, key): the key itself is never stored
    Column("id", String(64), primary_key=True),
    # keyed hash of (method, path, query, canonical body); bodies hold passwords
    Column("fingerprint", String(64), nullable=False),
    # which run holds the key; only that run may complete or release it
    Column("lease", String(32), nullable=False),
    Column("created_at", TS, nullable=False, index=True),
    Column("completed_at", TS, nullable=True),
    Column("status_code", Integer, nullable=True),  # NULL while in progress
    Column("response_sealed", LargeBinary, nullable=True),
)


def N_(message: str) -> str:
    """Marks a message for the web app's catalog (``pybabel extract -k N_``, babel.cfg)."""
    return message


class MalformedKey(ValueError):
    """What is wrong with the header: ``template % values`` in English (``str``); the API
    answers ``template`` translated into the caller's language."""

    def __init__(self, template: str, **values: object) -> None:
        super().__init__(template % values if values else template)
        self.template, self.values = template, values


def parse_key(values: list[bytes]) -> str:
    """The one ``Idempotency-Key`` value, or ``MalformedKey`` saying what is wrong."""
    if len(values) != 1:
        raise MalformedKey(N_("send one Idempotency-Key header, not %(count)s"), count=len(values))
    raw = values[0]
    if not raw.strip():
        raise MalformedKey(N_("Idempotency-Key is empty"))
    if len(raw) > MAX_KEY_LENGTH:
        raise MalformedKey(
            N_("Idempotency-Key is longer than %(limit)s characters"), limit=MAX_KEY_LENGTH
        )
    if any(byte < 0x20 or byte > 0x7E for byte in raw):
        raise MalformedKey(N_("Idempotency-Key must be printable ASCII"))
    return raw.decode("ascii")


def key_id(caller: str, method: str, path: str, key: str) -> str:
    """The row id of ``key`` sent by ``caller`` to ``method path``."""
    scope = json.dumps([caller, method.upper(), path, key], separators=(",", ":"))
    return hashlib.sha256(scope.encode()).hexdigest()


def canonical_body(body: bytes) -> bytes:
    """JSON bodies re-encoded with sorted keys and no spaces; anything else as sent."""
    try:
        value = json.loads(body)
    except ValueError:
        return b"raw:" + body
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return b"json:" + canonical.encode()


def request_fingerprint(
    protector: Protector, method: str, path: str, query: bytes, body: bytes
) -> str:
    """Keyed hash of the request: equal requests match; bodies (passwords) stay unguessable."""
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), query, canonical_body(body)):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return protector.blind_index("idempotency-request", digest.hexdigest())


@dataclass(frozen=True)
class StoredResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


@dataclass(frozen=True)
class Claim:
    """What to do with a request: ``run`` it (holding ``lease``), ``replay`` ``stored``, or
    refuse it because the key is ``in_progress`` or was ``reused`` for another request."""

    outcome: Literal["run", "replay", "in_progress", "reused"]
    lease: str = ""
    stored: StoredResponse | None = None


# A key's row, locked: read by every keyed request (built once, not per call).
_CLAIMED = (
    select(idempotency_keys).where(idempotency_keys.c.id == bindparam("b_id")).with_for_update()
)


# A key's first request: its row, unless the key has one. One statement for a fresh key, which
# nearly every keyed request sends; only a key seen before is read (and locked) to learn what to
# do with it. (``RETURNING`` says whether it was inserted: psycopg's rowcount here is -1.)
# This and the completion run on every keyed write, so they go to the driver directly
# (``database.driver``); the columns left out are NULL.
_FIRST_CLAIM = (
    "INSERT INTO idempotency_keys (id, fingerprint, lease, created_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT DO NOTHING RETURNING id"
)


# A claimed key's response, stored once: only by the lease that claimed it.
_COMPLETE = (
    "UPDATE idempotency_keys SET completed_at = ?, status_code = ?, response_sealed = ?"
    " WHERE id = ? AND lease = ? AND status_code IS NULL"
)


# A batch's claims and completions go out as one statement each (``database.group.Row``).
@lru_cache(maxsize=64)
def _first_claims(count: int) -> str:
    return (
        "INSERT INTO idempotency_keys (id, fingerprint, lease, created_at) VALUES "  # noqa: S608 - marks, no values
        + ", ".join(["(?, ?, ?, ?)"] * count)
        + " ON CONFLICT DO NOTHING RETURNING id"
    )


@lru_cache(maxsize=64)
def _completions(count: int) -> str:
    # PostgreSQL only; the first row's casts type the columns of VALUES.
    first = "(CAST(? AS TIMESTAMPTZ), CAST(? AS INTEGER), CAST(? AS BYTEA), CAST(? AS VARCHAR)"
    rows = [first + ", CAST(? AS VARCHAR))"] + ["(?, ?, ?, ?, ?)"] * (count - 1)
    return (
        "UPDATE idempotency_keys AS k SET completed_at = v.completed_at,"  # noqa: S608 - marks
        " status_code = v.status_code, response_sealed = v.response_sealed"
        f" FROM (VALUES {', '.join(rows)})"
        " AS v (completed_at, status_code, response_sealed, id, lease)"
        " WHERE k.id = v.id AND k.lease = v.lease AND k.status_code IS NULL"
    )


_CLAIM_ROW = RowStatement(_FIRST_CLAIM, _first_claims, returning=True)
_COMPLETE_ROW = RowStatement(_COMPLETE, _completions)


def _timestamp(conn: Connection, value: datetime) -> Any:
    """``value`` as SQLAlchemy would bind it to ``created_at``/``completed_at`` on this
    database (SQLite stores text; psycopg takes the datetime)."""
    bind = _timestamp_binders.get(conn.dialect.name)
    if bind is None:
        dialect = conn.dialect
        bind = TS.dialect_impl(dialect).bind_processor(dialect) or (lambda v: v)
        _timestamp_binders[dialect.name] = bind
    return bind(value)


_timestamp_binders: dict[str, Callable[[Any], Any]] = {}


class IdempotencyStore:
    """The ``idempotency_keys`` rows. A claim, a completion and a release each commit before
    they return, group-committed with the other requests' keys and audit events of the moment
    (``database.group``)."""

    def __init__(self, database: Database, protector: Protector, now: datetime) -> None:
        self.database = database
        self.protector = protector
        self.now = now

    def claim(self, row_id: str, fingerprint: str) -> Claim:
        for attempt in range(3):
            try:
                return self.claim_later(row_id, fingerprint).wait()
            except IntegrityError:  # a concurrent first request inserted the row; look again
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def settle_claim(self, pending: Pending[Claim], row_id: str, fingerprint: str) -> Claim:
        """The claim ``claim_later`` submitted, awaited on an event loop (``claim`` again, in
        a worker thread, when a concurrent first request inserted the row meanwhile)."""
        try:
            return await pending.wait_async()
        except IntegrityError:
            return await asyncio.to_thread(self.claim, row_id, fingerprint)

    def claim_later(self, row_id: str, fingerprint: str) -> Pending[Claim]:
        """The key's claim, submitted to the group commit: one attempt of ``claim`` (its
        ``wait`` raises ``IntegrityError`` when a concurrent first request inserted the row
        meanwhile; claiming again then reads that row)."""
        t = idempotency_keys
        lease = secrets.token_hex(16)
        fresh = {
            "fingerprint": fingerprint,
            "lease": lease,
            "created_at": self.now,
            "completed_at": None,
            "status_code": None,
            "response_sealed": None,
        }

        def claim(conn: Connection) -> Row[Claim]:
            first = (row_id, fingerprint, lease, _timestamp(conn, self.now))
            # Its key taken: what to do is read from the row (in the next batch when this one
            # commits in its pipeline, ``database.group``).
            return Row(_CLAIM_ROW, row_id, first, Claim("run", lease), seen_before)

        def seen_before(conn: Connection) -> Claim:
            row = conn.execute(_CLAIMED, {"b_id": row_id}).first()
            while row is None:  # a row purged between the two statements: the key is fresh
                first = (row_id, fingerprint, lease, _timestamp(conn, self.now))
                if driver_rows(conn, _FIRST_CLAIM, first):
                    return Claim("run", lease)
                row = conn.execute(_CLAIMED, {"b_id": row_id}).first()
            created = utc(row.created_at)
            assert created is not None
            age = self.now - created
            expired = age >= KEY_TTL
            abandoned = row.status_code is None and age >= ABANDONED_AFTER
            if expired or abandoned:
                conn.execute(update(t).where(t.c.id == row_id).values(**fresh))
                return Claim("run", lease)
            if row.status_code is None:
                return Claim("in_progress")
            if row.fingerprint != fingerprint:
                return Claim("reused")
            return Claim("replay", stored=self._open(row_id, row.status_code, row.response_sealed))

        # A fresh key's claim (nearly every keyed request's) is one row of the batch's one
        # statement of claims, its answer read once the batch's statements are all sent.
        return self.database.group.submit(claim, pipelined=True)

    def complete(self, row_id: str, lease: str, response: StoredResponse) -> None:
        self.complete_later(row_id, lease, response).wait()

    def complete_later(self, row_id: str, lease: str, response: StoredResponse) -> Pending[None]:
        """Store the response under the key, committed with the next batch of the group (the
        request's audit event, written as the response starts); durable once ``wait``
        returns, which must happen before the client has the whole response."""
        sealed = self._seal(row_id, response)

        def complete(conn: Connection) -> Row[None]:
            values = (_timestamp(conn, self.now), response.status, sealed, row_id, lease)
            return Row(_COMPLETE_ROW, (row_id, lease), values, None)

        return self.database.group.submit(complete, pipelined=True)

    def release(self, row_id: str, lease: str) -> None:
        t = idempotency_keys
        self.database.group.run(
            lambda conn: conn.execute(
                delete(t).where(t.c.id == row_id, t.c.lease == lease, t.c.status_code.is_(None))
            )
        )

    def purge(self) -> int:
        """Delete keys older than ``KEY_TTL``; returns how many."""
        t = idempotency_keys
        with self.database.writer.begin() as conn:
            result = conn.execute(delete(t).where(t.c.created_at < self.now - KEY_TTL))
            return int(result.rowcount)

    def _seal(self, row_id: str, response: StoredResponse) -> bytes:
        document = {
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in response.headers],
            "body": base64.b64encode(response.body).decode("ascii"),
        }
        return self.protector.seal(json.dumps(document), row_id, "idempotent-response")

    def _open(self, row_id: str, status: int, sealed: bytes | None) -> StoredResponse:
        assert sealed is not None
        document = json.loads(self.protector.open(bytes(sealed), row_id, "idempotent-response"))
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in document["headers"]]
        return StoredResponse(int(status), headers, base64.b64decode(document["body"]))
