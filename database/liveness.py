"""PostgreSQL connections pinged before use only after they sat idle in the pool.

``pool_pre_ping`` pings a connection at every checkout: a round trip to the server before
each transaction. Under load a connection goes back to the pool and out again within
milliseconds, and a donation checked out three connections (the key's claim, the ledger's
batch, the completion with the audit event), so the pings were a round trip per transaction
on the busiest path, for connections that had just worked (docs/performance.md).

A connection that has been idle in the pool for ``IDLE_BEFORE_PING`` seconds is still pinged
before it is handed out, as before: those are the ones a server restart, a failover or an idle
timeout leaves dead. A failed ping invalidates the pool as ``pool_pre_ping`` does (every
connection older than now is replaced at its next checkout) and the checkout goes on with a
new connection, so the caller never sees the dead one.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, event, exc

IDLE_BEFORE_PING = 1.0  # seconds in the pool after which a connection is pinged at checkout

_RETURNED_AT = "timebank_returned_at"  # key in the pool entry's info (per DBAPI connection)


def ping_after_idle(engine: Engine) -> None:
    """Ping ``engine``'s connections at checkout when idle for ``IDLE_BEFORE_PING`` seconds."""

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_conn: Any, record: Any) -> None:
        if record is not None:
            record.info[_RETURNED_AT] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        # A new connection has no entry (the info goes with its DBAPI connection): it just
        # connected, so it needs no ping.
        returned = record.info.pop(_RETURNED_AT, None)
        if returned is None or time.monotonic() - returned < IDLE_BEFORE_PING:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as error:
            raise exc.InvalidatePoolError(f"ping after idle failed: {error}") from error
