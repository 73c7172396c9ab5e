"""``timebank verify`` of a large log in worker processes: the clean case, fast.

The log is cut into aligned runs of ``2**bits`` entries (chunks). A worker process reads one
chunk's rows itself (its entries, its postings index and ``log_facts`` rows, its stored tree
nodes up to level ``bits``) and makes every check that needs nothing outside the chunk: each
leaf decodes, is canonical and has its row's ``seq``; its hash equals the stored one and its
id, kind and time the columns; its postings follow the kind's rules and equal the postings
index; its ``log_facts`` row is the one ``ledger.facts`` makes of it; ``prev`` is the leaf hash
before it and ``time`` never decreases inside the chunk, and where it changes (a new batch) a
checkpoint is stored; the chunk's stored interior nodes equal the ones recomputed from its
leaves. It sends back only what joins the
chunks: the first ``prev`` and time, the last leaf hash and time, the chunk's subtree hash,
its part of the Merkle frontier at each checkpoint size inside it, each account's net change
and lowest running change, and its reversals.

The parent joins them in order: the chain and the times across chunk edges (and the
checkpoint a new batch there needs), the roots at every checkpoint size (the frontier of the
chunks before, plus the chunk's part), the tree levels above the chunks, every account's
balance against its floor, the reversals (``Replay.finish``), and the counts of rows (so no
row lies outside what was checked).
``ledger.verify`` then checks what is not per entry (the checkpoints' signatures, witness
cosignatures, ``log_reversals``, the balance cache) itself.

This path only ever *accepts*: it says the log is clean only when every check that
``ledger.verify``'s one-process replay makes would pass, and otherwise returns why it is not;
the caller then runs the one-process replay, which names every problem
(``tests/test_tamper.py`` runs each tampering through both).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from base64 import b64encode
from binascii import b2a_base64
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from hashlib import sha256
from typing import Any, NamedTuple

from ledger.entry import ZERO_HASH, EntryRequest, Posting
from ledger.errors import LedgerError
from ledger.facts import fact_values
from ledger.leaf_decoding import decode_leaf, plain_leaf, prev_bytes
from ledger.merkle import node_hash
from ledger.postings import check_postings, floor_of
from ledger.replay import Replay
from ledger.storage import LedgerStore, Snapshot

CHUNK_BITS = 14  # 16,384 entries a chunk: the last chunks handed out end close together
PARALLEL_ENTRIES = 200_000  # logs with more entries than this are verified in workers


def default_workers() -> int:
    """Worker processes for a large log: one per CPU."""
    return os.cpu_count() or 1


def forked_workers(workers: int) -> ProcessPoolExecutor | None:
    """``workers`` processes forked from this one now, if it can fork and runs one thread;
    else None (:func:`verify_in_chunks` then starts fresh ones, about 0.4 s of imports each).

    Only for a process with no database connection open (``timebank verify`` before it
    reads anything): a forked worker opens its own, and must not inherit one, nor the SQLite
    library's record of this process's locks on the same file. A pool that forks starts all
    its processes at its first task, so they exist when this returns."""
    if "fork" not in multiprocessing.get_all_start_methods() or threading.active_count() != 1:
        return None
    context = multiprocessing.get_context("fork")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
    pool.submit(int).result()
    return pool


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
        facts = db.fact_range(start, end)
        nodes = [db.node_range(level, start >> level, end >> level) for level in range(1, bits + 1)]
    return check_rows(start, end, bits, sizes, rows, postings, nodes, facts)


_BINARY = (bytes, bytearray, memoryview)  # what a binary column holds, unless edited as text


def check_rows(
    start: int,
    end: int,
    bits: int,
    sizes: Sequence[int],
    rows: Sequence[Any],
    posting_rows: Sequence[Any],
    node_rows: Sequence[Sequence[Any]],
    fact_rows: Sequence[Any],
) -> Chunk:
    """The checks of :func:`check_chunk` on rows already read (pure). ``sizes``: the
    checkpoint sizes in (start, end], and ``end``."""
    if len(rows) != end - start:
        return Chunk(start, end, f"entries {start}–{end - 1}: {len(rows)} rows")
    hashes: list[bytes] = []
    expected: list[tuple[int, str, int]] = []
    facts: list[tuple[Any, ...]] = []
    signed = set(sizes)  # below ``end``, every one is a stored checkpoint's size
    running: dict[str, int] = {}
    lowest: dict[str, int] = {}
    reversals: list[tuple[int, int, EntryRequest]] = []
    follow_rules: set[tuple[Any, ...]] = set()
    prev_hash, prev_time = b"", ""
    first_prev, first_time = b"", ""
    position = start
    for seq, entry_id, stored_hash, kind, time, leaf, stored_prev in rows:
        if not isinstance(leaf, _BINARY):
            return Chunk(start, end, f"seq {position}: the leaf")  # named by the replay
        leaf = bytes(leaf)
        leaf_hash = sha256(b"\x00" + leaf).digest()
        fields = _leaf_fields(leaf, follow_rules)
        if fields is None:
            return Chunk(start, end, f"seq {position}: the leaf")
        entry_seq, prev, entry_time, entry_kind, request_id, body, moves = fields
        if seq != position or entry_seq != position:
            return Chunk(start, end, f"seq {position}: its seq")
        if not isinstance(stored_hash, _BINARY) or bytes(stored_hash) != leaf_hash:
            return Chunk(start, end, f"seq {position}: stored leaf hash")
        if (
            request_id != entry_id
            or entry_kind != kind
            or entry_time != time
            or not isinstance(stored_prev, _BINARY)
            or b2a_base64(bytes(stored_prev), newline=False).decode() != prev
        ):
            return Chunk(start, end, f"seq {position}: columns")
        if position == start:
            first = prev_bytes(prev)
            if first is None:
                return Chunk(start, end, f"seq {position}: the leaf")
            first_prev, first_time = first, entry_time
        elif prev != b2a_base64(prev_hash, newline=False).decode() or entry_time < prev_time:
            return Chunk(start, end, f"seq {position}: prev or time")
        elif entry_time != prev_time and position not in signed:
            return Chunk(start, end, f"seq {position}: a new batch without a checkpoint before it")
        prev_hash, prev_time = leaf_hash, entry_time
        if entry_kind == "reversal":
            target = body.get("reverses")
            if not isinstance(target, int) or isinstance(target, bool):
                return Chunk(start, end, f"seq {position}: reversal names no entry")
            reversals.append((position, target, decode_leaf(leaf).request))
        for account, minutes in sorted(moves) if len(moves) > 1 else moves:
            expected.append((position, account, minutes))
            balance = running[account] = running.get(account, 0) + minutes
            if minutes < 0 and balance < lowest.get(account, 0):
                lowest[account] = balance
        facts.append(fact_values(position, entry_kind, moves, body))
        hashes.append(leaf_hash)
        position += 1
    if posting_rows != expected and (  # the rows come in (seq, account) order as a rule
        len(posting_rows) != len(expected) or set(map(tuple, posting_rows)) != set(expected)
    ):
        return Chunk(start, end, f"entries {start}–{end - 1}: postings index")
    if fact_rows != facts and list(map(tuple, fact_rows)) != facts:
        return Chunk(start, end, f"entries {start}–{end - 1}: log_facts")
    built = [hashes]  # built[level]: the chunk's complete nodes of that level, in order
    for level in range(1, bits + 1):
        below = built[-1]
        built.append(
            [
                sha256(b"\x01" + below[i] + below[i + 1]).digest()
                for i in range(0, len(below) - 1, 2)
            ]
        )
        stored = node_rows[level - 1]
        first_index = start >> level
        if [int(i) - first_index for i, _ in stored] != list(range(len(built[level]))) or [
            bytes(h) for _, h in stored
        ] != built[level]:
            return Chunk(start, end, f"entries {start}–{end - 1}: tree nodes of level {level}")
    top = built[bits][0] if end - start == 1 << bits else None
    moves_of = {a: (running[a], lowest.get(a, 0)) for a in running}
    return Chunk(
        start,
        end,
        "",
        first_prev,
        first_time,
        prev_hash,
        prev_time,
        top,
        tuple((size, _frontier_part(built, size - start)) for size in sizes),
        moves_of,
        tuple(reversals),
        len(expected),
    )


LeafFields = tuple[int, str, str, str, str, Mapping[str, Any], list[tuple[str, int]]]
"""(seq, prev as base64, time, kind, id, body, postings as (account, minutes)) of a leaf."""


def _leaf_fields(leaf: bytes, follow_rules: set[tuple[Any, ...]]) -> LeafFields | None:
    """A leaf's fields if it decodes (exactly as ``leaf_decoding.decode_leaf``) and its
    postings follow its kind's rules (``postings.check_postings``); None if either fails.

    The common leaf is read through ``leaf_decoding.plain_leaf`` (its canonical layout) without
    building the frozen ``Entry``; any other goes through ``decode_leaf``. The rules are
    checked once per ``(kind, body.reason, accounts and the sign of each posting)``: apart
    from the postings summing to zero, which is checked on every leaf, ``check_postings``
    looks at nothing else (``follow_rules`` holds the keys that passed)."""
    plain = plain_leaf(leaf)
    if plain is None:
        try:
            entry = decode_leaf(leaf)
            check_postings(entry.request)
        except LedgerError:
            return None
        request = entry.request
        return (
            entry.seq,
            b64encode(entry.prev).decode(),
            entry.time,
            request.kind,
            request.id,
            request.body,
            [(p.account, p.minutes) for p in request.postings],
        )
    kind, body, moves = plain.kind, plain.body, plain.postings
    reason = body.get("reason")
    key = (kind, reason, *[(a, m < 0) for a, m in moves]) if type(reason) in _KEYED else None
    if key is not None and key in follow_rules:
        if sum(m for _, m in moves) != 0:
            return None
    else:
        request = EntryRequest(kind, plain.id, tuple(Posting(a, m) for a, m in moves), body)
        try:
            check_postings(request)
        except LedgerError:
            return None
        if key is not None:
            follow_rules.add(key)
    return plain.seq, plain.prev, plain.time, kind, plain.id, body, moves


_KEYED = (str, type(None))  # a body.reason that can be part of a key (hashable, and the usual)


def _frontier_part(built: Sequence[Sequence[bytes]], size: int) -> tuple[bytes, ...]:
    """The Merkle frontier of the chunk's first ``size`` leaves (``merkle.Frontier.hashes``):
    one complete subtree per set bit of ``size``, largest first."""
    part, offset = [], 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            part.append(built[level][offset >> level])
            offset += 1 << level
    return tuple(part)


@dataclass
class Joined:
    """What the one-process replay would have computed, for a clean log."""

    entries: int
    root: bytes
    roots: dict[int, bytes] = field(default_factory=dict)
    balances: dict[str, int] = field(default_factory=dict)
    reversed: dict[int, int] = field(default_factory=dict)  # original seq → reversing seq


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
    pool: ProcessPoolExecutor | None = None,
) -> Joined | str:
    """The log in ``db`` (read again by workers from ``url``) checked chunk by chunk; a
    :class:`Joined` when it is clean, else why not (then replay it in one process to name
    the problems). Rows below the size read here never change (the log tables are
    append-only), so the workers see what ``db`` sees. The workers are ``pool``'s (see
    :func:`forked_workers`; the caller shuts it down), else ``workers`` started here."""
    n = db.next_seq()
    if n == 0:
        return "there are no entries"
    tasks = []
    for start in range(0, n, 1 << bits):
        end = min(start + (1 << bits), n)
        inside = sorted({s for s in sizes if start < s <= end} | {end})
        tasks.append((url, start, end, bits, inside))
    with ExitStack() as stack:
        if pool is None:
            context = multiprocessing.get_context("spawn")  # no fork: callers may hold threads
            pool = stack.enter_context(ProcessPoolExecutor(workers, mp_context=context))
        answers = pool.map(check_chunk, tasks)  # the workers start on these now
        entries, top_seq, posting_count, node_count, fact_count = db.counts()  # while they work
        chunks = list(answers)
    if entries != top_seq:
        return "entries are missing"
    if fact_count != n:
        return "log_facts has rows for entries that do not exist"
    return join(db, chunks, n, member_overdraft, posting_count, node_count, bits, sizes)


def join(
    db: Snapshot,
    chunks: Sequence[Chunk],
    n: int,
    member_overdraft: int,
    posting_count: int,
    node_count: int,
    bits: int,
    sizes: Collection[int],
) -> Joined | str:
    """The parent's half: join the chunks in order (see the module's docstring); ``sizes``:
    the stored checkpoints'."""
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
        if chunk.start and chunk.first_time != prev_time and chunk.start not in sizes:
            return f"seq {chunk.start}: a new batch without a checkpoint before it"
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
    joined.reversed = replay.reversed
    return joined
