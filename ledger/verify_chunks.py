"""``timebank verify`` of a large log in worker processes: the clean case, fast.

The log is cut into aligned runs of ``2**bits`` entries (chunks). A worker process reads one
chunk's rows itself (its entries, its postings index rows, its stored tree nodes up to level
``bits``) and makes every check that needs nothing outside the chunk: each leaf decodes, is
canonical and has its row's ``seq``; its hash equals the stored one and its id, kind and time
the columns; its postings follow the kind's rules and equal the postings index; ``prev`` is
the leaf hash before it and ``time`` never decreases inside the chunk; the chunk's stored
interior nodes equal the ones recomputed from its leaves. It sends back only what joins the
chunks: the first ``prev`` and time, the last leaf hash and time, the chunk's subtree hash,
its part of the Merkle frontier at each checkpoint size inside it, each account's net change
and lowest running change, and its reversals.

The parent joins them in order: the chain and the times across chunk edges, the roots at
every checkpoint size (the frontier of the chunks before, plus the chunk's part), the tree
levels above the chunks, every account's balance against its floor, the reversals
(``Replay.finish``), and the counts of rows (so no row lies outside what was checked).

This path only ever *accepts*: it says the log is clean only when every check that
``ledger.verify``'s one-process replay makes would pass, and otherwise returns why it is not;
the caller then runs the one-process replay, which names every problem
(``tests/test_tamper.py`` runs each tampering through both).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from hashlib import sha256
from typing import Any, NamedTuple

from ledger.entry import ZERO_HASH, EntryRequest
from ledger.errors import LedgerError
from ledger.merkle import Frontier, node_hash
from ledger.postings import check_postings, floor_of
from ledger.replay import Replay, decode_leaf
from ledger.storage import LedgerStore, Snapshot

CHUNK_BITS = 16  # 65,536 entries a chunk
PARALLEL_ENTRIES = 200_000  # logs with more entries than this are verified in workers


def default_workers() -> int:
    """Worker processes for a large log: one per CPU."""
    return os.cpu_count() or 1


class Chunk(NamedTuple):
    """What a worker found in entries [start, end); ``dirty`` says why it is not clean."""

    start: int
    end: int
    dirty: str
    first_prev: bytes = b""
    first_time: str = ""
    last_hash: bytes = b""
    last_time: str = ""
    top: bytes | None = None  # the subtree hash of a whole chunk
    frontiers: tuple[tuple[int, tuple[bytes, ...]], ...] = ()  # (size, frontier part)
    moves: Mapping[str, tuple[int, int]] = {}  # account → (net change, lowest running change)
    reversals: tuple[tuple[int, int, EntryRequest], ...] = ()
    postings: int = 0


_STORES: dict[str, LedgerStore] = {}


def check_chunk(task: tuple[str, int, int, int, Sequence[int]]) -> Chunk:
    """Runs in a worker process: read entries [start, end) and what goes with them, check."""
    url, start, end, bits, sizes = task
    store = _STORES.get(url)
    if store is None:
        store = _STORES[url] = LedgerStore(url)
    with store.read() as db:
        rows = db.entry_range(start, end)
        postings = db.posting_range(start, end)
        nodes = [db.node_range(level, start >> level, end >> level) for level in range(1, bits + 1)]
    return check_rows(start, end, bits, sizes, rows, postings, nodes)


def check_rows(
    start: int,
    end: int,
    bits: int,
    sizes: Sequence[int],
    rows: Sequence[Any],
    posting_rows: Sequence[Any],
    node_rows: Sequence[Sequence[Any]],
) -> Chunk:
    """The checks of :func:`check_chunk` on rows already read (pure)."""
    if len(rows) != end - start:
        return Chunk(start, end, f"entries {start}–{end - 1}: {len(rows)} rows")
    frontier = Frontier()
    built: list[list[bytes]] = [[] for _ in range(bits + 1)]
    wanted = iter(sizes)
    next_size = next(wanted, None)
    frontiers: list[tuple[int, tuple[bytes, ...]]] = []
    expected: list[tuple[int, str, int]] = []
    running: dict[str, int] = {}
    lowest: dict[str, int] = {}
    reversals: list[tuple[int, int, EntryRequest]] = []
    prev_hash, prev_time = b"", ""
    first_prev, first_time = b"", ""
    position = start
    for seq, entry_id, stored_hash, kind, time, leaf in rows:
        leaf = bytes(leaf)
        leaf_hash = sha256(b"\x00" + leaf).digest()
        try:  # what ``replay.decode`` checks per leaf, without building its answer
            entry = decode_leaf(leaf)
            check_postings(entry.request)
        except LedgerError:
            return Chunk(start, end, f"seq {position}: the leaf")
        request = entry.request
        if seq != position or entry.seq != position:
            return Chunk(start, end, f"seq {position}: its seq")
        if bytes(stored_hash) != leaf_hash:
            return Chunk(start, end, f"seq {position}: stored leaf hash")
        if request.id != entry_id or request.kind != kind or entry.time != time:
            return Chunk(start, end, f"seq {position}: columns")
        if position == start:
            first_prev, first_time = entry.prev, entry.time
        elif entry.prev != prev_hash or entry.time < prev_time:
            return Chunk(start, end, f"seq {position}: prev or time")
        prev_hash, prev_time = leaf_hash, entry.time
        if request.kind == "reversal":
            target = request.body.get("reverses")
            if not isinstance(target, int) or isinstance(target, bool):
                return Chunk(start, end, f"seq {position}: reversal names no entry")
            reversals.append((position, target, request))
        for posting in request.postings:
            account, minutes = posting.account, posting.minutes
            expected.append((position, account, minutes))
            balance = running[account] = running.get(account, 0) + minutes
            if minutes < 0 and balance < lowest.get(account, 0):
                lowest[account] = balance
        for level, _, node in frontier.append(leaf_hash):
            built[level].append(node)
        position += 1
        if position == next_size:
            frontiers.append((position, tuple(frontier.hashes)))
            next_size = next(wanted, None)
    if len(posting_rows) != len(expected) or {
        (int(s), a, int(m)) for s, a, m in posting_rows
    } != set(expected):
        return Chunk(start, end, f"entries {start}–{end - 1}: postings index")
    for level in range(1, bits + 1):
        stored = node_rows[level - 1]
        first = start >> level
        if [int(i) - first for i, _ in stored] != list(range(len(built[level]))) or [
            bytes(h) for _, h in stored
        ] != built[level]:
            return Chunk(start, end, f"entries {start}–{end - 1}: tree nodes of level {level}")
    top = frontier.hashes[0] if end - start == 1 << bits else None
    moves = {a: (running[a], lowest.get(a, 0)) for a in running}
    return Chunk(
        start,
        end,
        "",
        first_prev,
        first_time,
        prev_hash,
        prev_time,
        top,
        tuple(frontiers),
        moves,
        tuple(reversals),
        len(expected),
    )


@dataclass
class Joined:
    """What the one-process replay would have computed, for a clean log."""

    entries: int
    root: bytes
    roots: dict[int, bytes] = field(default_factory=dict)
    balances: dict[str, int] = field(default_factory=dict)


def _fold(hashes: Sequence[bytes]) -> bytes:
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


def verify_in_chunks(
    db: Snapshot,
    url: str,
    member_overdraft: int,
    sizes: Collection[int],
    workers: int,
    bits: int = CHUNK_BITS,
) -> Joined | str:
    """The log in ``db`` (read again by workers from ``url``) checked chunk by chunk; a
    :class:`Joined` when it is clean, else why not (then replay it in one process to name
    the problems). Rows below the size read here never change (the log tables are
    append-only), so the workers see what ``db`` sees."""
    entries, top_seq, posting_count, node_count = db.counts()
    if entries != top_seq or entries == 0:
        return "entries are missing, or there are none"
    n = entries
    tasks = []
    for start in range(0, n, 1 << bits):
        end = min(start + (1 << bits), n)
        inside = sorted({s for s in sizes if start < s <= end} | {end})
        tasks.append((url, start, end, bits, inside))
    context = multiprocessing.get_context("spawn")  # no fork: callers may hold threads
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        chunks = list(pool.map(check_chunk, tasks))
    return join(db, chunks, n, member_overdraft, posting_count, node_count, bits)


def join(
    db: Snapshot,
    chunks: Sequence[Chunk],
    n: int,
    member_overdraft: int,
    posting_count: int,
    node_count: int,
    bits: int,
) -> Joined | str:
    """The parent's half: join the chunks in order (see the module's docstring)."""
    levels: list[int] = []
    hashes: list[bytes] = []
    tops: list[bytes] = []
    joined = Joined(n, b"")
    balances = joined.balances
    replay = Replay(member_overdraft)
    prev_hash, prev_time, postings = ZERO_HASH, "", 0
    for chunk in chunks:
        if chunk.dirty:
            return chunk.dirty
        if chunk.first_prev != prev_hash or chunk.first_time < prev_time:
            return f"seq {chunk.start}: prev or time across chunks"
        prev_hash, prev_time = chunk.last_hash, chunk.last_time
        for size, part in chunk.frontiers:
            joined.roots[size] = _fold(hashes + list(part))
        for account, (change, lowest) in chunk.moves.items():
            balance = balances.get(account, 0)
            floor = floor_of(account, member_overdraft)
            if floor is not None and balance + lowest < floor:
                return f"account {account} falls below its floor in entries from {chunk.start}"
            balances[account] = balance + change
        for position, target, request in chunk.reversals:
            replay.expect_reversal(position, target, request)
        postings += chunk.postings
        if chunk.top is not None:
            tops.append(chunk.top)
            level, acc = bits, chunk.top
            while levels and levels[-1] == level:
                acc = node_hash(hashes.pop(), acc)
                levels.pop()
                level += 1
            levels.append(level)
            hashes.append(acc)
    if postings != posting_count:
        return "the postings index has rows for entries that do not exist"
    if node_count != sum(n >> level for level in range(1, n.bit_length() + 1)):
        return "tree nodes are missing, or cover entries that do not exist"
    row, level = tops, bits
    while len(row) >= 2:
        row = [node_hash(row[i], row[i + 1]) for i in range(0, len(row) - 1, 2)]
        level += 1
        stored = db.node_range(level, 0, len(row))
        if [int(i) for i, _ in stored] != list(range(len(row))) or [
            bytes(h) for _, h in stored
        ] != row:
            return f"tree nodes of level {level}"
    replay.finish(lambda seqs: {s: e.leaf for s, e in db.entries_by_seq(list(seqs)).items()})
    if replay.problems:
        return "a reversal"
    joined.root = joined.roots[n]
    return joined
