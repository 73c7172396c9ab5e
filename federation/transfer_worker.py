"""The retry worker of ``timebank serve`` (docs/federation.md#the-retry-worker): every
``TIMEBANK_TRANSFER_RETRY_SECONDS`` it does what ``timebank peers transfers retry`` does, for the
transfers still open (an index, not every transfer ever sent), and tries a peer that is down
or refuses us less and less often: the pause doubles after each failed round, up to 16 rounds
(at most 10 minutes), and is forgotten at its first answer that closes a transfer.

One process never delivers one transfer twice at once (``Delivering.in_flight``: the worker
skips a transfer a member's request is delivering). Several processes (``serve --workers``,
several servers, the operator's command) may: each step's entry has a derived id, so the same
delivery twice appends nothing new and gets the same answer (tests/test_transfer_worker.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from federation.transfer_storage import OpenTransfer
from federation.transfers import Delivering, Outcome
from ledger.config import ConfigError

RETRY_ENV = "TIMEBANK_TRANSFER_RETRY_SECONDS"
BATCH = 200  # open transfers visited in one round, the least recently tried first
MAX_PAUSE = 600.0  # seconds: the longest a failing peer waits between two tries
LOG = logging.getLogger(__name__)


def retry_interval(env: Mapping[str, str]) -> float:
    """``TIMEBANK_TRANSFER_RETRY_SECONDS``: how often the worker runs (0.1 s to 1 day), or 0
    for no worker in this process. ``timebank serve`` sets 30 unless given; a bare
    ``create_app`` (tests) runs none unless it is set."""
    raw = env.get(RETRY_ENV, "0")
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if seconds != 0 and not 0.1 <= seconds <= 86400:
        raise ConfigError(f"{RETRY_ENV} must be 0 (no worker) or a number of seconds, 0.1 to 86400")
    return seconds


class TransferWorker:
    def __init__(
        self,
        delivering: Delivering,
        every: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.delivering, self.every, self.clock = delivering, every, clock
        self.longest = max(every, min(MAX_PAUSE, every * 16))
        self.failures: dict[str, int] = {}  # peer: failed rounds in a row
        self.next_try: dict[str, float] = {}  # peer: not before this (clock)
        self._tried: dict[str, float] = {}  # transfer: last tried (clock)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="transfer-retry", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.run_once()
            except Exception as exc:  # the database away for a moment: tried at the next round
                LOG.error("transfer retry round failed: %s", type(exc).__name__)

    def run_once(self) -> list[Outcome]:
        """One round: each open transfer older than one interval (a member's request is still
        delivering the younger ones) whose peer is not pausing, the least recently tried first,
        so one transfer that always fails cannot hold back the others."""
        now = self.clock()
        young = datetime.now(UTC) - timedelta(seconds=self.every)
        rows = self.delivering.store.open(limit=BATCH, before=young)
        rows.sort(key=lambda r: self._tried.get(r.transfer, float("-inf")))
        tried = self._tried
        self._tried = {r.transfer: tried[r.transfer] for r in rows if r.transfer in tried}
        outcomes = []
        for row in rows:
            if self._stop.is_set():
                break
            if self.next_try.get(row.peer, now) > now:
                continue
            outcome = self._visit(row)
            if outcome is None:
                continue
            outcomes.append(outcome)
            self._count(row.peer, outcome, now)
        return outcomes

    def _visit(self, row: OpenTransfer) -> Outcome | None:
        self._tried[row.transfer] = self.clock()
        try:
            outcome = self.delivering.revisit(row, wait=False)
        except Exception as exc:  # this transfer alone; the others are still tried
            LOG.error("transfer %s: retry failed: %s: %s", row.transfer, type(exc).__name__, exc)
            return None
        if outcome is not None and outcome.status != "pending":
            LOG.info("transfer %s to %s: %s", row.transfer, row.peer, outcome.status)
        return outcome

    def _count(self, peer: str, outcome: Outcome, now: float) -> None:
        if outcome.peer_failed:
            failed = self.failures.get(peer, 0) + 1
            self.failures[peer] = failed
            # tries at rounds 1, 2, 4, 8, … after the first failure: the pause doubles
            pause = min(self.every * (2 ** min(failed - 1, 20) - 0.5), self.longest)
            self.next_try[peer] = now + pause
            if failed == 1:
                LOG.warning("transfers to %s held: %s", peer, outcome.reason)
        elif outcome.status != "pending":
            if self.failures.pop(peer, 0):
                LOG.warning("transfers to %s flow again (%s)", peer, outcome.status)
            self.next_try.pop(peer, None)
