#!/usr/bin/env python3
"""``timebank verify`` and inclusion proofs on a large log, kept between runs.

Builds (once) a Timebank data directory holding a log of ``--size`` deposits appended through
the real sequencer, with its signing key, so that later runs measure without rebuilding:

* ``verify``: the real command, ``timebank verify``, in a subprocess with that directory as
  ``TIMEBANK_DATA_DIR`` (wall clock, and CPU of the command and its worker processes);
  ``verify1``: the same with ``--workers 1`` (one process: the baseline, in the same run);
  ``inproc``: ``Log.verify()`` in this process;
* ``proof``: ``Log.inclusion_proof`` latency (median, p99) over ``--proof-samples`` random
  leaves after ``--warmup`` untimed ones, a few checked against the signed root.

Prints one JSON document; progress goes to stderr. Nothing here asserts a timing.
``python benchmarks/large_log.py --dir /tmp/tb-log-1e6 --size 1000000`` (the directory is
built on the first run and reused while its log has that size).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from append import IN_FLIGHT, deposit, fill, machine, percentiles, say, time_calls  # on sys.path

from ledger.keys import load_or_create_signing_key
from ledger.log import Log
from ledger.merkle import leaf_hash, verify_inclusion
from ledger.storage import LedgerStore
from migrations.runner import upgrade

ORIGIN = "bench.timebank.local/log"

__all__ = ["IN_FLIGHT", "deposit"]


def env_for(directory: Path) -> dict[str, str]:
    return {
        **os.environ,
        "TIMEBANK_DATA_DIR": str(directory),
        "TIMEBANK_LOG_ORIGIN": ORIGIN,
        "TIMEBANK_SIGNING_KEY_FILE": str(directory / "log.key"),
    }


def open_log(directory: Path) -> Log:
    url = f"sqlite:///{directory / 'timebank.db'}"
    upgrade(url)
    signer = load_or_create_signing_key(directory / "log.key", ORIGIN)
    return Log(LedgerStore(url), signer, ORIGIN)


def build(log: Log, size: int, accounts: int) -> float:
    have = log.size()
    if have > size:
        raise SystemExit(f"the log already holds {have} entries, more than --size {size}")
    if have == size:
        say(f"reusing the log of {size} entries")
        return 0.0
    say(f"building entries {have}..{size - 1} through the sequencer")
    log.sequencer.max_batch = 1024
    t0 = time.perf_counter()
    fill(log, have, size, accounts)
    return time.perf_counter() - t0


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_cli_verify(directory: Path, extra: Sequence[str]) -> dict[str, Any]:
    cpu0 = children_cpu()
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "verify", *extra],
        env=env_for(directory),
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - t0
    return {
        "command": "timebank verify " + " ".join(extra),
        "exit_code": done.returncode,
        "seconds": round(seconds, 2),
        "cpu_seconds": round(children_cpu() - cpu0, 2),
        "output": done.stdout.strip().splitlines()[:6],
        "stderr": done.stderr.strip().splitlines()[-3:],
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", required=True, help="data directory, built on first use and kept")
    p.add_argument("--size", type=int, default=1_000_000)
    p.add_argument("--accounts", type=int, default=1000)
    p.add_argument("--sections", default="verify,proof", help="any of verify,verify1,inproc,proof")
    p.add_argument("--proof-samples", type=int, default=2000)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--seed", type=int, default=2026)
    args = p.parse_args(argv)
    directory = Path(args.dir)
    directory.mkdir(parents=True, exist_ok=True)
    sections = set(args.sections.split(","))
    out: dict[str, Any] = {"benchmark": "timebank verify and proofs on a large log"}
    out["started_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out["machine"] = machine()
    out["loadavg_at_start"] = list(os.getloadavg())
    log = open_log(directory)
    try:
        built = build(log, args.size, args.accounts)
        out["size"] = log.size()
        if built:
            out["build_seconds"] = round(built, 1)
        if "verify" in sections:
            say("timebank verify")
            out["cli_verify"] = time_cli_verify(directory, [])
            say(f"  {out['cli_verify']['seconds']} s: {out['cli_verify']['output'][:1]}")
        if "verify1" in sections:
            say("timebank verify --workers 1")
            out["cli_verify_one_process"] = time_cli_verify(directory, ["--workers", "1"])
            say(f"  {out['cli_verify_one_process']['seconds']} s")
        if "inproc" in sections:
            say("Log.verify() in this process")
            t0 = time.process_time()
            w0 = time.perf_counter()
            report = log.verify()
            out["log_verify_in_process"] = {
                "ok": report.ok,
                "entries": report.entries,
                "seconds": round(time.perf_counter() - w0, 2),
                "cpu_seconds": round(time.process_time() - t0, 2),
            }
            say(f"  {out['log_verify_in_process']}")
        if "proof" in sections:
            size = log.size()
            rng = random.Random(args.seed)
            indices = [rng.randrange(size) for _ in range(args.proof_samples + args.warmup)]
            with log.store.read() as db:
                root = db.head().checkpoint_root
            assert root is not None
            for i in indices[:20]:
                leaf = log.leaves(i, i + 1)[0].data
                verify_inclusion(leaf_hash(leaf), i, size, log.inclusion_proof(i, size), root)
            say(f"{args.proof_samples} inclusion proofs at {size}")
            ns = time_calls(lambda i: log.inclusion_proof(i, size), indices, args.warmup)
            out["inclusion_proof"] = percentiles(ns)
            say(f"  {out['inclusion_proof']}")
    finally:
        log.close()
    out["loadavg_at_end"] = list(os.getloadavg())
    json.dump(out, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
