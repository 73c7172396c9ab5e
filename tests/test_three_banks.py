"""Three district banks, each a peer of the other two, transfers around the triangle both ways
at once (docs/federation.md#many-at-once).

Three real ``timebank serve`` processes on loopback (鼓楼 gulou, 秦淮 qinhuai, 建邺 jianye; each its
own SQLite database and keys). Every bank sends to both others in the same run, from a pool of
client threads over real HTTP: ten transfers in each of the six directions, one of them to a
member id the receiving bank does not know (``unknown-member``) and one to another person there
(``not-related``), both voided. Afterwards: every transfer closed (settled or void), not one
minute created or lost over the three logs, each pair's ``transfer_out``\\s answered exactly once
in the other log and closed accordingly in its own, ``due_to:X`` in one log mirroring
``due_from:Y`` in the other for each pair, ``timebank audit clearing`` exiting 0 for each of the
three pairs from the public logs while the banks serve, and ``timebank verify`` passing on all
three.
"""

from __future__ import annotations

import itertools
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

BANKS = ("gulou", "qinhuai", "jianye")  # 鼓楼, 秦淮, 建邺
MEMBERS = 6  # a bank; member k of each bank is the same person (the same phone)
SEEDED = 1000  # minutes a member: more than any member can send here
ROUNDS = 10  # transfers in each of the six directions
UNKNOWN, OTHER_PERSON = 3, 7  # the rounds whose transfer the receiving bank must refuse
THREADS = 8  # clients at once
SEED = int(os.environ.get("TIMEBANK_TRANSFER_SEED", str(random.SystemRandom().randrange(10**6))))
FINISH_LIMIT = 120.0  # seconds for the workers to close what is still held: a guard only

pytestmark = pytest.mark.slow

Job = tuple[Server, Member, Server, str, int, str]


def _transfer(job: Job) -> tuple[str, str | None]:
    """One transfer as a client sends it: retried with the same key while the bank answers 503
    (held) or 409 (the same key still running), a few times, then left to the retry worker.
    Returns its status and the reason of a void."""
    src, member, dst, to, minutes, key = job
    for _ in range(4):
        status, answer = send(src, member, dst.name, to, minutes, key)
        if status == 201:
            return str(answer["status"]), answer.get("reason")
        assert status in (409, 503), (status, answer)
        time.sleep(0.3)
    return "held", None


def _log_key(server: Server) -> str:
    with urllib.request.urlopen(server.url + "/v1/log/key", timeout=10) as response:
        return str(response.read().decode().strip())


def _audit_clearing(pairs: list[tuple[Server, Server]]) -> None:
    """``timebank audit clearing`` for each pair, from the public logs (side by side)."""
    keys = {bank.name: _log_key(bank) for pair in pairs for bank in pair}
    runs = [
        (
            (a.name, b.name),
            subprocess.Popen(
                [
                    TIMEBANK,
                    "audit",
                    "clearing",
                    "--url",
                    a.url,
                    "--key",
                    keys[a.name],
                    "--peer-url",
                    b.url,
                    "--peer-key",
                    keys[b.name],
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ),
        )
        for a, b in pairs
    ]
    for pair, run in runs:
        out, _ = run.communicate(timeout=300)
        print(f"audit clearing {pair[0]} / {pair[1]}: {out.strip()}")
        assert run.returncode == 0, (pair, out)
        assert out.startswith("OK: clearing between"), (pair, out)
        # every transfer between the two, both ways, was checked (ROUNDS each way)
        assert f": {2 * ROUNDS} transfers checked" in out, (pair, out)


def test_three_banks_transfer_around_the_triangle_both_ways(
    tmp_path: Path, sqlite_template: Path
) -> None:
    print(f"TIMEBANK_TRANSFER_SEED={SEED}")
    rng = random.Random(SEED)
    banks = [make_server(name, tmp_path, sqlite_template) for name in BANKS]
    by_name = {bank.name: bank for bank in banks}
    pairs = list(itertools.combinations(banks, 2))  # gulou/qinhuai, gulou/jianye, qinhuai/jianye
    directions = list(itertools.permutations(banks, 2))  # the six ways
    try:
        for bank in banks:
            prepare(bank, members=MEMBERS, minutes=SEEDED)
        for a, b in pairs:
            befriend(a, b)
        start_all(*((bank, None) for bank in banks))
        jobs: list[Job] = []
        expected: dict[str, str] = {}  # key → "settled", or the reason of its void
        for round_, (src, dst) in itertools.product(range(ROUNDS), directions):
            key = f"{src.name}-{dst.name}-{round_}"
            k = rng.randrange(MEMBERS)
            if round_ == UNKNOWN:
                to, expected[key] = f"nobody-{key}", "unknown-member"
            elif round_ == OTHER_PERSON:
                other = (k + 1 + rng.randrange(MEMBERS - 1)) % MEMBERS
                to, expected[key] = dst.members[other].id, "not-related"
            else:  # member k of the other bank: the same person, whom it credits
                to, expected[key] = dst.members[k].id, "settled"
            jobs.append((src, src.members[k], dst, to, rng.randint(1, 5), key))
        rng.shuffle(jobs)  # the six ways interleaved, all at once
        started = time.monotonic()
        with ThreadPoolExecutor(THREADS) as pool:
            answers = list(pool.map(_transfer, jobs))
        took = time.monotonic() - started
        for job, (status, reason) in zip(jobs, answers, strict=True):
            if status == "settled":
                assert expected[job[5]] == "settled", (job[5], status)
            elif status == "void":
                assert expected[job[5]] == reason, (job[5], status, reason)
        wait_until(
            lambda: all(bank.open_transfers() == 0 for bank in banks),
            FINISH_LIMIT,
            "the retry workers to close every transfer",
            *banks,
        )
        finished = time.monotonic() - started
        _audit_clearing(pairs)  # the auditor's check, while the three banks serve
    finally:
        for bank in banks:
            bank.stop()
    print(
        f"{len(jobs)} transfers among {len(banks)} banks with {THREADS} clients: answered in "
        f"{took:.1f} s ({len(jobs) / took:.1f}/s) {dict(Counter(s for s, _ in answers))}, "
        f"all closed after {finished:.1f} s"
    )
    ledgers = {b.name: read_ledger(b, *(o.name for o in banks if o is not b)) for b in banks}
    refused = sum(1 for outcome in expected.values() if outcome != "settled")
    for src, dst in directions:
        sender, receiver = ledgers[src.name], ledgers[dst.name]
        counts = check_clearing(sender, receiver)  # one to one, closed accordingly
        print(f"{src.name} → {dst.name} {counts}")
        assert counts == {"settled": ROUNDS - 2, "void": 2}, (src.name, dst.name, counts)
        # what src owes dst in src's log mirrors what dst is owed by src in dst's log
        due_to = sender.balances[f"{src.name}:due_to:{dst.name}"]
        due_from = receiver.balances[f"{dst.name}:due_from:{src.name}"]
        assert due_to == -due_from > 0, (src.name, dst.name, due_to, due_from)
    assert refused == 2 * len(directions)
    # not one minute created or lost over the three logs
    assert total_minutes(*ledgers.values()) == sum(bank.seeded for bank in banks)
    # each member: what they had, less what they sent, plus what they received
    moved = Counter[str]()
    for _src, member, dst, to, minutes, key in jobs:
        if expected[key] == "settled":
            moved[member.account] -= minutes
            moved[next(m.account for m in dst.members if m.id == to)] += minutes
    for name, ledger in ledgers.items():
        for m in by_name[name].members:
            assert ledger.balances[m.account] == SEEDED + moved[m.account], m.account
    verified(*banks)
