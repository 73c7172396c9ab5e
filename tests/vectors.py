"""Locate ../shared/vectors; tests that need them skip loudly when the folder is absent."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

VECTORS = Path(__file__).resolve().parent.parent.parent / "shared" / "vectors"


def require_vectors() -> Path:
    if not VECTORS.is_dir():
        if os.environ.get("CI"):
            pytest.fail(
                f"test vectors missing at {VECTORS} (CI must have ../shared beside the repo)"
            )
        pytest.skip(f"test vectors not found at {VECTORS}: clone ../shared beside this repository")
    return VECTORS


def vector_files(kind: str) -> list[Path]:
    folder = VECTORS / "merkle" / kind
    return sorted(folder.rglob("*.json")) if folder.is_dir() else []


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
