"""Crash-kill tests: a crash at any moment loses nothing acknowledged.

A writer process (``tests/crash_writer.py``) appends from several threads and prints each
acknowledged ``id seq``; we SIGKILL it at a random moment — before it has even started, while it
creates the signing key or commits its first batch, right after its k-th acknowledgement, or
somewhere mid-stream — many times in a row on the same database. After every kill the log must
verify, every acknowledged id must be in the signed tree at its acknowledged seq, everything
committed before must still be there, and a client retrying its lost requests must get replays
(same seq) for what was committed and fresh appends for what was not.

The run is driven by a seeded ``random.Random``; the seed is printed (and shown by pytest when a
test fails). Re-run a failure with ``TIMEBANK_CRASH_SEED=<seed>``.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from ledger.config import Settings
from ledger.entry import Entry
from ledger.keys import load_or_create_signing_key
from ledger.log import Log
from ledger.storage import LedgerStore
from ledger.verify import format_report
from tests.crash_writer import request_for

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
ORIGIN = "timebank.test/crash"
# `make reliability` raises the count (TIMEBANK_CRASH_KILLS=500) and runs `timebank verify`
# after every kill (TIMEBANK_CRASH_VERIFY_EACH=1); `make test` keeps a short run.
KILLS = int(os.environ.get("TIMEBANK_CRASH_KILLS", "24"))
VERIFY_EACH = os.environ.get("TIMEBANK_CRASH_VERIFY_EACH") == "1"
THREADS = 4
WAIT_LIMIT = 120.0  # seconds; only a guard against a hung writer, never an assertion on speed
MODES = ("spawn", "open", "acks", "acks", "stream", "stream")


@dataclass
class Writer:
    run: int
    proc: subprocess.Popen[bytes]
    out: Path
    err: Path

    def lines(self) -> list[str]:
        """Complete lines written so far (a line cut by the kill is no acknowledgement)."""
        data = self.out.read_bytes()
        return data[: data.rfind(b"\n") + 1].decode().splitlines()

    def acks(self) -> list[tuple[str, int, bool]]:
        acks = []
        for line in self.lines():
            if line.startswith("#"):
                continue
            entry_id, seq, flag = line.split(" ")
            acks.append((entry_id, int(seq), flag == "R"))
        return acks

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")


def _env(data_dir: Path, db_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIMEBANK_")}
    env.update(
        TIMEBANK_DATA_DIR=str(data_dir),
        TIMEBANK_DATABASE_URL=db_url,
        TIMEBANK_LOG_ORIGIN=ORIGIN,
    )
    return env


def _start(run: int, env: dict[str, str], seed: int, logs: Path, ops: int | None = None) -> Writer:
    out, err = logs / f"writer{run}.out", logs / f"writer{run}.err"
    cmd = [sys.executable, "-m", "tests.crash_writer"]
    cmd += ["--run", str(run), "--threads", str(THREADS), "--seed", str(seed), "--resume"]
    if ops is not None:
        cmd += ["--ops", str(ops)]
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=stdout, stderr=stderr)
    return Writer(run, proc, out, err)


def _wait_until(writer: Writer, done: str, ready: Callable[[], bool]) -> None:
    """Poll until ``ready()`` holds; fail if the writer dies first (it never stops by itself)."""
    deadline = time.monotonic() + WAIT_LIMIT
    while not ready():
        if writer.proc.poll() is not None:
            pytest.fail(
                f"writer {writer.run} exited with {writer.proc.returncode} before {done}:\n"
                + writer.stderr()
            )
        if time.monotonic() > deadline:
            pytest.fail(f"writer {writer.run} did not reach {done}:\n{writer.stderr()}")
        time.sleep(0.001)


def _kill_at_random(writer: Writer, rng: random.Random, mode: str) -> str:
    """SIGKILL the writer at a moment chosen by ``mode``; returns a description of it."""
    if mode == "spawn":  # anywhere from interpreter start-up to the first batches
        delay = rng.uniform(0.0, 0.4)
        time.sleep(delay)
        moment = f"{delay:.3f}s after spawn"
    elif mode == "open":  # around signing-key creation/loading and the first batch
        _wait_until(writer, "# open", lambda: "# open" in writer.lines())
        delay = rng.uniform(0.0, 0.03)
        time.sleep(delay)
        moment = f"{delay:.3f}s after '# open'"
    elif mode == "acks":  # just after an acknowledgement: other batches are in flight
        k = rng.randint(1, 400)
        _wait_until(writer, f"{k} acks", lambda: len(writer.acks()) >= k)
        delay = rng.uniform(0.0, 0.003)
        time.sleep(delay)
        moment = f"{delay:.3f}s after ack {k}"
    else:  # mid-stream, by time
        _wait_until(writer, "# ready", lambda: "# ready" in writer.lines())
        delay = rng.uniform(0.01, 0.5)
        time.sleep(delay)
        moment = f"{delay:.3f}s after '# ready'"
    writer.proc.send_signal(signal.SIGKILL)
    writer.proc.wait()
    if writer.proc.returncode != -signal.SIGKILL:
        pytest.fail(
            f"writer {writer.run} exited with {writer.proc.returncode} before the kill "
            f"({mode}: {moment}):\n{writer.stderr()}"
        )
    return moment


def _check(
    settings: Settings, writer: Writer, before: dict[str, int], where: str
) -> dict[str, int]:
    """Everything the writer acknowledged (and everything committed before) is in the verified,
    signed log at its seq; replays answered exactly for what was committed. Returns id → seq."""
    acks = writer.acks()
    if not settings.signing_key_file.exists():
        # Killed before the key existed, so nothing can have been appended.
        store = LedgerStore(settings.database_url)
        try:
            with store.read() as db:
                head = db.head()
        finally:
            store.dispose()
        assert (head.size, head.checkpoint_size, acks) == (0, 0, []), where
        return {}

    log = Log.open(settings)  # the key exists: this only loads it
    try:
        report = log.verify()
        assert report.ok, f"{where}: log.verify() failed:\n" + "\n".join(format_report(report))
        size = log.size()
        committed: dict[str, int] = {}
        start = 0
        while start < size:
            page = log.leaves(start, size)
            for leaf in page:
                entry = Entry.from_leaf(leaf.data)
                assert entry.seq == leaf.index, where
                expected = request_for(entry.request.id).content()
                assert entry.request.content() == expected, f"{where}: seq {entry.seq}"
                committed[entry.request.id] = entry.seq
            start = page[-1].index + 1
    finally:
        log.close()
    assert len(committed) == size, f"{where}: an id appears twice"

    lost = {i: s for i, s in before.items() if committed.get(i) != s}
    assert not lost, f"{where}: entries committed before this run are gone or moved: {lost}"
    for entry_id, seq, replayed in acks:
        assert committed.get(entry_id) == seq, (
            f"{where}: acknowledged {entry_id} at seq {seq}, log has {committed.get(entry_id)}"
        )
        if replayed:
            assert before.get(entry_id) == seq, f"{where}: replay of uncommitted {entry_id}"
        else:
            assert entry_id not in before, f"{where}: {entry_id} appended twice"
    return committed


def _cli_verify(env: dict[str, str], size: int, where: str) -> None:
    """`timebank verify`, the operator's own check, passes and counts every committed entry."""
    cli = Path(sys.executable).with_name("timebank")
    cmd = [str(cli)] if cli.exists() else [sys.executable, "-m", "cli.main"]
    done = subprocess.run(
        [*cmd, "verify"], cwd=REPO, env=env, capture_output=True, text=True, timeout=WAIT_LIMIT
    )
    assert done.returncode == 0, f"{where}: timebank verify:\n{done.stdout}{done.stderr}"
    assert done.stdout.startswith(f"OK: {size} entries"), f"{where}: {done.stdout}"


def _seed() -> int:
    fixed = os.environ.get("TIMEBANK_CRASH_SEED")
    return int(fixed) if fixed else random.SystemRandom().randrange(2**32)


def test_a_kill_at_any_moment_loses_nothing_acknowledged(
    backend: str, db_url: str, tmp_path: Path
) -> None:
    seed = _seed()
    print(f"crash test: backend={backend} seed={seed} (rerun with TIMEBANK_CRASH_SEED={seed})")
    rng = random.Random(seed)
    logs = tmp_path / "writers"
    logs.mkdir()
    data_dir = tmp_path / "data0"
    committed: dict[str, int] = {}
    modes: Counter[str] = Counter()
    killed_with_acks = 0
    key_creations = 0
    started = time.monotonic()

    for run in range(KILLS):
        # While nothing is committed, a start may find no signing key yet (first start).
        if not committed and (run < 3 or rng.random() < 0.7):
            data_dir = tmp_path / f"data{run}"
        if not (data_dir / "signing.key").exists():
            key_creations += 1
        env = _env(data_dir, db_url)
        settings = Settings.from_env(env)
        mode = "open" if run < 3 else "acks" if run == 3 else rng.choice(MODES)
        writer = _start(run, env, seed, logs)
        moment = _kill_at_random(writer, rng, mode)
        modes[mode] += 1
        where = f"seed={seed} {backend} run {run} killed {moment}"
        acks = writer.acks()
        killed_with_acks += bool(acks)
        committed = _check(settings, writer, committed, where)
        if VERIFY_EACH and committed:
            _cli_verify(env, len(committed), where)
        print(f"  run {run:2d}: {mode:6s} {moment:28s} acks={len(acks):4d} size={len(committed)}")

    # A last writer retries what the last killed one lost, appends a little, and exits cleanly.
    run = KILLS
    env = _env(data_dir, db_url)
    writer = _start(run, env, seed, logs, ops=5)
    try:
        writer.proc.wait(WAIT_LIMIT)
    except subprocess.TimeoutExpired:
        writer.proc.kill()
        writer.proc.wait()
    assert writer.proc.returncode == 0, writer.stderr()
    committed = _check(Settings.from_env(env), writer, committed, f"seed={seed} final run")
    assert len(committed) >= 5 * THREADS

    _cli_verify(env, len(committed), f"seed={seed} final run")

    assert killed_with_acks > 0 and key_creations > 0
    print(
        f"crash test: {KILLS} kills ({dict(modes)}), {killed_with_acks} with acknowledgements, "
        f"{key_creations} starts without a key ({len(list(tmp_path.glob('data*/.*.tmp')))} "
        f"killed mid-write), {len(committed)} entries, "
        f"{time.monotonic() - started:.1f}s"
    )


def test_a_kill_during_key_creation_does_not_block_the_next_start(tmp_path: Path) -> None:
    """A start killed while writing the new key leaves a ``.signing.key.<pid>….tmp`` file behind.
    In a container the restarted process often gets the same pid again; it must still start
    (it used to fail with FileExistsError on every start until the file was removed by hand)."""
    key = tmp_path / "data" / "signing.key"
    key.parent.mkdir()
    stale = key.with_name(f".{key.name}.{os.getpid()}.tmp")
    stale.write_bytes(b"")  # as left by a kill between open(O_EXCL) and write
    signer = load_or_create_signing_key(key, ORIGIN)
    assert key.exists()
    assert load_or_create_signing_key(key, ORIGIN).verifier.to_text() == (signer.verifier.to_text())
