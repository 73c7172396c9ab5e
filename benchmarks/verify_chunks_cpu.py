#!/usr/bin/env python3
"""CPU per leaf of ``timebank verify``'s worker half, in this one process.

Runs ``ledger.verify_chunks.check_chunk`` (read a chunk's rows, check them) on every chunk of
a kept log, as a worker process would, and prints one JSON document: CPU seconds
(``time.process_time``, reads included), µs per leaf, the load average, and each chunk's
answer (all must be clean). ``--profile`` prints cProfile's top functions to stderr.

``python benchmarks/verify_chunks_cpu.py --dir /tmp/verify-data`` on a directory built by
``benchmarks/large_log.py --dir /tmp/verify-data --size 100000 --sections none``. With
``PYTHONPATH`` pointing at another checkout it measures that one (a before/after pair).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import time
from collections.abc import Sequence
from typing import Any

from ledger import verify_chunks
from ledger.storage import LedgerStore


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", required=True, help="a data directory built by large_log.py")
    p.add_argument("--profile", action="store_true", help="cProfile to stderr")
    args = p.parse_args(argv)
    url = f"sqlite:///{args.dir}/timebank.db"
    with LedgerStore(url).read() as db:
        entries = db.counts()[0]
        sizes = db.checkpoint_sizes()
    bits = verify_chunks.CHUNK_BITS
    tasks = []
    for start in range(0, entries, 1 << bits):
        end = min(start + (1 << bits), entries)
        inside = sorted({s for s in sizes if start < s <= end} | {end})
        tasks.append((url, start, end, bits, inside))
    verify_chunks.check_chunk(tasks[-1])  # untimed: opens the store, warms the caches
    profile = cProfile.Profile() if args.profile else None
    load = os.getloadavg()
    if profile:
        profile.enable()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    chunks = [verify_chunks.check_chunk(task) for task in tasks]
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    if profile:
        profile.disable()
        pstats.Stats(profile, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    out: dict[str, Any] = {
        "benchmark": "verify_chunks.check_chunk in one process",
        "code": verify_chunks.__file__,
        "entries": entries,
        "cpu_seconds": round(cpu, 3),
        "wall_seconds": round(wall, 3),
        "us_per_leaf": round(cpu / entries * 1e6, 2),
        "dirty": [c.dirty for c in chunks if c.dirty],
        "loadavg_at_start": list(load),
        "loadavg_at_end": list(os.getloadavg()),
    }
    json.dump(out, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
