"""Failover to a synchronous standby loses no acknowledged append (docs/operations.md).

Each test starts its own PostgreSQL primary on a loopback port from Debian's server programs
(``initdb``, ``pg_ctl``), clones a streaming standby with ``deploy/pg-standby.sh`` (the script
operators run), migrates the primary and runs ``tests/crash_writer.py`` against it: four threads
appending through ``Log.append``, printing each acknowledged ``id seq``. The primary is then
frozen and SIGKILLed (every process of it at once, as a power cut), the standby promoted with
the script, and the promoted database checked against the acknowledgements and with
``timebank verify``.

The negative control runs the same with asynchronous replication and the standby shut down
mid-load: the appends acknowledged after that are missing on the promoted standby, the check
names them, and ``timebank verify`` still passes (a shorter log is a consistent log; only the
acknowledgements, or a checkpoint published before, can show the loss).

Without the PostgreSQL server programs these tests fail under ``CI=true`` and skip elsewhere.
When run as root (CI), the servers run as the ``postgres`` user (``initdb`` refuses root).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ledger.config import Settings
from ledger.entry import Entry
from ledger.log import Log
from ledger.verify import format_report
from tests.crash_writer import request_for

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "deploy" / "pg-standby.sh"
ORIGIN = "timebank.test/standby"
STANDBY = "standby1"
WAIT_LIMIT = 60.0  # seconds; a guard against a hung process, never an assertion on speed
ACKS_BEFORE_KILL = 300


def _bindir() -> Path:
    """The PostgreSQL server programs, or fail (CI) / skip with the reason."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: p.parent)
    reason = None
    if not found:
        reason = "no PostgreSQL server programs under /usr/lib/postgresql/*/bin"
    elif os.geteuid() == 0 and (shutil.which("runuser") is None or not _has_user("postgres")):
        reason = "running as root needs runuser and a postgres user to start PostgreSQL"
    if reason is None:
        return found[-1].parent
    if os.environ.get("CI"):
        pytest.fail(reason + "; CI requires them (install postgresql)", pytrace=False)
    pytest.skip(reason)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    """The servers of one test: the programs, a private directory and the two ports."""

    bindir: Path
    root: Path
    primary_port: int
    standby_port: int

    @property
    def primary(self) -> Path:
        return self.root / "primary"

    @property
    def standby(self) -> Path:
        return self.root / "standby"

    def as_postgres(self, *cmd: str | Path) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL program as the servers' owner; fail with its output if it fails."""
        argv = [str(c) for c in cmd]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        env = {**os.environ, "PG_BINDIR": str(self.bindir)}
        done = subprocess.run(
            argv, cwd=self.root, env=env, capture_output=True, text=True, timeout=WAIT_LIMIT
        )
        assert done.returncode == 0, f"{' '.join(argv)}:\n{done.stdout}{done.stderr}"
        return done

    def script(self, *args: str | int) -> str:
        return self.as_postgres(SCRIPT, *(str(a) for a in args)).stdout

    def url(self, port: int) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{port}/timebank"

    def start_primary(self, synchronous: bool) -> None:
        # --no-sync: only initdb's own files; the server below runs with fsync on.
        self.as_postgres(
            self.bindir / "initdb", "-D", self.primary, "--auth=trust", "-U", "postgres",
            "-E", "UTF8", "--no-instructions", "--no-sync",
        )  # fmt: skip
        with (self.primary / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {self.primary_port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.root}'\nfsync = on\n"
            )
        self.pg_ctl(self.primary, "start", "-l", self.root / "primary.log")
        # Before the primary waits for a standby: with one, each commit would wait for it.
        self.as_postgres(
            self.bindir / "createdb", "-h", "127.0.0.1", "-p", self.primary_port, "-U", "postgres",
            "timebank",
        )  # fmt: skip
        if synchronous:
            shown = self.script("primary", "--port", self.primary_port, "--standby", STANDBY)
            assert f'synchronous_standby_names=FIRST 1 ("{STANDBY}")' in shown
        else:
            shown = self.script("primary", "--port", self.primary_port, "--async")
            assert "synchronous_commit=local synchronous_standby_names=" in shown

    def start_standby(self, expect: str) -> None:
        self.script(
            "standby", "--primary-host", "127.0.0.1", "--primary-port", self.primary_port,
            "--name", STANDBY, "--data", self.standby, "--port", self.standby_port,
        )  # fmt: skip
        deadline = time.monotonic() + WAIT_LIMIT
        while (state := self.script("status", "--port", self.primary_port).strip()) != (
            f"{STANDBY} streaming {expect}"
        ):
            assert time.monotonic() < deadline, f"standby never became {expect}: {state!r}"
            time.sleep(0.1)

    def pg_ctl(self, data: Path, *args: str | Path) -> None:
        self.as_postgres(self.bindir / "pg_ctl", "-D", data, "-w", "-t", "60", *args)

    def power_cut_primary(self) -> None:
        """Freeze, then SIGKILL, the postmaster and every child of it: nothing runs between."""
        postmaster = int((self.primary / "postmaster.pid").read_text().split()[0])
        pids = [postmaster, *_children(postmaster)]
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)

    def stop_all(self) -> None:
        for data in (self.standby, self.primary):
            if (data / "postmaster.pid").exists():
                subprocess.run(
                    [*(["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []),
                     str(self.bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                    cwd=self.root, capture_output=True, timeout=WAIT_LIMIT, check=False,
                )  # fmt: skip


def _children(parent: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        if int(fields[1]) == parent:
            found.append(int(stat.parent.name))
    return found


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    bindir = _bindir()
    # Not under pytest's tmp_path: the postgres user must be able to reach the directory.
    root = Path(tempfile.mkdtemp(prefix="timebank-standby-", dir="/tmp"))
    if os.geteuid() == 0:
        os.chown(root, pwd.getpwnam("postgres").pw_uid, pwd.getpwnam("postgres").pw_gid)
    made = Cluster(bindir, root, _free_port(), _free_port())
    try:
        yield made
    finally:
        made.stop_all()
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Writer:
    proc: subprocess.Popen[bytes]
    out: Path
    err: Path

    def acks(self) -> list[tuple[str, int]]:
        """Acknowledged (id, seq) so far; a line cut by the kill is no acknowledgement."""
        data = self.out.read_bytes()
        lines = data[: data.rfind(b"\n") + 1].decode().splitlines()
        return [
            (p[0], int(p[1])) for line in lines if not line.startswith("#") for p in [line.split()]
        ]

    def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + WAIT_LIMIT
        while len(self.acks()) < count:
            if self.proc.poll() is not None:
                pytest.fail(f"writer exited ({self.proc.returncode}):\n{self.err.read_text()}")
            assert time.monotonic() < deadline, f"writer stuck at {len(self.acks())} acks"
            time.sleep(0.01)

    def finish(self) -> None:
        """The writer fails once its database is gone; a writer still waiting is killed."""
        try:
            self.proc.wait(WAIT_LIMIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _env(tmp_path: Path, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIMEBANK_")}
    env.update(
        TIMEBANK_DATA_DIR=str(tmp_path / "data"),
        TIMEBANK_DATABASE_URL=url,
        TIMEBANK_LOG_ORIGIN=ORIGIN,
    )
    return env


def _timebank(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=WAIT_LIMIT,
    )  # fmt: skip


def _start_writer(env: dict[str, str], tmp_path: Path) -> Writer:
    out, err = tmp_path / "writer.out", tmp_path / "writer.err"
    cmd = [sys.executable, "-m", "tests.crash_writer", "--run", "0", "--threads", "4"]
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [*cmd, "--seed", "15"], cwd=REPO, env=env, stdout=stdout, stderr=stderr
        )
    return Writer(proc, out, err)


def missing_acknowledged(settings: Settings, acks: list[tuple[str, int]]) -> list[str]:
    """The acknowledged appends the database does not hold as acknowledged, one line each
    (empty: nothing lost). Also checks that what it holds is what was asked for."""
    log = Log.open(settings)
    try:
        size = log.size()
        held: dict[str, int] = {}
        start = 0
        while start < size:
            page = log.leaves(start, size)
            for leaf in page:
                entry = Entry.from_leaf(leaf.data)
                assert entry.request.content() == request_for(entry.request.id).content()
                held[entry.request.id] = entry.seq
            start = page[-1].index + 1
    finally:
        log.close()
    return [
        f"{entry_id} acknowledged at seq {seq}, held at {held.get(entry_id)}"
        for entry_id, seq in acks
        if held.get(entry_id) != seq
    ]


def _failover_run(
    cluster: Cluster, tmp_path: Path, synchronous: bool
) -> tuple[list[tuple[str, int]], int, dict[str, str]]:
    """Load, cut the primary's power, promote; returns the acks, how many came before the
    standby was shut down (async run) and the promoted standby's environment."""
    cluster.start_primary(synchronous)
    cluster.start_standby("sync" if synchronous else "async")
    env = _env(tmp_path, cluster.url(cluster.primary_port))
    migrated = _timebank(env, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    writer = _start_writer(env, tmp_path)
    writer.wait_for(ACKS_BEFORE_KILL)
    before_standby_stop = 0
    if not synchronous:
        cluster.pg_ctl(cluster.standby, "-m", "fast", "stop")
        before_standby_stop = len(writer.acks())
        writer.wait_for(before_standby_stop + 100)
    cluster.power_cut_primary()
    writer.finish()
    acks = writer.acks()
    if not synchronous:
        cluster.pg_ctl(cluster.standby, "start", "-l", cluster.root / "standby-again.log")
    cluster.script("promote", "--data", cluster.standby)
    return acks, before_standby_stop, _env(tmp_path, cluster.url(cluster.standby_port))


def _verify(env: dict[str, str]) -> str:
    done = _timebank(env, "verify")
    assert done.returncode == 0, f"timebank verify:\n{done.stdout}{done.stderr}"
    return done.stdout


def test_a_synchronous_standby_holds_every_acknowledged_append(
    cluster: Cluster, tmp_path: Path
) -> None:
    acks, _, promoted = _failover_run(cluster, tmp_path, synchronous=True)
    settings = Settings.from_env(promoted)
    assert len(acks) >= ACKS_BEFORE_KILL
    assert missing_acknowledged(settings, acks) == []
    log = Log.open(settings)
    try:
        report = log.verify()
        size = log.size()
    finally:
        log.close()
    assert report.ok, "\n".join(format_report(report))
    assert _verify(promoted).startswith(f"OK: {size} entries")
    print(f"standby failover: {len(acks)} acknowledged, {size} entries on the promoted standby")


def test_an_asynchronous_standby_loses_acknowledged_appends_and_the_check_names_them(
    cluster: Cluster, tmp_path: Path
) -> None:
    acks, before_stop, promoted = _failover_run(cluster, tmp_path, synchronous=False)
    missing = missing_acknowledged(Settings.from_env(promoted), acks)
    after_stop = acks[before_stop:]
    assert len(after_stop) >= 100
    # Everything acknowledged once the standby was down is gone, and the check says so.
    for entry_id, seq in after_stop:
        assert f"{entry_id} acknowledged at seq {seq}, held at None" in missing
    # The shorter log is still a valid log: verify cannot see the loss.
    assert _verify(promoted).startswith("OK: ")
    print(f"async failover: {len(acks)} acknowledged, {len(missing)} missing after promotion")
