"""How a caller relates to a member, remembered for a moment.

Every read of a balance and every gift or donation first asks whether the caller may act on
that member (a snapshot of the accounts tables). The answer is kept exactly as long as the
caller's principal is (``api.auth.PrincipalCache``): forgotten as soon as this process writes
to the accounts tables at all, and after ``ACCESS_CACHE_SECONDS`` on the accounts clock, which
bounds how late a change made by another process (the operator CLI, another worker) is seen.
Refusals are never remembered.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime

from accounts.model import Member, Principal

ACCESS_CACHE_SECONDS = 2.0
ACCESS_CACHE_ENTRIES = 10_000


@dataclass(frozen=True)
class _Remembered:
    found: tuple[Member, str]
    writes: int
    at: datetime


class AccessCache:
    """(principal, member id) → (member, access), valid while the accounts tables are unchanged."""

    def __init__(self) -> None:
        self._entries: dict[tuple[Principal, str], _Remembered] = {}
        self._lock = threading.Lock()

    def get(
        self, principal: Principal, member_id: str, writes: int, now: datetime
    ) -> tuple[Member, str] | None:
        known = self._entries.get((principal, member_id))
        if (
            known is not None
            and known.writes == writes
            and 0 <= (now - known.at).total_seconds() < ACCESS_CACHE_SECONDS
        ):
            return known.found
        return None

    def put(
        self,
        principal: Principal,
        member_id: str,
        found: tuple[Member, str],
        writes: int,
        now: datetime,
    ) -> None:
        """Remember ``found``, read after ``writes`` was taken (so a write in between makes it
        stale at once rather than late)."""
        with self._lock:
            if len(self._entries) >= ACCESS_CACHE_ENTRIES:
                self._entries.clear()
            self._entries[(principal, member_id)] = _Remembered(found, writes, now)
