"""RFC 6962 / RFC 9162 Merkle tree with SHA-256: hashing, proofs and their verification.

The tree is stored as *complete aligned subtrees*: node ``(level, index)`` covers leaves
``[index << level, (index + 1) << level)`` and exists once all of them are appended. Every
subtree that an RFC 6962 proof needs is either such a node or a right-edge subtree that
decomposes into O(log n) of them, so generating a proof is two steps: plan which nodes are
needed (pure), fetch them in one read, then fold (pure). This keeps storage out of this module.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ledger.errors import ProofRequestError, ProofVerificationError

NodeId = tuple[int, int]
"""(level, index) of a complete aligned subtree; level 0 is a leaf hash."""

Span = tuple[int, int]
"""[start, end) range of leaves forming one subtree of an RFC 6962 proof."""

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split_point(n: int) -> int:
    """Largest power of two strictly smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


# ---------------------------------------------------------------- planning (pure)


def inclusion_spans(index: int, size: int) -> list[Span]:
    """Subtrees whose hashes form the audit path of leaf ``index`` in a tree of ``size``."""
    if not 0 <= index < size:
        raise ProofRequestError(
            "index %(index)s is not inside a tree of size %(size)s",
            field="index",
            index=index,
            size=size,
        )
    spans: list[Span] = []
    start, end, m = 0, size, index
    while end - start > 1:
        k = _split_point(end - start)
        if m < k:
            spans.append((start + k, end))
            end = start + k
        else:
            spans.append((start, start + k))
            start, m = start + k, m - k
    spans.reverse()  # RFC order: from the leaf upwards
    return spans


def consistency_spans(first: int, second: int) -> list[Span]:
    """Subtrees whose hashes form the RFC 6962 consistency proof from ``first`` to ``second``."""
    if first < 1:
        raise ProofRequestError("first must be at least 1 (RFC 9162 §2.1.4)", field="first")
    if first > second:
        raise ProofRequestError(
            "first (%(first)s) must not be larger than second (%(second)s)",
            field="first",
            first=first,
            second=second,
        )
    if first == second:
        return []
    spans: list[Span] = []
    start, end, m, whole = 0, second, first, True
    while True:
        n = end - start
        if m == n:
            if not whole:
                spans.append((start, end))
            break
        k = _split_point(n)
        if m <= k:
            spans.append((start + k, end))
            end = start + k
        else:
            spans.append((start, start + k))
            start, m, whole = start + k, m - k, False
    spans.reverse()
    return spans


def span_nodes(span: Span) -> list[NodeId]:
    """Complete aligned subtrees that make up ``span``, left to right (largest first)."""
    start, end = span
    nodes: list[NodeId] = []
    while start < end:
        level = (end - start).bit_length() - 1
        while start & ((1 << level) - 1):
            level -= 1
        nodes.append((level, start >> level))
        start += 1 << level
    return nodes


def nodes_needed(spans: Iterable[Span]) -> set[NodeId]:
    needed: set[NodeId] = set()
    for span in spans:
        needed.update(span_nodes(span))
    return needed


def fold_span(span: Span, nodes: Mapping[NodeId, bytes]) -> bytes:
    """RFC 6962 MTH of the leaves in ``span`` from its complete aligned parts."""
    parts = span_nodes(span)
    acc = nodes[parts[-1]]
    for part in reversed(parts[:-1]):
        acc = node_hash(nodes[part], acc)
    return acc


# ---------------------------------------------------------------- building


@dataclass
class Frontier:
    """The right edge of a growing tree: enough to append leaves and compute the root.

    ``hashes[i]`` is the complete subtree at ``levels[i]``; levels strictly decrease.
    """

    size: int = 0
    levels: list[int] = field(default_factory=list)
    hashes: list[bytes] = field(default_factory=list)

    @classmethod
    def plan(cls, size: int) -> list[NodeId]:
        """Nodes to read to rebuild the frontier of a tree of ``size`` leaves."""
        return span_nodes((0, size)) if size else []

    @classmethod
    def from_nodes(cls, size: int, nodes: Mapping[NodeId, bytes]) -> Frontier:
        ids = cls.plan(size)
        return cls(size, [level for level, _ in ids], [nodes[i] for i in ids])

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add a leaf hash; return the interior nodes ``(level, index, hash)`` it completed."""
        completed: list[tuple[int, int, bytes]] = []
        index = self.size
        level, acc = 0, leaf
        while self.levels and self.levels[-1] == level:
            acc = node_hash(self.hashes.pop(), acc)
            self.levels.pop()
            level += 1
            index >>= 1
            completed.append((level, index, acc))
        self.levels.append(level)
        self.hashes.append(acc)
        self.size += 1
        return completed

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        acc = self.hashes[-1]
        for h in reversed(self.hashes[:-1]):
            acc = node_hash(h, acc)
        return acc


def root_of(leaf_hashes: Iterable[bytes]) -> bytes:
    frontier = Frontier()
    for h in leaf_hashes:
        frontier.append(h)
    return frontier.root()


class MemoryTree:
    """A whole tree in memory: for tests, tools and the offline auditor."""

    def __init__(self) -> None:
        self.nodes: dict[NodeId, bytes] = {}
        self.frontier = Frontier()

    @property
    def size(self) -> int:
        return self.frontier.size

    def append(self, leaf: bytes) -> None:
        index = self.frontier.size
        self.nodes[(0, index)] = leaf
        for level, idx, h in self.frontier.append(leaf):
            self.nodes[(level, idx)] = h

    def root(self, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        if not 0 <= size <= self.size:
            raise ProofRequestError(f"tree size {size} is beyond the tree ({self.size})")
        return fold_span((0, size), self.nodes) if size else EMPTY_ROOT

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        if size > self.size:
            raise ProofRequestError(f"tree size {size} is beyond the tree ({self.size})")
        return [fold_span(s, self.nodes) for s in inclusion_spans(index, size)]

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        if second > self.size:
            raise ProofRequestError(f"tree size {second} is beyond the tree ({self.size})")
        return [fold_span(s, self.nodes) for s in consistency_spans(first, second)]


# ---------------------------------------------------------------- verification


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """RFC 9162 §2.1.3.2. Raises ProofVerificationError saying which check failed."""
    if index < 0 or index >= size:
        raise ProofVerificationError(f"index {index} is not inside a tree of size {size}")
    if len(leaf) != 32 or len(root) != 32:
        raise ProofVerificationError("leaf hash and root must be 32 bytes")
    fn, sn, acc = index, size - 1, leaf
    for p in proof:
        if len(p) != 32:
            raise ProofVerificationError("a proof hash is not 32 bytes")
        if sn == 0:
            raise ProofVerificationError("inclusion proof is longer than the path")
        if fn & 1 or fn == sn:
            acc = node_hash(p, acc)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            acc = node_hash(acc, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofVerificationError("inclusion proof is shorter than the path")
    if acc != root:
        raise ProofVerificationError("inclusion proof does not lead to the root")


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 §2.1.4.2. Raises ProofVerificationError saying which check failed."""
    if first < 1:
        raise ProofVerificationError("the first tree size must be at least 1 (RFC 9162 §2.1.4)")
    if first > second:
        raise ProofVerificationError(f"first size {first} is larger than second size {second}")
    if first == second:
        if proof:
            raise ProofVerificationError("proof must be empty for equal tree sizes")
        if first_root != second_root:
            raise ProofVerificationError("roots differ for equal tree sizes")
        return
    if not proof:
        raise ProofVerificationError("consistency proof is empty")
    if any(len(p) != 32 for p in proof):
        raise ProofVerificationError("a proof hash is not 32 bytes")
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofVerificationError("consistency proof is longer than the path")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofVerificationError("consistency proof is shorter than the path")
    if fr != first_root:
        raise ProofVerificationError("consistency proof does not lead to the first root")
    if sr != second_root:
        raise ProofVerificationError("consistency proof does not lead to the second root")
