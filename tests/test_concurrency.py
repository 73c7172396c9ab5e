"""Concurrent writers on one database, on SQLite and PostgreSQL.

* many threads through one ``Log`` (its sequencer group-commits them);
* several OS processes, each with its own ``Log``, on the same database (the database lock is
  the only thing serializing them);
* many redemptions racing for one balance, from threads and from processes.

Afterwards the log must be exactly what was acknowledged: seqs 0..n-1 without gaps or
duplicates, every acknowledged id present once at the seq it was given, an intact hash chain,
a checkpoint of size n, and no balance ever below its floor.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from ledger.batch_writer import AppendResult
from ledger.config import Settings
from ledger.entry import Entry, EntryRequest
from ledger.errors import InsufficientBalance
from ledger.log import Log
from ledger.note import open_checkpoint
from ledger.postings import floor_of
from ledger.verify import format_report
from tests.helpers import REDEMPTION, deposit, member, redemption

ROOT = Path(__file__).resolve().parent.parent
ORIGIN = "timebank.test/log"

# ---------------------------------------------------------------------------- helpers


def all_entries(log: Log) -> list[Entry]:
    entries: list[Entry] = []
    size = log.size()
    while len(entries) < size:
        entries += [Entry.from_leaf(leaf.data) for leaf in log.leaves(len(entries), size)]
    return entries


def assert_log_is_exactly(log: Log, acknowledged: list[AppendResult]) -> list[Entry]:
    """The log holds the acknowledged entries and nothing else, chained, signed and sound."""
    n = len(acknowledged)
    assert sorted(r.seq for r in acknowledged) == list(range(n)), "seqs have gaps or duplicates"
    ids = Counter(r.id for r in acknowledged)
    assert not [i for i, count in ids.items() if count > 1], "an id was acknowledged twice"
    assert not [r for r in acknowledged if r.replayed]

    entries = all_entries(log)
    assert [e.seq for e in entries] == list(range(n))
    by_seq = {r.seq: r for r in acknowledged}
    for entry in entries:
        assert entry.request.id == by_seq[entry.seq].id
    assert Counter(e.request.id for e in entries) == ids

    checkpoint, _ = open_checkpoint(log.checkpoint(), log.signer.verifier, ORIGIN)
    assert checkpoint.size == n == log.size()
    report = log.verify()
    assert report.ok, "\n".join(format_report(report))
    assert report.entries == n
    assert report.root == checkpoint.root
    return entries


def assert_never_below_floor(entries: list[Entry]) -> None:
    """Replay the postings in seq order: no floored account is ever below its floor."""
    balances: Counter[str] = Counter()
    for entry in entries:
        for p in entry.request.postings:
            balances[p.account] += p.minutes
            floor = floor_of(p.account, 0)
            assert floor is None or balances[p.account] >= floor, (
                f"seq {entry.seq} takes {p.account} to {balances[p.account]}"
            )


def run_threads(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` on ``count`` threads released together; return results (or exceptions)."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def body(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as exc:  # collected and inspected by the caller
            results[i] = exc

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


# ---------------------------------------------------------------------------- worker processes

WORKER = """
import json, sys
from tests.test_concurrency import worker_main
worker_main(json.loads(sys.argv[1]))
"""


def _request(spec: list[Any]) -> EntryRequest:
    kind, entry_id, account, minutes = spec
    builder = deposit if kind == "deposit" else redemption
    return builder(entry_id, account, minutes)


def worker_main(job: dict[str, Any]) -> None:
    """In a child process: open a Log, say ready, wait for go, append with threads, report."""
    log = Log.open(Settings.from_env(job["env"]))
    try:
        requests = [_request(spec) for spec in job["requests"]]
        log.size()  # connect before saying ready, so the race starts at "go"
        print("ready", flush=True)
        if sys.stdin.readline().strip() != "go":
            return
        acknowledged: list[list[Any]] = []
        refused: list[str] = []
        errors: list[str] = []

        def one(request: EntryRequest) -> None:
            try:
                result = log.append(request)
            except InsufficientBalance:
                refused.append(request.id)
            except Exception as exc:
                errors.append(f"{request.id}: {type(exc).__name__}: {exc}")
            else:
                acknowledged.append(
                    [result.seq, result.id, result.leaf_hash.hex(), result.time, result.replayed]
                )

        with ThreadPoolExecutor(max_workers=job["threads"]) as pool:
            list(pool.map(one, requests))
        print(json.dumps({"acknowledged": acknowledged, "refused": refused, "errors": errors}))
    finally:
        log.close()


def run_processes(settings: Settings, jobs: list[list[list[Any]]], threads: int) -> list[Any]:
    """One child process per job, all released together once every one has opened its Log.

    The parent's ``log`` fixture has already created the signing key that every child loads.
    """
    env = {
        "TIMEBANK_DATA_DIR": str(settings.data_dir),
        "TIMEBANK_DATABASE_URL": settings.database_url,
        "TIMEBANK_LOG_ORIGIN": settings.log_origin,
    }
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                json.dumps({"env": env, "requests": requests, "threads": threads}),
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for requests in jobs
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if line.strip() != "ready":
                _, err = proc.communicate(timeout=60)
                pytest.fail(f"worker did not start: {line!r}\n{err}")
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        reports = []
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            reports.append(json.loads(out))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for report in reports:
        assert report["errors"] == [], report["errors"]
    return reports


def results_of(reports: list[Any]) -> list[AppendResult]:
    return [
        AppendResult(seq, entry_id, bytes.fromhex(lh), time, 0, replayed)
        for report in reports
        for seq, entry_id, lh, time, replayed in report["acknowledged"]
    ]


# ---------------------------------------------------------------------------- appends

THREADS = 64
PER_THREAD = 8


def test_threads_appending_through_one_log(log: Log) -> None:
    def work(t: int) -> list[AppendResult]:
        return [log.append(deposit(f"t{t}-{k}", member(t % 8), 10 + k)) for k in range(PER_THREAD)]

    outcomes = run_threads(THREADS, work)
    errors = [o for o in outcomes if isinstance(o, Exception)]
    assert not errors, errors
    acknowledged = [r for results in outcomes for r in results]
    assert len(acknowledged) == THREADS * PER_THREAD
    assert {r.id for r in acknowledged} == {
        f"t{t}-{k}" for t in range(THREADS) for k in range(PER_THREAD)
    }
    for r in acknowledged:
        assert r.tree_size > r.seq
    assert_log_is_exactly(log, acknowledged)
    per_member = sum(10 + k for k in range(PER_THREAD)) * THREADS // 8
    assert [log.balance(member(i)) for i in range(8)] == [per_member] * 8


PROCESSES = 4
PER_PROCESS = 100


@pytest.mark.slow
def test_processes_each_with_their_own_log_append_to_one_database(
    log: Log, settings: Settings
) -> None:
    jobs = [
        [["deposit", f"p{p}-{k}", member(k % 5), 1 + k] for k in range(PER_PROCESS)]
        for p in range(PROCESSES)
    ]
    reports = run_processes(settings, jobs, threads=16)
    acknowledged = results_of(reports)
    assert all(report["refused"] == [] for report in reports)
    assert len(acknowledged) == PROCESSES * PER_PROCESS
    assert {r.id for r in acknowledged} == {spec[1] for job in jobs for spec in job}
    entries = assert_log_is_exactly(log, acknowledged)
    # Each process saw the chain of the others: times never decrease across the whole log.
    times = [e.time for e in entries]
    assert times == sorted(times)
    total = sum(1 + k for k in range(PER_PROCESS)) * PROCESSES
    assert sum(log.balance(member(i)) for i in range(5)) == total


# ---------------------------------------------------------------------------- one balance, many spenders

BALANCE = 1000
SPEND = 50
RACERS = 60
WINNERS = BALANCE // SPEND


def _check_race(log: Log, acknowledged: list[AppendResult], refused: int) -> None:
    spender = member(1)
    assert len(acknowledged) == 1 + WINNERS  # the deposit and exactly 20 redemptions
    assert refused == RACERS - WINNERS
    assert log.balance(spender) == 0
    assert log.balance(REDEMPTION) == BALANCE
    entries = assert_log_is_exactly(log, acknowledged)
    assert_never_below_floor(entries)
    assert not [p for p in log.verify().problems if "floor" in p.message]


@pytest.mark.parametrize("logs", [1, 3], ids=["one-log", "three-logs"])
def test_redemptions_racing_from_threads_for_one_balance(
    log: Log, settings: Settings, logs: int
) -> None:
    first = log.append(deposit("d0", member(1), BALANCE))
    # With three Logs in one process there are three sequencers and three connection pools:
    # the database lock alone keeps them from spending the same minutes twice.
    extra = [Log.open(settings) for _ in range(logs - 1)]
    try:
        writers = [log, *extra]

        def work(i: int) -> AppendResult:
            return writers[i % logs].append(redemption(f"r{i}", member(1), SPEND))

        outcomes = run_threads(RACERS, work)
    finally:
        for other in extra:
            other.close()
    unexpected = [o for o in outcomes if isinstance(o, Exception)]
    refused = [o for o in unexpected if isinstance(o, InsufficientBalance)]
    assert len(refused) == len(unexpected), unexpected
    for exc in refused:
        assert exc.account == member(1) and exc.change == -SPEND and exc.balance < SPEND
    won = [o for o in outcomes if isinstance(o, AppendResult)]
    _check_race(log, [first, *won], len(refused))


@pytest.mark.slow
def test_redemptions_racing_from_processes_for_one_balance(log: Log, settings: Settings) -> None:
    first = log.append(deposit("d0", member(1), BALANCE))
    jobs = [
        [["redemption", f"r{i}", member(1), SPEND] for i in range(p, RACERS, 3)] for p in range(3)
    ]
    reports = run_processes(settings, jobs, threads=20)
    refused = sum(len(report["refused"]) for report in reports)
    _check_race(log, [first, *results_of(reports)], refused)
