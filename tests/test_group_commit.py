"""Group commit (``database.group``): concurrent callers share transactions, each caller gets
its own result or its own error, and nothing a caller was told is committed is missing."""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Column, Connection, Integer, MetaData, String, Table, func, select
from sqlalchemy.exc import OperationalError

import database.group as group_module
from accounts.protection import Protector
from audit.trail import AuditEvent, AuditTrail, check_chain
from database import Database
from database.driver import driver_later, driver_send
from database.group import GroupCommit, Pending, Refused, Row, RowStatement
from idempotency.store import IdempotencyStore, StoredResponse
from tests.conftest import BACKENDS, open_database

scratch = MetaData()
notes = Table(
    "group_commit_notes",
    scratch,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("text", String(40), nullable=False),
)


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    yield from open_database(request.param, request, tmp_path, scratch)


def _insert(n: int) -> Callable[[Connection], int]:
    def work(conn: Connection) -> int:
        conn.execute(notes.insert().values(id=n, text=f"note {n}"))
        return n * 10

    return work


def test_concurrent_callers_share_transactions_and_each_gets_its_own_answer(
    database: Database,
) -> None:
    group = database.group
    start = threading.Barrier(16)

    def call(n: int) -> int:
        if n < 16:
            start.wait()
        return group.run(_insert(n))

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(call, range(400)))
    assert answers == [n * 10 for n in range(400)]
    with database.reader.begin() as conn:
        assert conn.execute(select(func.count()).select_from(notes)).scalar_one() == 400
    assert group.jobs == 400
    assert group.batches < 400  # callers waiting on the lock were committed together
    assert group.retried == 0  # no piece failed: no batch ran twice


def test_a_batch_with_a_failing_piece_runs_again_piece_by_piece(database: Database) -> None:
    """Seven callers queue behind a leader whose transaction is held open, so they are one
    batch; one of them fails: the batch runs again with savepoints, and only that one fails."""
    group = database.group
    group.run(_insert(1))
    entered, gate = threading.Event(), threading.Event()

    def held(conn: Connection) -> int:
        entered.set()
        gate.wait(10)
        return _insert(50)(conn)

    outcomes: dict[int, object] = {}

    def call(n: int, work: Callable[[Connection], int]) -> None:
        try:
            outcomes[n] = group.run(work)
        except Exception as exc:
            outcomes[n] = type(exc).__name__

    leader = threading.Thread(target=call, args=(-1, held))
    queued = [
        threading.Thread(target=call, args=(n, _insert(1 if n == 3 else 200 + n))) for n in range(7)
    ]
    _queue_behind_held_leader(group, entered, gate, leader, queued)
    assert outcomes == {
        -1: 500,
        **{n: (200 + n) * 10 for n in range(7) if n != 3},
        3: "IntegrityError",
    }
    assert group.retried == 1
    with database.reader.begin() as conn:
        ids = set(conn.execute(select(notes.c.id)).scalars())
    assert ids == {1, 50} | {200 + n for n in range(7) if n != 3}


def test_a_failing_piece_fails_alone(database: Database) -> None:
    group = database.group
    group.run(_insert(1))
    start = threading.Barrier(8)
    outcomes: dict[int, str] = {}

    def call(n: int) -> None:
        start.wait()
        try:
            group.run(_insert(1 if n == 3 else 100 + n))
            outcomes[n] = "ok"
        except Exception as exc:
            outcomes[n] = type(exc).__name__

    threads = [threading.Thread(target=call, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes[3] == "IntegrityError"  # id 1 exists: this caller's insert fails …
    assert all(outcomes[n] == "ok" for n in range(8) if n != 3)  # … and only this one
    with database.reader.begin() as conn:
        ids = set(conn.execute(select(notes.c.id)).scalars())
    assert ids == {1} | {100 + n for n in range(8) if n != 3}


def test_a_piece_that_refuses_before_writing_fails_alone_without_a_second_run(
    database: Database,
) -> None:
    """A piece returning ``Refused`` (it found the row moved on and wrote nothing): its caller
    gets the error, the rest of its batch commits, and the batch does not run again."""
    group = database.group
    entered, gate = threading.Event(), threading.Event()

    def held(conn: Connection) -> int:
        entered.set()
        gate.wait(10)
        return _insert(50)(conn)

    def refuse(conn: Connection) -> int | Refused:
        return Refused(LookupError("moved on"))

    outcomes: dict[int, object] = {}

    def call(n: int, work: Callable[[Connection], int | Refused]) -> None:
        try:
            outcomes[n] = group.run(work)
        except Exception as exc:
            outcomes[n] = f"{type(exc).__name__}: {exc}"

    leader = threading.Thread(target=call, args=(-1, held))
    queued = [
        threading.Thread(target=call, args=(n, refuse if n == 2 else _insert(500 + n)))
        for n in range(5)
    ]
    _queue_behind_held_leader(group, entered, gate, leader, queued)
    assert outcomes == {
        -1: 500,
        **{n: (500 + n) * 10 for n in range(5) if n != 2},
        2: "LookupError: moved on",
    }
    assert group.retried == 0
    with pytest.raises(LookupError):  # alone, the same
        group.run(refuse)
    with database.reader.begin() as conn:
        ids = set(conn.execute(select(notes.c.id)).scalars())
    assert ids == {50} | {500 + n for n in range(5) if n != 2}


def test_a_lone_caller_commits_at_once(database: Database) -> None:
    group = database.group
    assert group.run(_insert(7)) == 70
    with database.reader.begin() as conn:
        assert conn.execute(select(notes.c.text).where(notes.c.id == 7)).scalar_one() == "note 7"
    assert (group.batches, group.jobs) == (1, 1)


def test_submitted_work_is_committed_with_the_next_callers_batch(database: Database) -> None:
    """A request's key completion is submitted, then its audit event runs: one batch."""
    group = database.group
    pending = group.submit(_insert(5))
    assert not pending.done
    assert group.run(_insert(6)) == 60
    assert (group.batches, group.jobs) == (1, 2)  # both in the one transaction
    assert pending.done  # the idempotency layer then asks no worker thread to wait
    assert pending.wait() == 50  # durable already: waiting commits nothing more
    assert group.batches == 1


def test_submitted_work_alone_is_committed_by_its_wait(database: Database) -> None:
    group = database.group
    pending = group.submit(_insert(8))
    assert group.batches == 0  # nothing runs until someone leads
    assert pending.wait() == 80
    with database.reader.begin() as conn:
        assert conn.execute(select(notes.c.text).where(notes.c.id == 8)).scalar_one() == "note 8"


def test_callers_that_submit_then_wait_and_callers_that_run_never_wait_on_each_other(
    database: Database,
) -> None:
    """As the idempotency layer does: submit, let another write run (the audit event), wait.
    Mixed with plain callers, on many threads: every piece commits, nobody hangs."""
    group = database.group

    def request(n: int) -> tuple[int, int]:
        pending = group.submit(_insert(2 * n))
        other = group.run(_insert(2 * n + 1))
        return pending.wait(), other

    with ThreadPoolExecutor(max_workers=24) as pool:
        answers = list(pool.map(request, range(300)))
    assert answers == [(20 * n, 20 * n + 10) for n in range(300)]
    with database.reader.begin() as conn:
        assert conn.execute(select(func.count()).select_from(notes)).scalar_one() == 600
    assert group.jobs == 600 and group.batches < 600


def _audit_later(trail: AuditTrail, n: int) -> Pending[AuditEvent]:
    return trail.record_later(
        actor=f"user-{n}",
        role="member",
        action="POST /v1/donations",
        objects=[str(n)],
        client="127.0.0.1",
        status=201,
    )


def _audit(trail: AuditTrail, n: int) -> AuditEvent:
    return _audit_later(trail, n).wait()


def test_audit_events_committed_together_keep_one_chain(database: Database) -> None:
    """Events of one batch share a transaction: each after the first takes the head the one
    before left instead of reading it. The chain has no gap and no fork."""
    trail = AuditTrail(database)
    start = threading.Barrier(16)

    def record(n: int) -> AuditEvent:
        if n < 16:
            start.wait()
        return _audit(trail, n)

    with ThreadPoolExecutor(max_workers=16) as pool:
        recorded = list(pool.map(record, range(200)))
    assert sorted(e.seq for e in recorded) == list(range(200))
    assert database.group.batches < 200  # events shared transactions
    problems, _ = check_chain(trail.all_events())
    assert problems == []


def test_audit_events_in_a_batch_run_again_piece_by_piece_keep_one_chain(
    database: Database,
) -> None:
    """A batch holding audit events and a failing piece runs again under savepoints, where
    each event reads the head: the chain stays whole and only the failing piece fails."""
    trail = AuditTrail(database)
    group = database.group
    group.run(_insert(1))
    _audit(trail, 0)
    entered, gate = threading.Event(), threading.Event()

    def held(conn: Connection) -> int:
        entered.set()
        gate.wait(10)
        return _insert(50)(conn)

    outcomes: dict[int, object] = {}

    def call(n: int, work: Callable[[], object]) -> None:
        try:
            outcomes[n] = work()
        except Exception as exc:
            outcomes[n] = type(exc).__name__

    leader = threading.Thread(target=call, args=(-1, lambda: group.run(held)))
    queued = [
        threading.Thread(
            target=call,
            args=(n, (lambda: group.run(_insert(1))) if n == 2 else (lambda n=n: _audit(trail, n))),
        )
        for n in range(1, 5)
    ]
    _queue_behind_held_leader(group, entered, gate, leader, queued)
    assert outcomes[2] == "IntegrityError"
    assert group.retried == 1
    events = trail.all_events()
    assert [e.seq for e in events] == [0, 1, 2, 3]
    problems, _ = check_chain(events)
    assert problems == []


def _queue_behind_held_leader(
    group: GroupCommit,
    entered: threading.Event,
    gate: threading.Event,
    leader: threading.Thread,
    queued: list[threading.Thread],
) -> None:
    """Start ``leader`` (its work sets ``entered``, then waits for ``gate``) and, once it holds
    its transaction, ``queued``; open the gate when they all wait in the group's queue (so
    they are one batch), then wait for every thread."""
    leader.start()
    assert entered.wait(10)
    for t in queued:
        t.start()
    for _ in range(1000):
        with group._lock:
            if len(group._queue) == len(queued):
                break
        threading.Event().wait(0.01)
    gate.set()
    for t in [leader, *queued]:
        t.join()


@contextmanager
def _leader_held(group: GroupCommit) -> Iterator[None]:
    """Work submitted inside the block queues behind a leader whose batch is held open, so it
    is committed as one batch once the block ends and the leader's batch is over."""
    entered, gate = threading.Event(), threading.Event()

    def held(conn: Connection) -> None:
        entered.set()
        gate.wait(10)

    leader = threading.Thread(target=group.run, args=(held,))
    leader.start()
    assert entered.wait(10)
    try:
        yield
    finally:
        gate.set()
        leader.join()


_NOTE_ROW = RowStatement(
    "INSERT INTO group_commit_notes (id, text) VALUES (?, ?) ON CONFLICT DO NOTHING RETURNING id",
    lambda count: (
        "INSERT INTO group_commit_notes (id, text) VALUES "
        + ", ".join(["(?, ?)"] * count)
        + " ON CONFLICT DO NOTHING RETURNING id"
    ),
    returning=True,
)
_PLAIN_NOTE_ROW = RowStatement(
    "INSERT INTO group_commit_notes (id, text) VALUES (?, ?)",
    lambda count: (
        "INSERT INTO group_commit_notes (id, text) VALUES " + ", ".join(["(?, ?)"] * count)
    ),
)


def _sent(n: int) -> Callable[[Connection], Row[int]]:
    """Pipelined work: its note one row of the batch's one insert (failing on a taken id),
    answered once the batch's statements are all sent."""

    def work(conn: Connection) -> Row[int]:
        return Row(_PLAIN_NOTE_ROW, n, (n, "sent"), n * 10 + 1)

    return work


def _claimed(n: int, text: str) -> Callable[[Connection], Row[str]]:
    """Pipelined work that learns whether its row was inserted (``ON CONFLICT DO NOTHING``)."""

    def work(conn: Connection) -> Row[str]:
        return Row(_NOTE_ROW, n, (n, text), text, lambda conn: "taken")

    return work


def test_pipelined_work_shares_round_trips_and_each_caller_gets_its_answer(
    database: Database,
) -> None:
    """Pipelined pieces and plain ones in one batch: each caller's answer is read after all
    were sent, and a plain piece after them sees their rows."""
    group = database.group

    def plain_count(conn: Connection) -> int:
        return int(conn.execute(select(func.count()).select_from(notes)).scalar_one())

    def sent_alone(conn: Connection) -> int:
        driver_send(conn, "INSERT INTO group_commit_notes (id, text) VALUES (?, ?)", (99, "alone"))
        count = driver_later(conn, "SELECT count(*) FROM group_commit_notes WHERE id = ?", (99,))
        return int(count()[0][0])  # waits for everything sent so far

    with _leader_held(group):
        sent = [group.submit(_sent(n), pipelined=True) for n in range(1, 7)]
        alone = group.submit(sent_alone, pipelined=True)
        counted = group.submit(plain_count)
    assert [p.wait() for p in sent] == [n * 10 + 1 for n in range(1, 7)]
    assert alone.wait() == 1
    assert counted.wait() == 7
    assert group.batches == 2  # the leader's, then all eight together
    assert group.retried == 0


def test_each_piece_learns_whether_its_row_of_a_shared_statement_went_in(
    database: Database,
) -> None:
    """Rows of one statement go out together; with ``ON CONFLICT DO NOTHING RETURNING`` each
    piece learns whether its row was inserted: not when the key was taken before, nor when an
    earlier piece of the same batch sent the same key (as two claims of one key would)."""
    group = database.group
    group.run(_insert(2))
    with _leader_held(group):
        asked = [(1, "first"), (2, "second"), (1, "again"), (3, "third")]
        pending = [group.submit(_claimed(n, text), pipelined=True) for n, text in asked]
    assert [p.wait() for p in pending] == ["first", "taken", "taken", "third"]
    assert group.retried == 0
    with database.reader.begin() as conn:
        stored = {row.id: row.text for row in conn.execute(select(notes.c.id, notes.c.text))}
    assert stored == {1: "first", 2: "note 2", 3: "third"}


def test_a_pipelined_statement_that_fails_fails_its_caller_alone(database: Database) -> None:
    """The error of a statement only sent reaches the batch where it next waits: the batch runs
    again piece by piece, without a pipeline, and only that caller fails."""
    group = database.group
    group.run(_insert(1))
    with _leader_held(group):
        pending = {n: group.submit(_sent(1 if n == 3 else n), pipelined=True) for n in range(2, 7)}
    outcomes: dict[int, object] = {}
    for n, p in pending.items():
        try:
            outcomes[n] = p.wait()
        except Exception as exc:
            outcomes[n] = type(exc).__name__
    assert outcomes == {2: 21, 3: "IntegrityError", 4: 41, 5: 51, 6: 61}
    assert group.retried == 1
    with database.reader.begin() as conn:
        assert conn.execute(select(notes.c.id).order_by(notes.c.id)).scalars().all() == [
            1,
            2,
            4,
            5,
            6,
        ]


def test_callers_on_an_event_loop_and_in_threads_share_batches_and_get_their_answers(
    database: Database,
) -> None:
    """Callers awaiting on a loop park no thread: the group's leader thread commits their
    batches, hands the lead to a waiting thread and takes it back; every caller gets its own
    answer or its own error, and exactly what was answered is committed."""
    group = database.group

    def failing(conn: Connection) -> int:
        conn.execute(notes.insert().values(id=7, text="a second note 7"))  # 7 is taken below
        return -1

    async def on_the_loop() -> list[object]:
        async def one(n: int) -> object:
            work = failing if n == 1000 else _insert(n)
            try:
                return await group.submit(work).wait_async()
            except Exception as exc:
                return type(exc).__name__

        answers = asyncio.gather(*(one(n) for n in [*range(300), 1000]))
        return list(await asyncio.wait_for(answers, 60))  # a lost lead would hang them

    with ThreadPoolExecutor(max_workers=8) as pool:
        in_threads = [pool.submit(group.run, _insert(n)) for n in range(300, 400)]
        loop_answers = asyncio.run(on_the_loop())  # while the threads' calls go on
        threads = [future.result() for future in in_threads]
    assert threads == [n * 10 for n in range(300, 400)]
    assert loop_answers[:300] == [n * 10 for n in range(300)]
    assert loop_answers[300] == "IntegrityError"
    with database.reader.begin() as conn:
        texts = dict(conn.execute(select(notes.c.id, notes.c.text)).all())
    assert sorted(texts) == list(range(400))
    assert texts[7] == "note 7"
    assert group.batches < 400


def test_a_cancelled_caller_on_a_loop_does_not_undo_its_work(database: Database) -> None:
    """Work, once submitted, is committed even when the task awaiting it is cancelled (as for a
    thread that stops waiting): a committed piece cannot be taken back, and nothing is lost."""
    group = database.group
    entered, gate = threading.Event(), threading.Event()

    def held(conn: Connection) -> int:
        entered.set()
        gate.wait(10)
        return _insert(1)(conn)

    async def cancel_while_committing() -> bool:
        task = asyncio.ensure_future(group.submit(held).wait_async())
        await asyncio.to_thread(entered.wait, 10)
        task.cancel()
        gate.set()
        try:
            await task
        except asyncio.CancelledError:
            return True
        return False

    assert asyncio.run(cancel_while_committing())
    assert group.run(_insert(2)) == 20  # the group still leads and commits afterwards
    with database.reader.begin() as conn:
        assert conn.execute(select(func.count()).select_from(notes)).scalar_one() == 2


def test_keys_claimed_and_completed_in_one_batch_each_get_their_own_answer(
    database: Database,
) -> None:
    """A batch of claims and completions (each one statement of many rows on PostgreSQL): a
    fresh key runs; the same key claimed twice in the batch runs once, the other is told it is
    in progress; each completion stores its own response, replayed to its own key only."""
    store = IdempotencyStore(
        database, Protector(secrets.token_bytes(32)), datetime.now(UTC).replace(microsecond=0)
    )
    group = database.group
    first = {n: store.claim(f"key-{n}", f"print-{n}") for n in range(3)}
    assert {claim.outcome for claim in first.values()} == {"run"}
    answers = {
        n: StoredResponse(200 + n, [(b"content-type", b"text/plain")], b"%d" % n) for n in range(3)
    }
    with _leader_held(group):
        completed = [store.complete_later(f"key-{n}", first[n].lease, answers[n]) for n in range(3)]
        claims = [store.claim_later(f"key-{n}", f"print-{n}") for n in (3, 4, 3)]
    for pending in completed:
        pending.wait()
    assert [pending.wait().outcome for pending in claims] == ["run", "run", "in_progress"]
    assert group.retried == 0
    replays = {n: store.claim(f"key-{n}", f"print-{n}") for n in range(3)}
    assert {n: claim.outcome for n, claim in replays.items()} == dict.fromkeys(range(3), "replay")
    assert {n: claim.stored for n, claim in replays.items()} == answers
    assert store.claim("key-0", "another body").outcome == "reused"


def test_a_takeovers_completion_beside_the_abandoned_runs_is_stored(database: Database) -> None:
    """A key abandoned for ten minutes is taken over with a new lease; the first run's late
    completion and the new run's land in one batch: the new run's response is stored (the
    old lease's matches nothing), and a retry replays it."""
    protector = Protector(secrets.token_bytes(32))
    then = datetime.now(UTC).replace(microsecond=0)
    old, new = (IdempotencyStore(database, protector, then + timedelta(minutes=m)) for m in (0, 11))
    first, second = old.claim("key", "print"), new.claim("key", "print")
    assert (first.outcome, second.outcome) == ("run", "run") and first.lease != second.lease
    answer = StoredResponse(201, [], b"the second run's")
    with _leader_held(database.group):
        late = old.complete_later("key", first.lease, StoredResponse(201, [], b"the first run's"))
        done = new.complete_later("key", second.lease, answer)
    late.wait()
    done.wait()
    replay = new.claim("key", "print")
    assert (replay.outcome, replay.stored) == ("replay", answer)


@pytest.fixture
def pg_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    yield from open_database("postgresql", request, tmp_path, scratch)


def test_a_batch_that_may_have_committed_in_its_pipeline_does_not_run_again(
    pg_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL: the connection breaks once the batch's COMMIT went out with its rows. It may
    have committed, so nothing runs again piece by piece (that would write each audit event a
    second time): every caller gets an error, as when a commit fails. (SQLite commits apart.)"""
    database = pg_database
    real = group_module.pipelined

    @contextmanager
    def breaking(conn: Connection) -> Iterator[None]:
        with real(conn):
            yield
        dbapi = conn.connection.dbapi_connection
        assert dbapi is not None
        dbapi.close()  # the answers were read: the server did commit
        raise OperationalError("the connection broke")

    trail = AuditTrail(database)
    group = database.group
    with _leader_held(group):
        monkeypatch.setattr(group_module, "pipelined", breaking)
        events = [_audit_later(trail, n) for n in range(2)]
    for pending in events:
        with pytest.raises(OperationalError, match="connection"):
            pending.wait()
    monkeypatch.setattr(group_module, "pipelined", real)
    assert group.retried == 0
    problems, _ = check_chain(trail.all_events())
    assert problems == [] and len(trail.all_events()) == 2  # written once, not twice
