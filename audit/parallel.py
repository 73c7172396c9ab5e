"""Decoding and hashing leaves in worker processes for large logs; the answers come back in
order, as plain tuples, so the replay in the parent stays sequential."""

from __future__ import annotations

import binascii
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, TypeVar, cast

from audit.rules import Extra, leaf_rules
from ledger.replay import Fields, decode

PARALLEL_LEAVES = 30_000  # runs replaying more leaves than this decode them in parallel


CHUNK_LINES = 4000


T = TypeVar("T")


R = TypeVar("R")


def decode_lines(lines: list[bytes]) -> list[tuple[bool, Fields, Extra | None]]:
    """Lines of ``leaves.txt`` → (was it base64, the decoded leaf, ``leaf_rules``); runs in
    worker processes."""
    out = []
    for line in lines:
        try:
            leaf, is_base64 = binascii.a2b_base64(line.rstrip(b"\n"), strict_mode=True), True
        except binascii.Error:
            leaf, is_base64 = line, False
        # a plain tuple: it pickles several times faster than the named one
        out.append((is_base64, cast(Fields, tuple(decode(leaf))), leaf_rules(leaf)))
    return out


def decode_leaves(leaves: list[bytes]) -> list[tuple[Fields, Extra | None]]:
    """Leaf bytes → (decoded leaf as a plain tuple, ``leaf_rules``); runs in worker processes."""
    return [(cast(Fields, tuple(decode(leaf))), leaf_rules(leaf)) for leaf in leaves]


def in_chunks(items: Iterable[T], size: int = CHUNK_LINES) -> Iterator[list[T]]:
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def map_chunks(
    chunks: Iterable[list[T]], work: Callable[[list[T]], list[R]], workers: int
) -> Iterator[R]:
    """``work`` over each chunk, results in order; with ``workers`` > 1 in that many
    processes, a few chunks ahead, so memory stays bounded however large the log."""
    if workers <= 1:
        for chunk in chunks:
            yield from work(chunk)
        return
    context = multiprocessing.get_context("spawn")  # no fork: callers may hold threads
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending: deque[Future[list[R]]] = deque()
        for chunk in chunks:
            pending.append(pool.submit(work, chunk))
            if len(pending) >= workers * 3:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()


def decoded_lines(
    lines: Iterable[bytes], digest: Any, workers: int
) -> Iterator[tuple[bool, Fields, Extra | None]]:
    """``decode_lines`` over a file, in order, hashing the lines for the manifest."""

    def hashed() -> Iterator[bytes]:
        for line in lines:
            digest.update(line)
            yield line

    return map_chunks(in_chunks(hashed()), decode_lines, workers)


def default_workers(leaves: int) -> int:
    return min(os.cpu_count() or 1, 4) if leaves > PARALLEL_LEAVES else 1
