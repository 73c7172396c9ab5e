#!/usr/bin/env python3
"""Offline audit speed: ``timebank audit verify DIR`` over a bundle of 10^6 entries.

Prints ONE JSON document to stdout; progress goes to stderr. The auditor's time is compared,
in the same run on the same files, with two baselines that do strictly less work:

* ``hash_only``: read ``leaves.txt``, base64-decode every line, SHA-256 it as an RFC 6962 leaf
  and fold the Merkle root (the least any verifier of the signed root must do);
* ``hash_and_parse``: the same plus ``json.loads`` of every leaf.

``verify`` is ``audit.auditor.verify_bundle`` with the log's key: manifest hashes, signature,
canonical form, hash chain, seq and time order, double-entry rules, balance floors,
reversals, Merkle root. The target (issue 5) is 10^6 entries in under 30 s; it is reported
as met or missed, never asserted.

The bundle is built directly (not through a database) from a realistic mix of deposits,
gifts, donations, grants, redemptions and reversals that keeps every rule, signed with a
fresh key. ``--bundle DIR`` keeps it (and reuses it on the next run).

    python benchmarks/audit_verify.py                 # 10^6 entries
    python benchmarks/audit_verify.py --entries 100000
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from audit.auditor import BUNDLE_FORMAT, Policy, verify_bundle
from ledger.kinds import weighted
from ledger.merkle import Frontier
from ledger.note import Checkpoint, Signer, Verifier, sign_checkpoint

BANK = "bench"
ORIGIN = "bench.timebank.local/audit"
TARGET_SECONDS = 30.0
TARGET_ENTRIES = 1_000_000
SERVICES = ("meal", "cleaning", "companionship", "escort", "nursing", "shopping", "repair")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def build_bundle(
    directory: Path,
    entries: int,
    seed: int = 2026,
    first: int = 1_700_000_000,
    seconds_per_ten: int = 1,
    services: bool = False,
) -> Verifier:
    """Write a valid bundle of ``entries`` leaves; returns the log's verifier key. Entry
    ``seq`` is timed ``first + seq * seconds_per_ten // 10`` (Unix time); with ``services``
    deposits name a service and an organisation, as the log's deposits do."""
    rng = random.Random(seed)
    signer = Signer.generate(ORIGIN)
    members = [f"{BANK}:member:{rng.getrandbits(64):016x}" for _ in range(5000)]
    issuance, pool, redemption = (f"{BANK}:{r}" for r in ("issuance", "pool", "redemption"))
    balances = dict.fromkeys(members, 0)
    pool_balance = 0
    deposits: list[tuple[int, str, int]] = []
    frontier = Frontier()
    prev = bytes(32)
    digest = hashlib.sha256()
    directory.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(directory / "leaves.txt", "wb") as out:
        for seq in range(entries):
            stamp = first + seq * seconds_per_ten // 10
            when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp)) + ".000000Z"
            roll = rng.random()
            giver = members[rng.randrange(len(members))]
            body: dict[str, Any] = {}
            sigs: list[dict[str, str]] = []
            kind = ""
            postings: list[tuple[str, int]] = []
            if seq % 100_000 == 50 and deposits:  # now and then an admin reverses a deposit
                target, who, amount = deposits.pop(0)
                if balances[who] >= amount:
                    kind, postings = "reversal", [(issuance, amount), (who, -amount)]
                    body = {"reverses": target, "reason": "logged twice"}
                    balances[who] -= amount
            if kind:
                pass
            elif roll < 0.6 or balances[giver] < 60:
                minutes = rng.choice((30, 45, 60, 90, 120))
                weight = rng.choice((1000, 1100, 1300, 1500))
                amount = weighted(minutes, weight)
                kind, postings = "deposit", [(issuance, -amount), (giver, amount)]
                body = {
                    "record": f"{rng.getrandbits(256):064x}",
                    "minutes": minutes,
                    "weight": weight,
                    "confirmed_by": "u-elder",
                    "confirmed_as": "elder",
                    "verified_by": "u-staff",
                }
                if services:
                    body["service"] = SERVICES[seq % len(SERVICES)]
                    body["org"] = f"org-{seq % 12:02d}"
                sigs = [{"by": "u-staff", "role": "verifier"}]
                balances[giver] += amount
                if len(deposits) < 64:
                    deposits.append((seq, giver, amount))
            elif roll < 0.75:
                receiver = members[rng.randrange(len(members))]
                amount = rng.randint(1, min(balances[giver], 120))
                if receiver == giver:
                    kind, postings = "donation", [(giver, -amount), (pool, amount)]
                    pool_balance += amount
                else:
                    kind, postings = "gift", [(giver, -amount), (receiver, amount)]
                    balances[receiver] += amount
                    body = {"relation": "child"}
                balances[giver] -= amount
            elif roll < 0.85 and pool_balance >= 30:
                amount = rng.randint(1, min(pool_balance, 120))
                kind, postings = "grant", [(pool, -amount), (giver, amount)]
                body = {"reason": "priority elder"}
                pool_balance -= amount
                balances[giver] += amount
            else:
                amount = rng.randint(1, min(balances[giver], 90))
                kind, postings = "redemption", [(giver, -amount), (redemption, amount)]
                body = {"service": "meal"}
                balances[giver] -= amount
            leaf = _canonical(
                {
                    "v": 1,
                    "seq": seq,
                    "prev": base64.b64encode(prev).decode(),
                    "time": when,
                    "kind": kind,
                    "id": f"bench-{seq}",
                    "postings": [{"account": a, "minutes": m} for a, m in postings],
                    "body": body,
                    "signatures": sigs,
                }
            )
            prev = hashlib.sha256(b"\x00" + leaf).digest()
            frontier.append(prev)
            line = base64.b64encode(leaf) + b"\n"
            out.write(line)
            digest.update(line)
            if seq and seq % 200_000 == 0:
                log(f"  built {seq} leaves ({time.perf_counter() - started:.1f} s)")
    key = (signer.verifier.to_text() + "\n").encode()
    checkpoint = sign_checkpoint(Checkpoint(ORIGIN, entries, frontier.root()), signer).encode()
    (directory / "key.txt").write_bytes(key)
    (directory / "checkpoint.txt").write_bytes(checkpoint)
    files = {
        "key.txt": {"sha256": hashlib.sha256(key).hexdigest(), "bytes": len(key)},
        "checkpoint.txt": {"sha256": hashlib.sha256(checkpoint).hexdigest()},
        "leaves.txt": {"sha256": digest.hexdigest()},
    }
    manifest = {"format": BUNDLE_FORMAT, "source": "benchmark", "tree_size": entries}
    manifest["files"] = files
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return signer.verifier


def baseline(directory: Path, parse: bool) -> tuple[float, bytes]:
    started = time.perf_counter()
    frontier = Frontier()
    sha256 = hashlib.sha256
    with open(directory / "leaves.txt", "rb") as f:
        for line in f:
            leaf = binascii.a2b_base64(line)
            if parse:
                json.loads(leaf)
            frontier.append(sha256(b"\x00" + leaf).digest())
    return time.perf_counter() - started, frontier.root()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--entries", type=int, default=TARGET_ENTRIES)
    p.add_argument("--bundle", help="keep the bundle here (reused if it holds --entries leaves)")
    p.add_argument("--runs", type=int, default=1, help="timed verify runs (best is reported)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    scratch = Path(args.bundle) if args.bundle else Path(tempfile.mkdtemp(prefix="tb-audit-"))
    try:
        manifest = scratch / "manifest.json"
        reuse = manifest.exists() and json.loads(manifest.read_text())["tree_size"] == args.entries
        build_seconds = None
        if reuse:
            log(f"reusing the bundle in {scratch}")
            key = Verifier.from_text((scratch / "key.txt").read_text())
        else:
            if scratch.exists():
                shutil.rmtree(scratch)
            log(f"building a bundle of {args.entries} entries in {scratch}")
            started = time.perf_counter()
            key = build_bundle(scratch, args.entries)
            build_seconds = round(time.perf_counter() - started, 2)
        size = sum(f.stat().st_size for f in scratch.iterdir())
        log("baseline: hash only")
        hash_only, root = baseline(scratch, parse=False)
        log("baseline: hash and parse")
        hash_and_parse, _ = baseline(scratch, parse=True)
        times, cpu_times = [], []
        report = None
        for run in range(args.runs):
            log(f"audit verify, run {run + 1}")
            started, cpu_started = time.perf_counter(), time.process_time()
            report = verify_bundle(scratch, Policy(key))
            times.append(time.perf_counter() - started)
            cpu_times.append(time.process_time() - cpu_started)
        assert report is not None
        best = min(times)
        per_million = best * 1_000_000 / args.entries
        result = {
            "benchmark": "audit_verify",
            "entries": args.entries,
            "bundle_bytes": size,
            "build_seconds": build_seconds,
            "baselines": {
                "hash_only_seconds": round(hash_only, 3),
                "hash_and_parse_seconds": round(hash_and_parse, 3),
            },
            "verify": {
                "seconds": round(best, 3),
                "all_runs_seconds": [round(t, 3) for t in times],
                "cpu_seconds": round(min(cpu_times), 3),
                "entries_per_second": round(args.entries / best),
                "ok": report.ok,
                "problems": len(report.problems),
                "root_matches_baseline": report.ok
                and report.checkpoint is not None
                and report.checkpoint.root == root,
            },
            "ratios": {
                "verify_over_hash_only": round(best / hash_only, 2),
                "verify_over_hash_and_parse": round(best / hash_and_parse, 2),
            },
            "targets": {
                "1e6_entries_under_30_s": {
                    "seconds_per_1e6": round(per_million, 2),
                    "met": per_million < TARGET_SECONDS,
                }
            },
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "load_average": list(os.getloadavg()),
            },
        }
        print(json.dumps(result, indent=2))
        return 0 if report.ok else 1
    finally:
        if not args.bundle:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
