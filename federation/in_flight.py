"""The transfers one process is delivering right now: never two deliveries of one transfer at
once in a process (the retry worker and a member's retry wait for each other). Other processes
may deliver the same transfer at the same moment; the derived entry ids make that harmless
(docs/federation.md#the-retry-worker)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class _Slot:
    lock: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0


class InFlight:
    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._slots: dict[str, _Slot] = {}

    @contextmanager
    def hold(self, transfer: str, wait: bool) -> Iterator[bool]:
        """Yield True once this thread alone delivers ``transfer`` here; with ``wait`` False,
        yield False at once when another thread of this process is delivering it."""
        with self._guard:
            slot = self._slots.setdefault(transfer, _Slot())
            slot.users += 1
        got = slot.lock.acquire(blocking=wait)
        try:
            yield got
        finally:
            if got:
                slot.lock.release()
            with self._guard:
                slot.users -= 1
                if slot.users == 0:
                    del self._slots[transfer]

    def busy(self) -> int:
        """How many transfers are being delivered (or waited for) now."""
        with self._guard:
            return len(self._slots)
