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
from concurrent.futures import ThreadPoolExecutor
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
PARALLEL = 16  # sends in flight at once in a round
MAX_RETRY_AFTER = timedelta(hours=10)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Reply:
    status: int
    retry_after: str | None


Sender = Callable[[str, dict[str, str], bytes], Reply]


_connections = threading.local()  # each sending thread keeps one connection per origin


def http_send(url: str, headers: dict[str, str], body: bytes) -> Reply:
    """POST ``body`` to ``url`` without following redirects, on a kept-alive connection of
    this thread's (a new one when the kept one was closed by the receiver)."""
    parts = urlsplit(url)
    origin = (parts.scheme, parts.hostname or "", parts.port)
    kept: dict[tuple[str, str, int | None], http.client.HTTPConnection] = getattr(
        _connections, "by_origin", {}
    )
    _connections.by_origin = kept
    path = parts.path or "/"
    target = f"{path}?{parts.query}" if parts.query else path
    while True:
        conn = kept.pop(origin, None)
        reused = conn is not None
        if conn is None:
            connection_class = (
                http.client.HTTPSConnection
                if parts.scheme == "https"
                else http.client.HTTPConnection
            )
            conn = connection_class(origin[1], parts.port, timeout=TIMEOUT_SECONDS)
        try:
            conn.request("POST", target, body, headers)
            response = conn.getresponse()
            response.read(65536)
        except (OSError, http.client.HTTPException):
            conn.close()
            if reused:
                continue  # the receiver closed a kept connection: once more on a new one
            raise
        if response.isclosed() and not response.will_close:
            kept[origin] = conn  # read to the end: the connection can carry the next one
        else:
            conn.close()
        return Reply(response.status, response.getheader("Retry-After"))


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


@dataclass(frozen=True)
class Claimed:
    """A message taken for one attempt, with its endpoint and the endpoint's secret."""

    row: Any
    endpoint: Any
    secret: str
    attempt: int


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

    def run_once(self, limit: int = 500) -> int:
        """Attempt every message due now (at most ``limit``); how many were attempted. The
        round claims them in one transaction, sends up to ``PARALLEL`` at once, then marks
        every outcome in one transaction."""
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
        if not due:
            return 0
        claimed = self._claim(due, now)
        if len(claimed) <= 1:
            outcomes = [self._post(c) for c in claimed]
        else:
            with ThreadPoolExecutor(min(PARALLEL, len(claimed))) as pool:
                outcomes = list(pool.map(self._post, claimed))
        self._mark(claimed, outcomes, now)
        return len(claimed)

    def _claim(self, due: list[Any], now: datetime) -> list[Claimed]:
        """Take each message for this attempt (the lease: if this worker dies before marking,
        it is due again then); messages of a disabled endpoint become dead letters."""
        claimed: list[Claimed] = []
        endpoints: dict[str, tuple[Any, str] | None] = {}
        with self.store.transaction() as tx:
            for row in due:
                if row.endpoint_id not in endpoints:
                    found = tx.get(webhook_endpoints, row.endpoint_id)
                    endpoints[row.endpoint_id] = (
                        (found, self.outbox.open_secret(found))
                        if found is not None and found.enabled
                        else None
                    )
                endpoint = endpoints[row.endpoint_id]
                if endpoint is None:
                    claim_message(
                        tx, row.id, row.attempts, status="dead", last_error="endpoint disabled"
                    )
                    continue
                attempt = row.attempts + 1
                last = attempt >= len(SCHEDULE)
                lease = now + (timedelta(hours=1) if last else self._delay(attempt))
                if claim_message(tx, row.id, row.attempts, attempts=attempt, next_attempt_at=lease):
                    claimed.append(Claimed(row, endpoint[0], endpoint[1], attempt))
        return claimed  # a message another worker took is not in it

    def _mark(
        self, claimed: list[Claimed], outcomes: list[tuple[Reply | None, str]], now: datetime
    ) -> None:
        with self.store.transaction() as tx:
            for c, (reply, error) in zip(claimed, outcomes, strict=True):
                row, attempt = c.row, c.attempt
                if reply is not None and 200 <= reply.status < 300:
                    claim_message(
                        tx, row.id, attempt, status="delivered", delivered_at=self.clock()
                    )
                elif reply is not None and reply.status == 410:
                    tx.update(
                        webhook_endpoints,
                        c.endpoint.id,
                        enabled=False,
                        disabled_reason="the receiver answered 410 Gone",
                    )
                    claim_message(tx, row.id, attempt, status="dead", last_error="410 Gone")
                elif attempt >= len(SCHEDULE):
                    claim_message(tx, row.id, attempt, status="dead", last_error=error)
                else:
                    after = self._delay(attempt)
                    if reply is not None and reply.status in (429, 503):
                        asked = retry_after(reply.retry_after, now)
                        if asked is not None:
                            after = max(after, asked)
                    claim_message(
                        tx, row.id, attempt, next_attempt_at=self.clock() + after, last_error=error
                    )

    def _post(self, claimed: Claimed) -> tuple[Reply | None, str]:
        row, endpoint = claimed.row, claimed.endpoint
        body = row.payload.encode()
        # The real time of sending, whatever clock schedules: the receiver compares it with
        # its own clock to refuse replays.
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "user-agent": "timebank-webhooks/1",
            "webhook-id": row.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(claimed.secret, row.id, timestamp, body),
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
