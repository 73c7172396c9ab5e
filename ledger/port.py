"""What the services need of the log, as one interface: ``ledger.log.Log`` provides it, and
so does the tests' in-memory ledger (``tests/fake_ledger.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ledger.batch_writer import AppendResult
from ledger.entry import Entry, EntryRequest


class LedgerPort(Protocol):
    def append(self, request: EntryRequest) -> AppendResult:
        """Append once per id: the same content again is a replay, other content refused."""
        ...

    async def append_async(self, request: EntryRequest) -> AppendResult:
        """``append``, awaited on an event loop."""
        ...

    def balances(self, accounts: list[str], max_age: float = 0.0) -> dict[str, int]:
        """Balances now; with ``max_age`` > 0 possibly ones read that long ago, never from
        before an append of this process (``Log.balances``)."""
        ...

    def cached_balances(self, accounts: list[str], max_age: float) -> dict[str, int] | None:
        """What ``balances(accounts, max_age)`` would answer from memory, else None."""
        ...

    def history(
        self, accounts: list[str], limit: int = 50, before_seq: int | None = None
    ) -> list[Entry]:
        """Entries that moved minutes on ``accounts``, newest first."""
        ...

    def entry(self, seq: int) -> Entry | None: ...

    def entries_by_id(self, ids: list[str]) -> dict[str, Entry]: ...

    def receipt(self, index: int) -> str:
        """A C2SP tlog-proof of entry ``index`` against the checkpoint served now."""
        ...

    def receipts(self, indexes: Sequence[int]) -> list[str]:
        """Receipts of ``indexes``, all against one checkpoint; none for an index it does not
        cover yet."""
        ...
