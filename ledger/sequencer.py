"""The append path: one sequencer per log, group commit, one signed checkpoint per batch.

Callers (threads or asyncio tasks) submit ``EntryRequest`` s; a single writer thread takes
everything queued, appends it in **one** serialized transaction (entries, postings, tree nodes,
balances, one checkpoint) and only then answers each caller (a blocked ``append`` or a
future). A caller therefore holds a ``seq`` only once its entry is durable. A request that
breaks a rule fails alone; the rest of its batch is appended.

Several processes may hold a sequencer on the same database: every batch re-reads the head
inside its lock, so they interleave safely (the database lock is the real serializer).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from concurrent.futures import Future
from contextlib import suppress
from typing import Protocol

from ledger.batch_writer import AppendResult, BatchWriter
from ledger.entry import EntryRequest
from ledger.errors import (
    LedgerError,
    MalformedEntry,
)

log = logging.getLogger(__name__)


class _Outcome(Protocol):
    """Where the writer puts a request's result: a ``Future`` (``submit``), a
    ``_BlockedCaller`` (``append``) or an ``_AwaitingCaller`` (``append_async``)."""

    def set_running_or_notify_cancel(self) -> bool: ...

    def set_result(self, result: AppendResult) -> None: ...

    def set_exception(self, exception: BaseException | None) -> None: ...


class _BlockedCaller:
    """A caller blocked in ``Sequencer.append``, woken by the writer releasing one lock. A
    ``Future`` costs more on both sides (a ``Condition`` with its ``RLock`` per call, a waiter
    lock allocated in ``result``, three lock-guarded steps in the writer), and the writer
    resolves every entry of a batch while the woken callers compete with it for the
    interpreter lock."""

    __slots__ = ("_done", "_error", "_result")

    def __init__(self) -> None:
        self._done = threading.Lock()
        self._done.acquire()  # released once, by the writer
        self._result: AppendResult | None = None
        self._error: BaseException | None = None

    def set_running_or_notify_cancel(self) -> bool:
        return True  # a blocked caller cannot cancel

    def set_result(self, result: AppendResult) -> None:
        self._result = result
        self._done.release()

    def set_exception(self, exception: BaseException | None) -> None:
        self._error = exception
        self._done.release()

    def wait(self, timeout: float | None) -> AppendResult:
        """The result, as ``Future.result(timeout)`` gives it (``TimeoutError`` when the batch
        is not durable in time; the entry may still be appended, as with a future)."""
        if not self._done.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            raise TimeoutError
        if self._error is not None:
            raise self._error
        assert self._result is not None  # released only after one of the two is set
        return self._result


class _AwaitingCaller:
    """A caller awaiting ``Sequencer.append_async`` on an event loop. The writer only stores
    the outcome; once the batch is settled it wakes each loop once for all its callers (a
    ``Future`` wrapped for asyncio wakes the loop once per caller). Like a blocked caller, it
    cannot withdraw its request: a cancelled task's entry is still appended."""

    __slots__ = ("error", "future", "result")

    def __init__(self, future: asyncio.Future[None]) -> None:
        self.future = future
        self.result: AppendResult | None = None
        self.error: BaseException | None = None

    def set_running_or_notify_cancel(self) -> bool:
        return True

    def set_result(self, result: AppendResult) -> None:
        self.result = result

    def set_exception(self, exception: BaseException | None) -> None:
        self.error = exception

    def outcome(self) -> AppendResult:
        if self.error is not None:
            raise self.error
        assert self.result is not None  # woken only once one of the two is set
        return self.result


def _wake(callers: list[_AwaitingCaller]) -> None:
    """On the callers' loop: each awaiting caller's outcome is in; wake it."""
    for caller in callers:
        if not caller.future.done():
            caller.future.set_result(None)


def _wake_loops(callers: list[_AwaitingCaller]) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[_AwaitingCaller]] = {}
    for caller in callers:
        by_loop.setdefault(caller.future.get_loop(), []).append(caller)
    for loop, theirs in by_loop.items():
        with suppress(RuntimeError):  # a closed loop: nobody awaits there any more
            loop.call_soon_threadsafe(_wake, theirs)


class Sequencer:
    """Queue + single writer thread. ``append`` blocks; ``append_async`` awaits."""

    def __init__(self, writer: BatchWriter, max_batch: int = 1024) -> None:
        self.writer = writer
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[tuple[EntryRequest, _Outcome] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether new requests are refused (``close`` has begun)."""
        return self._closed

    def start(self) -> None:
        with self._lock:
            self._start_locked()

    def _start_locked(self) -> None:
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(
                target=self._run, name="timebank-sequencer", daemon=True
            )
            self._thread.start()

    def close(self) -> None:
        """Refuse new requests; everything queued before is still appended and answered."""
        with self._lock:
            self._closed = True
            thread, self._thread = self._thread, None
            if thread is not None:
                self._queue.put(None)  # after every request queued while it was open
        if thread is not None:
            thread.join()

    def submit(self, request: EntryRequest) -> Future[AppendResult]:
        future: Future[AppendResult] = Future()
        self._enqueue(request, future)
        return future

    def append(self, request: EntryRequest, timeout: float | None = None) -> AppendResult:
        waiter = _BlockedCaller()
        self._enqueue(request, waiter)
        return waiter.wait(timeout)

    async def append_async(self, request: EntryRequest) -> AppendResult:
        caller = _AwaitingCaller(asyncio.get_running_loop().create_future())
        if self._enqueue(request, caller):
            # Not shielded (a shield costs each caller another turn of the loop): cancelling
            # the caller cancels its future, and its entry is appended all the same.
            await caller.future
        return caller.outcome()

    def _enqueue(self, request: EntryRequest, outcome: _Outcome) -> bool:
        """Whether ``request`` is queued; if not, ``outcome`` has its error already."""
        if not isinstance(request, EntryRequest):
            outcome.set_exception(MalformedEntry("not an entry request"))
            return False
        # Under the lock, so a request is either queued ahead of close's sentinel (and
        # appended) or refused: never queued behind it with no writer left to answer it.
        with self._lock:
            if not self._closed:
                self._start_locked()
                self._queue.put((request, outcome))
                return True
        outcome.set_exception(LedgerError("the sequencer is closed"))
        return False

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[tuple[EntryRequest, _Outcome]]) -> None:
        live = [(r, f) for r, f in batch if f.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            self._settle(live)
        finally:
            _wake_loops([f for _, f in live if isinstance(f, _AwaitingCaller)])

    def _settle(self, live: list[tuple[EntryRequest, _Outcome]]) -> None:
        try:
            results = self.writer.append([r for r, _ in live])
        except Exception as exc:  # the whole batch failed: nothing of it was written
            log.error("append batch of %d failed: %s", len(live), type(exc).__name__)
            for _, future in live:
                future.set_exception(exc)
            return
        for (_, future), result in zip(live, results, strict=True):
            if isinstance(result, AppendResult):
                future.set_result(result)
            else:
                future.set_exception(result)
