"""The auditor's recount in runs: each worker process reads its own contiguous run of leaves
(from the log's HTTP API or from a downloaded bundle's ``leaves.txt``), hashes it into the
complete aligned subtrees it covers and counts its partial figures; only those, a few hundred
bytes, cross back to the parent, which combines the subtrees into the tree's root in order and
adds the figures in any order. No leaf crosses a process boundary.

Aligned subtrees (``push``): a node at level L covers leaves [i·2^L, (i + 1)·2^L). A run pushes
its leaves one by one and merges a node with the one before it when that is its left sibling;
what is left are the run's maximal aligned subtrees, left to right. The parent pushes them, run
after run, onto one stack that starts empty at leaf 0: it merges them exactly as appending
every leaf would, so the stack is the tree's frontier (``ledger.merkle.Frontier``) at every
run's end, and its root is the RFC 6962 root of the leaves so far.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from audit.bundle import CHECKPOINT_FILE, KEY_FILE, LEAVES_FILE
from audit.client import LogClient
from audit.report import AuditError
from ledger.errors import LedgerError
from ledger.leaf_decoding import decode_leaf
from ledger.merkle import Frontier, leaf_hash, node_hash
from reports.summed import SummedFigures

RUN = 1 << 16  # leaves per run: a run ends at a multiple of RUN (or at a checkpoint)
FETCHERS = 2  # HTTP requests in flight per worker (each worker fetches its own run)


@dataclass(frozen=True)
class Run:
    """Leaves [start, end); ``offset``: where the run's first line starts in a file source;
    ``counted``: the run is below the anchored checkpoint, so its figures count."""

    start: int
    end: int
    counted: bool
    offset: int = 0
    stop: int = 0  # where the line after the run starts (file sources)


@dataclass
class RunCount:
    """What a worker hands back for a run: its aligned subtrees (level, hash) left to right,
    its partial figures (None when not counted), the ``report`` entries named ``entry_id``
    (seq, body) and what was wrong as (seq, order, where, what)."""

    run: Run
    nodes: list[tuple[int, bytes]]
    figures: SummedFigures | None
    anchors: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    found: list[tuple[int, int, str, str]] = field(default_factory=list)


class LeafSource(Protocol):
    """Where the leaves come from; pickled to the worker processes."""

    def plan(self, cuts: list[int]) -> list[int]:
        """Where the run starting at each of ``cuts`` (ascending seqs) begins: a byte offset in
        a file, 0 for sources that need none."""
        ...

    def read(self, run: Run) -> Iterator[tuple[int, bytes | None]]:
        """(seq, leaf) of the run, in order; None for a leaf that cannot be read."""
        ...


@dataclass(frozen=True)
class HttpLeaves:
    """The log's ``/v1/log/leaves`` pages, fetched by each worker for its own run."""

    url: str
    timeout: float = 30.0

    def plan(self, cuts: list[int]) -> list[int]:
        return [0] * len(cuts)

    def read(self, run: Run) -> Iterator[tuple[int, bytes | None]]:
        client = LogClient(self.url, self.timeout)
        yield from client.iter_leaves(run.start, run.end, workers=FETCHERS)


@dataclass(frozen=True)
class FileLeaves:
    """A bundle's ``leaves.txt`` (``timebank audit export``): one leaf a line in base64."""

    path: str
    block: int = 1 << 24

    def plan(self, cuts: list[int]) -> list[int]:
        """The byte offset of line ``cut`` for each cut: one pass counting newlines."""
        offsets, wanted = [], iter(cuts)
        target = next(wanted, None)
        line = position = 0
        with open(self.path, "rb") as f:
            while target is not None:
                if target == line:
                    offsets.append(position)
                    target = next(wanted, None)
                    continue
                data = f.read(self.block)
                if not data:
                    raise AuditError(f"{self.path} has {line} lines, fewer than {target}")
                lines = data.count(b"\n")
                if line + lines < target:
                    line, position = line + lines, position + len(data)
                    continue
                at = -1
                for _ in range(target - line):
                    at = data.index(b"\n", at + 1)
                f.seek(position + at + 1)
                line, position = target, position + at + 1
        return offsets

    def read(self, run: Run) -> Iterator[tuple[int, bytes | None]]:
        with open(self.path, "rb") as f:
            f.seek(run.offset)
            lines = f.read(run.stop - run.offset).split(b"\n")
        if len(lines) != run.end - run.start + 1 or lines[-1]:
            raise AuditError(f"{self.path} changed while it was read (leaves from {run.start})")
        a2b = binascii.a2b_base64
        for index, line in enumerate(lines[:-1], run.start):
            try:
                yield index, a2b(line, strict_mode=True)
            except binascii.Error:
                yield index, None


def push(frontier: Frontier, level: int, node: bytes) -> None:
    """Add the aligned subtree ``node`` at ``level`` starting at leaf ``frontier.size``: merged
    with the node before it while that is its left sibling (``frontier`` may start past 0)."""
    levels, hashes = frontier.levels, frontier.hashes
    position = frontier.size
    frontier.size += 1 << level
    while levels and levels[-1] == level and (position >> level) & 1:
        node = node_hash(hashes.pop(), node)
        levels.pop()
        position -= 1 << level
        level += 1
    levels.append(level)
    hashes.append(node)


def count_run(
    source: LeafSource, bank: str, start: datetime, end: datetime, entry_id: str, run: Run
) -> RunCount:
    """Hash and count one run of leaves; runs in a worker process (or in the caller's)."""
    tree = Frontier(size=run.start)
    figures = SummedFigures(bank, start, end) if run.counted else None
    counted = RunCount(run, [], figures)
    found, marker, expected = counted.found, entry_id.encode(), run.start
    for index, leaf in source.read(run):
        if index != expected:
            raise AuditError(f"leaf {expected} was expected, {index} was read")
        expected += 1
        if leaf is None:
            found.append((index, 0, f"seq {index}", "the leaf is not base64"))
            push(tree, 0, leaf_hash(b""))  # the root differs, and says so
            continue
        push(tree, 0, leaf_hash(leaf))
        if figures is not None:
            try:
                figures.add_leaf(leaf)
            except ValueError as exc:
                found.append((index, 0, f"seq {index}", f"malformed entry: {exc}"))
        if marker in leaf:
            try:
                entry = decode_leaf(leaf)
            except LedgerError as exc:
                found.append((index, 2, f"seq {index}", f"malformed entry: {exc}"))
                continue
            if entry.request.kind == "report" and entry.request.id == entry_id:
                counted.anchors.append((index, dict(entry.request.body)))
    if expected != run.end:
        raise AuditError(f"leaves [{expected}, {run.end}) were not read")
    counted.nodes = list(zip(tree.levels, tree.hashes, strict=True))
    return counted


def count_runs(
    source: LeafSource, bank: str, start: datetime, end: datetime, entry_id: str, runs: list[Run]
) -> list[RunCount]:
    return [count_run(source, bank, start, end, entry_id, run) for run in runs]


@dataclass(frozen=True)
class BundleLog:
    """A downloaded bundle (``timebank audit export``) read as the log: its key, its
    checkpoint and its leaves; nothing else of the server."""

    directory: Path

    def key(self) -> str:
        return (self.directory / KEY_FILE).read_text("utf-8").strip()

    def checkpoint(self) -> str:
        return (self.directory / CHECKPOINT_FILE).read_text("utf-8")

    def source(self) -> FileLeaves:
        return FileLeaves(str(self.directory / LEAVES_FILE))
