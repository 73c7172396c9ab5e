"""A writer process for the crash tests: appends from several threads until it is killed.

Run as ``python -m tests.crash_writer --run K --threads T --seed S [--resume] [--ops N]`` from
the repository root, with ``TIMEBANK_DATA_DIR``, ``TIMEBANK_DATABASE_URL`` and
``TIMEBANK_LOG_ORIGIN`` in the environment. It opens ``Log.open(Settings.from_env())`` (which
creates the signing key on a first start) and appends from ``T`` threads at once.

Every entry id encodes what the entry is, so anyone can rebuild the exact request from the id
alone (``request_for``)::

    r<run>.t<thread>.<i>.<kind>.<minutes>

Each thread owns two member accounts (``…:r<run>t<thread>a`` and ``…b``) that no other thread
touches, so its sequence of requests is a pure function of ``(seed, run, thread)``
(``thread_ops``) and is always valid when applied in order.

After an append returns, the writer prints ``<id> <seq> <N|R>`` (R: the log answered with an
earlier append of the same id) and flushes: that line is the acknowledgement. Lines starting
with ``#`` are progress markers: ``# open`` before the log is opened (the key may be created
next), ``# ready`` after.

With ``--resume`` each thread first retries run ``K-1``'s requests of the same thread in order,
as a client that lost its answers would: the prefix that run committed must come back as
replays with the same seq, and retrying stops at the first request that is appended afresh.
With ``--ops N`` each thread stops after N requests of its own and the process exits 0;
otherwise it runs until killed.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import threading
import traceback
from collections.abc import Iterator

from ledger.batch_writer import AppendResult
from ledger.config import Settings
from ledger.entry import EntryRequest
from ledger.log import Log
from tests.helpers import BANK, deposit, donation, gift, redemption

_out = threading.Lock()


def accounts(run: int, thread: int) -> tuple[str, str]:
    return f"{BANK}:member:r{run}t{thread}a", f"{BANK}:member:r{run}t{thread}b"


def request_for(entry_id: str) -> EntryRequest:
    """The request an id stands for (see the module docstring)."""
    run_part, thread_part, _, kind, minutes_text = entry_id.split(".")
    run, thread, minutes = int(run_part[1:]), int(thread_part[1:]), int(minutes_text)
    a, b = accounts(run, thread)
    if kind == "deposit":
        return deposit(entry_id, a, minutes)
    if kind == "gift":
        return gift(entry_id, a, b, minutes)
    if kind == "donation":
        return donation(entry_id, a, minutes)
    if kind == "redemption":
        return redemption(entry_id, b, minutes)
    raise ValueError(f"not a crash-writer id: {entry_id!r}")


def thread_ops(seed: int, run: int, thread: int) -> Iterator[str]:
    """The ids thread ``thread`` of run ``run`` appends, in order; each valid after the ones
    before it (balances of its own two accounts never go below zero)."""
    rng = random.Random(f"{seed}/{run}/{thread}")
    a = b = 0
    i = 0
    while True:
        roll = rng.random()
        if a < 10 or roll < 0.35:
            kind, minutes = "deposit", rng.randint(10, 180)
            a += minutes
        elif roll < 0.6:
            kind, minutes = "gift", rng.randint(1, a)
            a -= minutes
            b += minutes
        elif roll < 0.85 and b > 0:
            kind, minutes = "redemption", rng.randint(1, b)
            b -= minutes
        else:
            kind, minutes = "donation", rng.randint(1, min(a, 30))
            a -= minutes
        yield f"r{run}.t{thread}.{i}.{kind}.{minutes}"
        i += 1


def say(line: str) -> None:
    with _out:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def ack(result: AppendResult) -> None:
    say(f"{result.id} {result.seq} {'R' if result.replayed else 'N'}")


def work(log: Log, args: argparse.Namespace, thread: int) -> None:
    try:
        if args.resume and args.run > 0:
            for entry_id in thread_ops(args.seed, args.run - 1, thread):
                result = log.append(request_for(entry_id))
                ack(result)
                if not result.replayed:
                    break
        for n, entry_id in enumerate(thread_ops(args.seed, args.run, thread)):
            if args.ops is not None and n >= args.ops:
                break
            ack(log.append(request_for(entry_id)))
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(3)  # the test sees a writer that died on its own


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", type=int, required=True)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--ops", type=int, default=None)
    args = parser.parse_args(argv)

    say("# open")
    log = Log.open(Settings.from_env())
    say("# ready")
    threads = [
        threading.Thread(target=work, args=(log, args, t), name=f"crash-writer-{t}")
        for t in range(args.threads)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
