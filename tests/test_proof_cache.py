"""Proofs keep the upper tree nodes they read and the largest size seen signed
(``ledger.log.Log._nodes``, ``_require_signed``): the proofs stay the same, a size not yet
signed is still refused, and a proof whose nodes are all kept reads nothing."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import pytest

from ledger.errors import ProofRequestError
from ledger.log import KEPT_NODE_LEVEL, Log
from ledger.merkle import leaf_hash, root_of, verify_consistency, verify_inclusion
from tests.helpers import deposit, member

SIZE = 2 ** (KEPT_NODE_LEVEL + 1)  # two whole subtrees at the first kept level


def _fill(log: Log, start: int, end: int) -> None:
    futures = [log.sequencer.submit(deposit(f"d{i}", member(i % 5), 10)) for i in range(start, end)]
    for future in futures:
        future.result()


def _root(log: Log, size: int) -> bytes:
    return root_of(leaf_hash(leaf.data) for leaf in log.leaves(0, size))


def test_proofs_from_kept_nodes_verify_and_read_nothing(
    log: Log, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(log, 0, SIZE)
    leaves = [leaf.data for leaf in log.leaves(0, SIZE)]
    root, half = _root(log, SIZE), _root(log, SIZE // 2)
    reads: list[int] = []
    read = log.store.read

    def counting() -> AbstractContextManager[Any]:
        reads.append(1)
        return read()

    monkeypatch.setattr(log.store, "read", counting)
    for _ in range(2):
        for index in (0, 1, SIZE // 2, SIZE - 1):
            proof = log.inclusion_proof(index, SIZE)
            verify_inclusion(leaf_hash(leaves[index]), index, SIZE, proof, root)
        verify_consistency(SIZE // 2, SIZE, half, root, log.consistency_proof(SIZE // 2, SIZE))
    reads.clear()
    # Both halves are kept nodes, and the size was seen signed: no read at all.
    proof = log.consistency_proof(SIZE // 2, SIZE)
    assert reads == []
    verify_consistency(SIZE // 2, SIZE, half, root, proof)


def test_a_size_not_yet_signed_is_refused_until_it_is(log: Log) -> None:
    _fill(log, 0, SIZE)
    log.inclusion_proof(0, SIZE)  # the size is remembered as signed
    with pytest.raises(ProofRequestError, match="beyond the signed tree"):
        log.inclusion_proof(0, SIZE + 1)
    with pytest.raises(ProofRequestError, match="beyond the signed tree"):
        log.consistency_proof(1, SIZE + 1)
    with pytest.raises(ProofRequestError, match="at least 1"):
        log.inclusion_proof(0, 0)
    _fill(log, SIZE, SIZE + 3)
    size = SIZE + 3
    leaves = [leaf.data for leaf in log.leaves(0, size)]
    root = _root(log, size)
    for index in (0, SIZE, size - 1):
        verify_inclusion(
            leaf_hash(leaves[index]), index, size, log.inclusion_proof(index, size), root
        )
    verify_consistency(SIZE, size, _root(log, SIZE), root, log.consistency_proof(SIZE, size))
