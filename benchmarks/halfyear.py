#!/usr/bin/env python3
"""Half-yearly report speed over a log of 10^6 entries (issue 14: the report in < 5 s, the
auditor's recomputation in < 10 s).

Prints ONE JSON document to stdout; progress goes to stderr. The log is the bundle of
``benchmarks/audit_verify.py`` (deposits, gifts, donations, grants, redemptions, reversals of
5,000 members, all in the second half of 2023), read from its ``leaves.txt``:

* ``report``: what the server does for the public part once it has the leaves: feed every
  leaf to ``reports.public.PublicFigures.add_leaf`` (one ``json.loads`` each), then canonical
  JSON and SHA-256 of the figures. Reading the leaves from the database (pages of 1,000) is
  not included;
* ``recompute``: what ``timebank audit report`` does once it has the leaves: the same, plus the
  RFC 6962 leaf hashes folded into the root and compared with the signed checkpoint. Fetching
  the leaves over HTTP is not included (``benchmarks/audit_verify.py`` and docs/performance.md
  give the fetch and replay costs of a full audit).

Targets are reported as met or missed, never asserted.

    python benchmarks/halfyear.py                  # 10^6 entries
    python benchmarks/halfyear.py --entries 100000 --bundle /tmp/tb-bundle
"""

from __future__ import annotations

import argparse
import binascii
import hashlib
import json
import platform
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from audit_verify import BANK, build_bundle, log  # benchmarks/ is on sys.path when run

from ledger.entry import canonical_json
from ledger.merkle import Frontier
from ledger.note import Checkpoint, Note
from reports.public import PublicFigures, half_bounds

TARGET_REPORT, TARGET_RECOMPUTE, TARGET_ENTRIES = 5.0, 10.0, 1_000_000


def leaves(directory: Path) -> Iterator[bytes]:
    with open(directory / "leaves.txt", "rb") as f:
        for line in f:
            yield binascii.a2b_base64(line)


def parse_only(directory: Path) -> float:
    """The floor: ``json.loads`` of every leaf and nothing else."""
    started = time.perf_counter()
    for leaf in leaves(directory):
        json.loads(leaf)
    return time.perf_counter() - started


def report(directory: Path, start: datetime, end: datetime) -> tuple[float, str]:
    started = time.perf_counter()
    figures = PublicFigures(BANK, start, end)
    for leaf in leaves(directory):
        figures.add_leaf(leaf)
    digest = hashlib.sha256(canonical_json(figures.figures())).hexdigest()
    return time.perf_counter() - started, digest


def recompute(directory: Path, start: datetime, end: datetime) -> tuple[float, str, bool]:
    started = time.perf_counter()
    figures = PublicFigures(BANK, start, end)
    frontier = Frontier()
    sha256 = hashlib.sha256
    for leaf in leaves(directory):
        frontier.append(sha256(b"\x00" + leaf).digest())
        figures.add_leaf(leaf)
    digest = hashlib.sha256(canonical_json(figures.figures())).hexdigest()
    signed = Checkpoint.parse_body(Note.parse((directory / "checkpoint.txt").read_text()).text)
    return time.perf_counter() - started, digest, frontier.root() == signed.root


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--entries", type=int, default=TARGET_ENTRIES)
    p.add_argument("--bundle", help="keep the bundle here (reused if it holds --entries leaves)")
    args = p.parse_args(argv)
    scratch = Path(args.bundle) if args.bundle else Path(tempfile.mkdtemp(prefix="tb-half-"))
    manifest = scratch / "manifest.json"
    if not (manifest.exists() and json.loads(manifest.read_text())["tree_size"] == args.entries):
        log(f"building {args.entries} leaves in {scratch}")
        build_bundle(scratch, args.entries)
    start, end = half_bounds("2023-H2", "Asia/Shanghai")
    baseline_seconds = parse_only(scratch)
    log("timing the report")
    report_seconds, report_digest = report(scratch, start, end)
    log("timing the recomputation")
    recompute_seconds, recompute_digest, root_ok = recompute(scratch, start, end)
    result = {
        "benchmark": "halfyear",
        "entries": args.entries,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "json_loads_only_seconds": round(baseline_seconds, 2),
        "report_seconds": round(report_seconds, 2),
        "recompute_seconds": round(recompute_seconds, 2),
        "same_figures": report_digest == recompute_digest,
        "root_matches": root_ok,
        "report_target_met": args.entries >= TARGET_ENTRIES and report_seconds < TARGET_REPORT,
        "recompute_target_met": args.entries >= TARGET_ENTRIES
        and recompute_seconds < TARGET_RECOMPUTE,
        "run_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
