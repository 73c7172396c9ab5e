"""The webhook delivery worker: sends what the outbox holds, signed, and retries on schedule.

Each attempt is claimed before it is sent (its count goes up and its next time is set by the
schedule), so a worker that dies between sending and marking leaves the message to be sent
again at that time: the receiver deduplicates by ``webhook-id``. A 2xx delivers; ``410 Gone``
disables the endpoint (its messages become dead letters); ``429`` and ``503`` wait at least
what ``Retry-After`` asks; anything else (another status, a refused or timed-out connection) is
retried on the schedule — immediately, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h, each
with ±10 % jitter — and after the last attempt the message is a dead letter, which
``Outbox.replay`` queues again.
"""

from __future__ import annotations

import http.client
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from accounts.errors import InvalidInput
from accounts.storage import AccountsStore
from partners.storage import claim_message, webhook_endpoints, webhook_outbox
from partners.webhooks import Outbox, signature

# Seconds before attempt 1, 2, …: the Standard Webhooks schedule.
SCHEDULE = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
JITTER = 0.1
TIMEOUT_SECONDS = 10.0
MAX_RETRY_AFTER = timedelta(hours=10)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Reply:
    status: int
    retry_after: str | None


Sender = Callable[[str, dict[str, str], bytes], Reply]


def http_send(url: str, headers: dict[str, str], body: bytes) -> Reply:
    """POST ``body`` to ``url`` without following redirects."""
    parts = urlsplit(url)
    connection_class = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    conn = connection_class(parts.hostname or "", parts.port, timeout=TIMEOUT_SECONDS)
    try:
        path = parts.path or "/"
        conn.request("POST", f"{path}?{parts.query}" if parts.query else path, body, headers)
        response = conn.getresponse()
        response.read(65536)
        return Reply(response.status, response.getheader("Retry-After"))
    finally:
        conn.close()


def retry_after(value: str | None, now: datetime) -> timedelta | None:
    """``Retry-After`` as seconds or an HTTP date, capped at ten hours."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        wait = timedelta(seconds=int(value))
    else:
        try:
            wait = parsedate_to_datetime(value) - now
        except (TypeError, ValueError):
            return None
    return min(max(wait, timedelta(0)), MAX_RETRY_AFTER)


class Delivery:
    def __init__(
        self,
        store: AccountsStore,
        outbox: Outbox,
        send: Sender = http_send,
        clock: Callable[[], datetime] = _now,
        jitter: Callable[[], float] = random.random,
        checkpoint: Callable[[], int] | None = None,
    ) -> None:
        """``checkpoint``: the size of the log's latest signed checkpoint, published to the
        endpoints subscribed to ``checkpoint.published`` before each round."""
        self.checkpoint = checkpoint
        self.store = store
        self.outbox = outbox
        self.send = send
        self.clock = clock
        self.jitter = jitter

    def _delay(self, attempt: int) -> timedelta:
        """How long after attempt ``attempt`` (1-based) the next one is due."""
        base = SCHEDULE[attempt]
        return timedelta(seconds=base * (1 + JITTER * (2 * self.jitter() - 1)))

    def run_once(self, limit: int = 100) -> int:
        """Attempt every message due now (at most ``limit``); how many were attempted."""
        if self.checkpoint is not None:
            self.outbox.publish_checkpoint(self.checkpoint())
        now = self.clock()
        with self.store.snapshot() as tx:
            due = tx.find(
                webhook_outbox,
                webhook_outbox.c.status == "pending",
                webhook_outbox.c.next_attempt_at <= now,
                order=[webhook_outbox.c.next_attempt_at],
                limit=limit,
            )
        attempted = 0
        for row in due:
            attempted += self._attempt(row)
        return attempted

    def _attempt(self, row: Any) -> int:
        now = self.clock()
        attempt = row.attempts + 1
        last = attempt >= len(SCHEDULE)
        with self.store.transaction() as tx:
            endpoint = tx.get(webhook_endpoints, row.endpoint_id)
            if endpoint is None or not endpoint.enabled:
                claim_message(
                    tx, row.id, row.attempts, status="dead", last_error="endpoint disabled"
                )
                return 0
            # The lease: if this worker dies before marking, the message is due again then.
            lease = now + (timedelta(hours=1) if last else self._delay(attempt))
            if not claim_message(tx, row.id, row.attempts, attempts=attempt, next_attempt_at=lease):
                return 0  # another worker took it
        reply, error = self._post(endpoint, row)
        with self.store.transaction() as tx:
            if reply is not None and 200 <= reply.status < 300:
                claim_message(tx, row.id, attempt, status="delivered", delivered_at=self.clock())
                return 1
            if reply is not None and reply.status == 410:
                tx.update(
                    webhook_endpoints,
                    endpoint.id,
                    enabled=False,
                    disabled_reason="the receiver answered 410 Gone",
                )
                claim_message(tx, row.id, attempt, status="dead", last_error="410 Gone")
                return 1
            if last:
                claim_message(tx, row.id, attempt, status="dead", last_error=error)
                return 1
            after = self._delay(attempt)
            if reply is not None and reply.status in (429, 503):
                asked = retry_after(reply.retry_after, now)
                if asked is not None:
                    after = max(after, asked)
            claim_message(
                tx, row.id, attempt, next_attempt_at=self.clock() + after, last_error=error
            )
        return 1

    def _post(self, endpoint: Any, row: Any) -> tuple[Reply | None, str]:
        body = row.payload.encode()
        # The real time of sending, whatever clock schedules: the receiver compares it with
        # its own clock to refuse replays.
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "user-agent": "timebank-webhooks/1",
            "webhook-id": row.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(
                self.outbox.secret_of(endpoint.id), row.id, timestamp, body
            ),
        }
        try:
            self.outbox.hosts.check(endpoint.url)
        except InvalidInput as exc:
            return None, str(exc)[:300]
        try:
            reply = self.send(endpoint.url, headers, body)
        except (OSError, http.client.HTTPException) as exc:
            return None, f"{type(exc).__name__}: {exc}"[:300]
        return reply, f"HTTP {reply.status}"

    def run(self, stop: threading.Event, idle_seconds: float = 1.0) -> None:
        """Deliver until ``stop`` is set, waiting ``idle_seconds`` when nothing was due."""
        while not stop.is_set():
            if self.run_once() == 0:
                stop.wait(idle_seconds)
