"""Writers' turns on SQLite (``database.turns``): writers of several processes wait for each
other on a file lock beside the database, woken as the last one commits; a process killed
holding its turn releases it; the wait is bounded."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from sqlalchemy import text

from database import Database
from database.turns import WriterTurns, lock_path

_SPAWN = multiprocessing.get_context("spawn")


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'turns.db'}"


def _hold_turn(url: str, ready: Any, seconds: float) -> None:
    """In another process: take the writers' turn, begin a write, hold both ``seconds``."""
    database = Database(url)
    with database.writing(), database.writer.begin() as conn:
        conn.execute(text("INSERT INTO notes (process) VALUES ('holder')"))
        ready.set()
        time.sleep(seconds)


def _holder(url: str, seconds: float) -> BaseProcess:
    """Another process holding the writers' turn (and a begun write) for ``seconds``."""
    ready = _SPAWN.Event()
    holder = _SPAWN.Process(target=_hold_turn, args=(url, ready, seconds))
    holder.start()
    assert ready.wait(30)
    return holder


def _write_many(url: str, process: str, count: int) -> None:
    """In another process: ``count`` group-committed inserts from 8 threads."""
    database = Database(url)
    statement = text("INSERT INTO notes (process) VALUES (:p)")

    def write(_: int) -> None:
        database.group.run(lambda conn: conn.execute(statement, {"p": process}))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(count)))
    database.dispose()


def _create(url: str) -> Database:
    database = Database(url)
    with database.writer.begin() as conn:
        conn.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, process TEXT)"))
    return database


def test_lock_file_sits_beside_the_database_and_none_in_memory() -> None:
    assert lock_path("sqlite:////srv/timebank/bank.db") == "/srv/timebank/bank.db-writers.lock"
    assert lock_path("sqlite:///bank.db?timeout=5") == "bank.db-writers.lock"
    assert lock_path("sqlite://") is None
    assert lock_path("sqlite:///:memory:") is None


def test_a_writer_waits_for_another_process_turn_then_goes_at_once(tmp_path: Path) -> None:
    url = _url(tmp_path)
    database = _create(url)
    holder = _holder(url, 1.0)
    try:
        began = time.monotonic()
        # The turn alone, no SQLite lock asked yet: without the file lock it returns at once.
        with database.writing():
            waited = time.monotonic() - began
        assert 0.5 < waited < 5
        holder.join(10)
        assert holder.exitcode == 0
    finally:
        holder.kill()
        database.dispose()


def test_a_process_killed_holding_its_turn_releases_it(tmp_path: Path) -> None:
    url = _url(tmp_path)
    database = _create(url)
    holder = _holder(url, 60.0)
    try:
        os.kill(holder.pid or 0, signal.SIGKILL)
        holder.join(10)
        began = time.monotonic()
        with database.writing(), database.writer.begin() as conn:
            conn.execute(text("INSERT INTO notes (process) VALUES ('after')"))
        assert time.monotonic() - began < 5
        with database.reader.begin() as conn:  # the killed process's write never committed
            rows = conn.execute(text("SELECT process FROM notes")).scalars().all()
        assert rows == ["after"]
    finally:
        holder.kill()
        database.dispose()


def test_the_wait_is_bounded_and_the_next_turn_still_works(tmp_path: Path) -> None:
    url = _url(tmp_path)
    path = lock_path(url)
    assert path is not None
    holder = os.open(path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(holder, fcntl.LOCK_EX)  # another open file: another process, to flock
    turns = WriterTurns(path, timeout=0.3)
    try:
        began = time.monotonic()
        with turns.turn():
            waited = time.monotonic() - began
        assert 0.25 < waited < 3
    finally:
        os.close(holder)  # released: the abandoned waiter takes it and gives it back
    began = time.monotonic()
    with turns.turn():
        assert time.monotonic() - began < 1
    assert _free_within(path, 3)  # the abandoned waiter gave its lock back


def _free_within(path: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        probe = os.open(path, os.O_RDWR)
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            time.sleep(0.05)
        finally:
            os.close(probe)
    return False


def test_two_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    url = _url(tmp_path)
    database = _create(url)
    writers = [_SPAWN.Process(target=_write_many, args=(url, name, 300)) for name in ("a", "b")]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(120)
        assert writer.exitcode == 0
    with database.reader.begin() as conn:
        counts = dict(
            conn.execute(text("SELECT process, count(*) FROM notes GROUP BY process")).all()
        )
    assert counts == {"a": 300, "b": 300}
    database.dispose()


def test_lock_file_path_is_the_file_sqlalchemy_opens() -> None:
    assert lock_path("sqlite:////srv/my%20bank/bank.db") == "/srv/my bank/bank.db-writers.lock"
    assert lock_path("sqlite:///file:/srv/bank.db?uri=true") == "/srv/bank.db-writers.lock"
    assert lock_path("sqlite:///file:bank?mode=memory&cache=shared&uri=true") is None


def test_a_lock_file_that_cannot_be_opened_leaves_the_writes_to_sqlite(tmp_path: Path) -> None:
    """A lock file this user may not open (left by another user, say) must not stop writes:
    the turn is skipped and SQLite serializes the writers alone, as it always can."""
    url = _url(tmp_path)
    Path(f"{tmp_path / 'turns.db'}-writers.lock").mkdir()  # os.open fails on it (EISDIR)
    database = _create(url)
    with database.writing(), database.writer.begin() as conn:
        conn.execute(text("INSERT INTO notes (process) VALUES ('here')"))
    database.group.run(lambda conn: conn.execute(text("INSERT INTO notes (process) VALUES ('g')")))
    with database.reader.begin() as conn:
        assert conn.execute(text("SELECT count(*) FROM notes")).scalar_one() == 2
    database.dispose()


def test_dispose_closes_the_lock_file_and_stops_the_waiter(tmp_path: Path) -> None:
    url = _url(tmp_path)
    database = _create(url)
    holder = _holder(url, 0.5)
    try:
        with database.writing():  # waits on this process's waiter thread for the holder
            pass
    finally:
        holder.join(30)
    turns = database._turns
    assert turns is not None and turns._fd is not None and turns._waiter is not None
    fd, waiter = turns._fd, turns._waiter
    database.dispose()
    waiter.join(5)
    assert not waiter.is_alive()
    assert turns._fd is None
    try:
        os.fstat(fd)
    except OSError:
        pass
    else:  # the number may have been reused by now, but not for our lock file
        assert os.readlink(f"/proc/self/fd/{fd}") != f"{tmp_path / 'turns.db'}-writers.lock"
