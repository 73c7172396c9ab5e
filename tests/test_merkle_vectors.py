"""All RFC 6962 vectors from transparency-dev/merkle in ../shared/vectors/merkle."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from ledger.errors import ProofVerificationError
from ledger.merkle import MemoryTree, leaf_hash, verify_consistency, verify_inclusion
from tests.vectors import VECTORS, load, require_vectors, vector_files

INCLUSION = vector_files("inclusion")
CONSISTENCY = vector_files("consistency")


def _b(value: str | None) -> bytes:
    return base64.b64decode(value) if value else b""


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(VECTORS / "merkle")) for p in paths]


def test_all_196_vectors_are_present() -> None:
    require_vectors()
    assert len(INCLUSION) + len(CONSISTENCY) == 196


@pytest.mark.parametrize("path", INCLUSION, ids=_ids(INCLUSION))
def test_inclusion_vector(path: Path) -> None:
    v = load(path)
    proof = [_b(p) for p in v["proof"] or []]
    args = (_b(v["leafHash"]), v["leafIdx"], v["treeSize"], proof, _b(v["root"]))
    if v["wantErr"]:
        with pytest.raises(ProofVerificationError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("path", CONSISTENCY, ids=_ids(CONSISTENCY))
def test_consistency_vector(path: Path) -> None:
    v = load(path)
    proof = [_b(p) for p in v["proof"] or []]
    args = (v["size1"], v["size2"], _b(v["root1"]), _b(v["root2"]), proof)
    if v["wantErr"]:
        with pytest.raises(ProofVerificationError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


REFERENCE_LEAVES = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]
REFERENCE_ROOTS = {
    0: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}


def test_reference_tree_roots() -> None:
    tree = MemoryTree()
    for leaf in REFERENCE_LEAVES:
        tree.append(leaf_hash(leaf))
    for size, root in REFERENCE_ROOTS.items():
        assert tree.root(size).hex() == root


def test_generated_proofs_match_happy_path_vectors() -> None:
    """Our generator must produce exactly the proofs of the independent implementation."""
    require_vectors()
    tree = MemoryTree()
    for leaf in REFERENCE_LEAVES:
        tree.append(leaf_hash(leaf))
    checked = 0
    for path in INCLUSION:
        v = load(path)
        if v["wantErr"] or v["treeSize"] > 8 or path.parent.name == "single-entry":
            continue
        if _b(v["leafHash"]) != leaf_hash(REFERENCE_LEAVES[v["leafIdx"]]):
            continue
        assert tree.inclusion_proof(v["leafIdx"], v["treeSize"]) == [
            _b(p) for p in v["proof"] or []
        ]
        checked += 1
    for path in CONSISTENCY:
        v = load(path)
        if v["wantErr"] or v["size2"] > 8 or _b(v["root2"]) != tree.root(v["size2"]):
            continue
        assert tree.consistency_proof(v["size1"], v["size2"]) == [_b(p) for p in v["proof"] or []]
        checked += 1
    assert checked >= 6
