"""Many concurrent transfers between two banks, both ways (docs/federation.md#many-at-once).

Two real ``timebank serve`` processes on loopback (each its own SQLite database and keys),
members of each sending to members of the other from a pool of client threads over real HTTP,
every twentieth to a member id the other bank does not know (refused, voided). Afterwards (the
retry workers finish whatever a busy moment left held): not one minute created or lost (every
member's minutes plus those in flight, over both logs, as seeded), every ``transfer_out``
answered exactly once in the other log and closed accordingly in its own, ``due_to`` mirroring
``due_from``, and both logs pass ``timebank verify``.

``make test`` runs 100 transfers; ``make reliability-transfers`` runs 1,000
(``TIMEBANK_PEER_TRANSFERS``).
"""

from __future__ import annotations

import os
import random
import subprocess
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.transfer_servers import (
    TIMEBANK,
    Member,
    Server,
    befriend,
    check_clearing,
    make_server,
    prepare,
    read_ledger,
    send,
    start_all,
    total_minutes,
    verified,
    wait_until,
)

COUNT = int(os.environ.get("TIMEBANK_PEER_TRANSFERS", "100"))
MEMBERS = 12  # a bank
SEEDED = 1000  # minutes a member: more than any member can send here (COUNT * 5 / MEMBERS)
THREADS = 16  # clients at once
SEED = int(os.environ.get("TIMEBANK_TRANSFER_SEED", str(random.SystemRandom().randrange(10**6))))
FINISH_LIMIT = 300.0  # seconds for the workers to close what is still held: a guard only

pytestmark = pytest.mark.slow

Job = tuple[Server, Member, str, str, int, str]


def _transfer(job: Job) -> str:
    """One member's transfer as a client would do it: retried with the same key while the
    bank answers 503 (held) or 409 (the same key still running), a few times, then left to
    the retry worker."""
    server, member, peer, to, minutes, key = job
    for _ in range(4):
        status, answer = send(server, member, peer, to, minutes, key)
        if status == 201:
            return str(answer["status"])
        assert status in (409, 503), (status, answer)
        time.sleep(0.3)
    return "held"


def _log_key(server: Server) -> str:
    with urllib.request.urlopen(server.url + "/v1/log/key", timeout=10) as response:
        return str(response.read().decode().strip())


def test_concurrent_transfers_both_ways_create_and_lose_no_minute(
    tmp_path: Path, sqlite_template: Path
) -> None:
    print(f"TIMEBANK_TRANSFER_SEED={SEED}, {COUNT} transfers")
    rng = random.Random(SEED)
    h = make_server("gulou", tmp_path, sqlite_template)
    r = make_server("qinhuai", tmp_path, sqlite_template)
    try:
        for bank in (h, r):
            prepare(bank, members=MEMBERS, minutes=SEEDED)
        befriend(h, r)
        start_all((h, None), (r, None))
        jobs: list[Job] = []
        refused: set[str] = set()  # the keys the receiving bank must refuse (then voided)
        for i in range(COUNT):
            src, dst = (h, r) if rng.random() < 0.5 else (r, h)
            # member k of one bank is member k of the other (same phone): the same person,
            # whom the receiving bank credits; every 20th goes to no one, every 20th to
            # another person (not-related)
            k = rng.randrange(MEMBERS)
            if i % 20 == 7:
                to = f"nobody-{i}"
            elif i % 20 == 13:
                to = dst.members[(k + 1 + rng.randrange(MEMBERS - 1)) % MEMBERS].id
            else:
                to = dst.members[k].id
            if i % 20 in (7, 13):
                refused.add(f"k{i}")
            jobs.append((src, src.members[k], dst.name, to, rng.randint(1, 5), f"k{i}"))
        started = time.monotonic()
        with ThreadPoolExecutor(THREADS) as pool:
            answered = Counter(pool.map(_transfer, jobs))
        took = time.monotonic() - started
        wait_until(
            lambda: h.open_transfers() == 0 and r.open_transfers() == 0,
            FINISH_LIMIT,
            "the retry workers to close every transfer",
            h,
            r,
        )
        finished = time.monotonic() - started
        # the auditor's check, from the two public logs alone (docs/federation.md)
        cleared = subprocess.run(
            [
                TIMEBANK,
                "audit",
                "clearing",
                "--url",
                h.url,
                "--key",
                _log_key(h),
                "--peer-url",
                r.url,
                "--peer-key",
                _log_key(r),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert cleared.returncode == 0, cleared.stdout + cleared.stderr
        assert cleared.stdout.startswith("OK: clearing between"), cleared.stdout
    finally:
        h.stop()
        r.stop()
    print(
        f"{COUNT} transfers with {THREADS} clients: answered in {took:.1f} s "
        f"({COUNT / took:.1f}/s) {dict(answered)}, all closed after {finished:.1f} s"
    )
    hl, rl = read_ledger(h, "qinhuai"), read_ledger(r, "gulou")
    forth, back = check_clearing(hl, rl), check_clearing(rl, hl)
    print(f"gulou → qinhuai {forth}, qinhuai → gulou {back}")
    assert set(forth) | set(back) <= {"settled", "void"}  # nothing left half-way
    assert sum(forth.values()) + sum(back.values()) == COUNT
    assert forth.get("void", 0) + back.get("void", 0) == len(refused)
    assert total_minutes(hl, rl) == h.seeded + r.seeded  # not one minute created or lost
    # each bank's members: what they had, less what they sent, plus what they received
    moved = Counter[str]()
    for _src, member, _, to, minutes, key in jobs:
        if key not in refused:
            moved[member.account] -= minutes
            moved[next(m.account for m in (*h.members, *r.members) if m.id == to)] += minutes
    for ledger in (hl, rl):
        for m in ledger.server.members:
            assert ledger.balances[m.account] == SEEDED + moved[m.account], m.account
    verified(h, r)
