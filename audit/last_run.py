"""The latest ``timebank audit verify --record`` on this server, kept in the data directory
so that the auditors' page can show it (the page never runs an audit itself: an audit is
the auditor's own run, with the key the auditor trusts)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

FILE_NAME = "audit-verify-last.json"


@dataclass(frozen=True)
class LastRun:
    finished_at: str
    ok: bool
    source: str
    lines: tuple[str, ...]


def record(data_dir: Path, ok: bool, source: str, lines: list[str]) -> Path:
    """Write the result atomically (a reader sees the old one or the new one)."""
    path = data_dir / FILE_NAME
    data = {
        "finished_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "ok": ok,
        "source": source,
        "lines": lines,
    }
    data_dir.mkdir(parents=True, exist_ok=True)
    scratch = path.with_suffix(".tmp")
    scratch.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(scratch, path)
    return path


def load(data_dir: Path) -> LastRun | None:
    """The recorded run, or None when there is none (or the file is unreadable)."""
    try:
        raw = json.loads((data_dir / FILE_NAME).read_text(encoding="utf-8"))
        return LastRun(
            str(raw["finished_at"]),
            bool(raw["ok"]),
            str(raw["source"]),
            tuple(str(line) for line in raw["lines"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
