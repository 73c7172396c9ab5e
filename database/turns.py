"""Writers of one SQLite database take turns on locks instead of SQLite's busy handler.

SQLite lets one writer in at a time; the others wait in its busy handler, which sleeps and
polls (1, 2, 5, 10 … up to 100 ms a sleep), so a writer often sleeps on after the database is
free. With `timebank serve --workers N`, the processes' writers (the ledger's, the group
commit's, the accounts store's) queued that way and a donation's p99 grew past 300 ms.
``WriterTurns`` puts them in line instead: this process's writers take a thread lock, then
the one holding it takes an ``flock`` on a file beside the database, shared by every process,
before ``BEGIN IMMEDIATE``; both are released after the commit, which wakes the next writer at
once. A process that dies holding the file lock releases it with its file descriptors.

The wait is bounded like the busy handler's: past it the transaction goes ahead without its
turn and SQLite decides (the busy handler, then "database is locked"), so a stuck process can
slow the others, never block them for good. Correctness never depends on the turns: a writer
that does not take them (a migration, another tool) is still serialized by SQLite.
"""

from __future__ import annotations

import fcntl
import logging
import os
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)


class WriterTurns:
    """Turns for the writers of one database: a thread lock, then (for a file) an ``flock``."""

    def __init__(self, lock_path: str | None, timeout: float) -> None:
        self.lock_path = lock_path  # None for an in-memory database: one process only
        self.timeout = timeout
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        self._fd_pid = 0  # the process that opened _fd (a forked child opens its own)
        self._waiter: _FlockWaiter | None = None
        self._waiter_pid = 0
        self._unusable_logged = False

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Hold this database's writer turn (or, past the timeout, go ahead without it). One
        deadline covers both waits, so a turn never waits longer than the busy handler would."""
        deadline = time.monotonic() + self.timeout
        if not self._thread_lock.acquire(timeout=self.timeout):
            yield
            return
        try:
            fd = self._file_lock(deadline) if self.lock_path is not None else None
            try:
                yield
            finally:
                if fd is not None:
                    fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def close(self) -> None:
        """Close this process's lock descriptor and stop its waiter thread (the database is
        being disposed of: no turn is held or awaited)."""
        taken = self._thread_lock.acquire(timeout=self.timeout)
        try:
            if self._waiter is not None and self._waiter_pid == os.getpid():
                self._waiter.requests.put(None)
            if self._fd is not None and self._fd_pid == os.getpid():
                os.close(self._fd)
            self._fd = None
            self._waiter = None
        finally:
            if taken:
                self._thread_lock.release()

    def _file_lock(self, deadline: float) -> int | None:
        """Take the file lock (this thread holds the thread lock); its descriptor, or None
        when the wait timed out or the lock file cannot be used (then SQLite serializes the
        writers alone, as it always can: a write never fails for want of a turn)."""
        try:
            fd = self._descriptor()
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            pass
        except OSError as exc:
            if not self._unusable_logged:
                self._unusable_logged = True
                log.warning(
                    "writer turns off: cannot lock %s (%s); SQLite's busy handler serializes "
                    "the writers",
                    self.lock_path,
                    exc.strerror or type(exc).__name__,
                )
            return None
        # Another process's turn: wait in the kernel (woken as it unlocks) on this process's
        # waiter thread, since flock has no timeout of its own.
        if self._waiter is None or self._waiter_pid != os.getpid():
            self._waiter, self._waiter_pid = _FlockWaiter(), os.getpid()
        wait = _Wait(fd)
        self._waiter.requests.put(wait)
        if wait.taken.wait(max(0.0, deadline - time.monotonic())):
            return fd
        with wait.decided:
            if wait.taken.is_set():
                return fd
            wait.abandoned = True
        # The waiter owns that descriptor now and is stuck on it: the next turns open another
        # descriptor and start another waiter.
        self._fd = None
        self._waiter = None
        return None

    def _descriptor(self) -> int:
        assert self.lock_path is not None
        if self._fd is None or self._fd_pid != os.getpid():
            self._fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._fd_pid = os.getpid()
        return self._fd


@dataclass(eq=False)
class _Wait:
    """One wait for the file lock, handed to the waiter thread."""

    fd: int
    taken: threading.Event = field(default_factory=threading.Event)
    decided: threading.Lock = field(default_factory=threading.Lock)
    abandoned: bool = False  # the caller went ahead without it


class _FlockWaiter(threading.Thread):
    """Blocks in ``flock`` for the thread whose turn is next, one wait at a time (a thread
    kept for it: starting one per wait cost ~180 µs of CPU a turn with two processes)."""

    def __init__(self) -> None:
        super().__init__(name="writer-turn", daemon=True)
        self.requests: queue.SimpleQueue[_Wait | None] = queue.SimpleQueue()
        self.start()

    def run(self) -> None:
        while True:
            wait = self.requests.get()
            if wait is None:  # the database was disposed of
                return
            fcntl.flock(wait.fd, fcntl.LOCK_EX)
            with wait.decided:
                if wait.abandoned:  # give the lock (and its descriptor) back
                    os.close(wait.fd)
                    return
                wait.taken.set()


def lock_path(url: str) -> str | None:
    """The turn's lock file beside a SQLite database file (the file SQLAlchemy opens: its URL
    decoded, a ``file:`` URI's path); None for an in-memory database."""
    parsed = make_url(url)
    path = parsed.database or ""
    if parsed.query.get("uri") == "true" and path.startswith("file:"):
        path = path.removeprefix("file:").split("?", 1)[0]
    if not path or path == ":memory:" or "mode=memory" in url:
        return None
    return f"{path}-writers.lock"
