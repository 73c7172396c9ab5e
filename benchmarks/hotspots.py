#!/usr/bin/env python3
"""Where the time goes: cProfile of the append path, inclusion proofs and verification.

Builds a SQLite log of ``--size`` entries through the sequencer, then profiles

* ``append``: ``--writers`` threads calling ``Log.append``; the profiler runs inside the
  sequencer's writer thread (around ``BatchWriter.append``), and the share of wall time the
  writer spent inside its batches is reported, so the rest is queueing and thread hand-off;
* ``proof``: ``--proofs`` calls of ``Log.inclusion_proof`` at the full size;
* ``verify``: one ``Log.verify()``.

Prints, per section, the top functions by own time and by cumulative time (text, stdout).
Profiling slows Python code down several times, so use ``append.py`` for the numbers and this
for the shares.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from append import Scratch, deposit, fill, open_log, say  # benchmarks/append.py

from ledger.entry import EntryRequest
from ledger.log import Log


def top(profile: cProfile.Profile, title: str, limit: int) -> str:
    out = io.StringIO()
    out.write(f"\n===== {title} =====\n")
    for key in ("tottime", "cumulative"):
        out.write(f"--- sorted by {key} ---\n")
        stats = pstats.Stats(profile, stream=out)
        stats.strip_dirs().sort_stats(key).print_stats(limit)
    return out.getvalue()


def profile_appends(log: Log, writers: int, entries: int, limit: int) -> str:
    profile = cProfile.Profile()
    writer = log.sequencer.writer
    original = writer.append
    busy = [0.0, 0]

    def profiled(requests: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return profile.runcall(original, requests)
        finally:
            busy[0] += time.perf_counter() - t0
            busy[1] += 1

    writer.append = profiled  # type: ignore[method-assign]
    requests = [deposit("hot", n, 1000) for n in range(entries)]
    barrier = threading.Barrier(writers + 1)

    def run(mine: list[EntryRequest]) -> None:
        barrier.wait()
        for request in mine:
            log.append(request)

    threads = [threading.Thread(target=run, args=(requests[k::writers],)) for k in range(writers)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    writer.append = original  # type: ignore[method-assign]
    head = (
        f"{writers} writers, {entries} entries on a log of {log.size() - entries}: "
        f"{entries / wall:.0f} entries/s under the profiler, {busy[1]} batches "
        f"(mean {entries / busy[1]:.1f}); writer thread inside BatchWriter.append "
        f"{busy[0] / wall:.0%} of wall time\n"
    )
    return head + top(profile, "append (sequencer writer thread)", limit)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    p.add_argument("--size", type=lambda v: int(float(v)), default=100_000)
    p.add_argument("--writers", type=int, default=64)
    p.add_argument("--entries", type=int, default=10_000, help="appends to profile")
    p.add_argument("--proofs", type=int, default=1000)
    p.add_argument("--limit", type=int, default=25, help="functions listed per table")
    p.add_argument("--sections", default="append,proof,verify")
    args = p.parse_args()
    sections = set(args.sections.split(","))
    workdir = Path(tempfile.mkdtemp(prefix="tbhot"))
    path = workdir / "hot.db"
    log = open_log(Scratch("sqlite", f"sqlite:///{path}", path=path))
    try:
        say(f"building {args.size} entries")
        fill(log, 0, args.size, 1000)
        if "proof" in sections:
            rng = random.Random(1)
            size = log.size()
            profile = cProfile.Profile()
            t0 = time.perf_counter()
            for _ in range(args.proofs):
                profile.runcall(log.inclusion_proof, rng.randrange(size), size)
            took = (time.perf_counter() - t0) / args.proofs * 1e3
            print(f"{args.proofs} inclusion proofs at {size}: {took:.3f} ms each under profiler")
            print(top(profile, f"inclusion_proof at {size}", args.limit))
        if "verify" in sections:
            profile = cProfile.Profile()
            t0 = time.perf_counter()
            report = profile.runcall(log.verify)
            print(f"verify: {report.summary()} in {time.perf_counter() - t0:.1f}s under profiler")
            print(top(profile, f"verify at {report.entries}", args.limit))
        if "append" in sections:
            say(f"profiling {args.entries} appends from {args.writers} writers")
            print(profile_appends(log, args.writers, args.entries, args.limit))
    finally:
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
