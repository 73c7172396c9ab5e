"""A whole log read from its public API and checked: the checkpoint's signature, then every leaf
decoded, its ``seq``, its ``prev`` chain and its time order, and the leaves' tree against the
signed root. What ``timebank audit clearing`` reads of each bank, and what a bank reads of its
peer to settle a month with it (``federation.settlement``): nothing of it is taken on trust.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from audit.client import LogClient
from audit.report import AuditError
from ledger.entry import ZERO_HASH, Entry
from ledger.errors import LedgerError
from ledger.kinds.settlement import month_end
from ledger.merkle import leaf_hash, root_of
from ledger.note import Checkpoint, Verifier, open_checkpoint


class LogProblem(AuditError):
    """The log does not hold together; ``where`` names the entry (origin and index)."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where


@dataclass(frozen=True)
class PublicLog:
    """A log's entries up to its signed checkpoint, with their RFC 6962 leaf hashes."""

    origin: str
    checkpoint: Checkpoint
    entries: list[Entry]
    hashes: list[bytes]

    def where(self, index: int) -> str:
        return f"{self.origin} index {index}"

    def cutoff(self, month: str) -> tuple[int, str]:
        """(size, hex root) of the log at the end of ``month``: its entries timed before the
        first instant of the next month (times never go backwards in a log)."""
        end = month_end(month)
        size = bisect.bisect_left([e.time for e in self.entries], end)
        return size, root_of(self.hashes[:size]).hex()


def read_log(leaves: list[bytes], checkpoint: Checkpoint) -> PublicLog:
    """Check ``leaves`` (all of the tree) against ``checkpoint``; LogProblem names the entry."""
    entries: list[Entry] = []
    hashes: list[bytes] = []
    origin = checkpoint.origin
    previous, last_time = ZERO_HASH, ""
    for index, leaf in enumerate(leaves):
        where = f"{origin} index {index}"
        try:
            entry = Entry.from_leaf(leaf)
        except LedgerError as exc:
            raise LogProblem(where, f"malformed entry: {exc}") from exc
        if entry.seq != index:
            raise LogProblem(where, f"the entry says seq {entry.seq}")
        if entry.prev != previous:
            raise LogProblem(where, "prev is not the leaf hash of the entry before it")
        if entry.time < last_time:
            raise LogProblem(where, "its time is before the entry before it")
        previous, last_time = leaf_hash(leaf), entry.time
        entries.append(entry)
        hashes.append(previous)
    if len(leaves) != checkpoint.size or root_of(hashes) != checkpoint.root:
        raise LogProblem(
            f"{origin} checkpoint {checkpoint.size}",
            "the log's leaves do not hash to the signed checkpoint's root",
        )
    return PublicLog(origin, checkpoint, entries, hashes)


def fetch_log(url: str, key: Verifier, timeout: float = 30.0) -> PublicLog:
    """The log served at ``url``, its checkpoint signed by ``key`` (named as its origin)."""
    client = LogClient(url, timeout)
    try:
        checkpoint, _ = open_checkpoint(client.checkpoint(), key, key.name)
    except LedgerError as exc:
        raise LogProblem(
            f"{key.name} checkpoint", f"does not verify with the log key supplied: {exc}"
        ) from exc
    leaves = [leaf for _, leaf in client.iter_leaves(0, checkpoint.size)]
    return read_log(leaves, checkpoint)
