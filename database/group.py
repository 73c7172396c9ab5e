"""Group commit for the small writes every request makes beside the ledger.

A state-changing request used to commit three short transactions of its own besides its ledger
entry — its Idempotency-Key claim, the key's completion and its audit event — each one an
``fsync`` under the database's single writer lock, so concurrent requests queued on the lock
one commit at a time (docs/performance.md). ``GroupCommit`` runs the work of concurrent callers
in **one** transaction: the first caller to arrive leads, takes everything queued, runs every
piece of work, commits once, and hands leadership to the next waiting caller. Every caller
returns only once the transaction holding its work is durable, exactly as before; a lone
caller commits at once, as before.

Pieces rarely fail (a key claimed twice, a constraint), so a batch first runs them all in the
one transaction without savepoints (two statements a piece fewer, which a profile of a
donation showed as a third of this layer's time). When a piece fails, that transaction is
rolled back whole, nothing of it committed, and the batch runs again with each piece under its
own savepoint: the failing piece is rolled back alone and its caller gets its error. A piece
must therefore be a function of the database alone (running it twice after a rollback is
running it once). A piece that refuses before it writes anything (a compare-and-set that finds
the row moved on) returns ``Refused`` instead of raising: its caller gets the error, and the
others' work commits without the batch running again.

On PostgreSQL each statement is a round trip, and the leader holds the batches' lock (below)
through all of them. Pieces written only with ``database.driver``'s functions are
``pipelined``: a batch sends their statements in psycopg's pipeline mode, so a batch of claims,
completions and audit events waits on the server two or three times (its ``BEGIN``, the lock
and the statements up to the audit chain's head; the rest, with the ``COMMIT`` when every piece
of the batch is pipelined, else the ``COMMIT`` apart) instead of once or twice a piece.

A piece that writes one row of a statement many pieces send (a key's claim, a completion, an
audit event) returns ``Row``: on PostgreSQL the batch sends the rows of each such statement as
**one** statement of many rows, at the end of its pipelined pieces; a batch of pipelined pieces
alone also sends its ``COMMIT`` there. Each statement a pipeline sends is a wait for the
socket, and each wait for the server a trip of the leader's thread for the interpreter lock,
which the event loop may hold for up to the switch interval (5 ms), with the batches' lock held
all along (docs/performance.md). A piece whose row did not go in (a key claimed before) runs
its ``Row.otherwise`` in the same transaction, or in the next batch when its batch committed in
the pipeline. Should the connection break while that ``COMMIT`` is answered, the batch may have
committed: every caller gets the error, as when a commit fails, and nothing runs again.

A caller on an event loop awaits ``Pending.wait_async`` instead of parking a worker thread in
``wait``: its turn to lead goes to the group's own leader thread, and each batch wakes each
loop once for all its callers there. Thirty-two parked threads (a donation parked two) cost
the interpreter lock a hand-over, and the loop a wake-up, per caller and per batch
(docs/performance.md).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import dataclass
from itertools import groupby
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine

from database.driver import driver_later, driver_rows, driver_send, pipelined

R = TypeVar("R")

# On PostgreSQL every batch takes this transaction-scoped advisory lock first: batches of
# several processes then run one at a time, so no two can wait on each other's rows (the audit
# chain's last event, a key being claimed twice, a volunteer's visits).
PG_GROUP_LOCK = 0x7462_6772_6F75_7021  # "tbgroup!"
_PG_GROUP_LOCK_SQL = f"SELECT pg_advisory_xact_lock({PG_GROUP_LOCK})"


@dataclass(frozen=True)
class Refused:
    """What a piece returns, instead of raising ``error``, when it refused having written
    nothing: ``run`` and ``Pending.wait`` raise ``error`` to its caller."""

    error: Exception


@dataclass(frozen=True)
class RowStatement:
    """A statement of one row's values, which a batch sends once for every piece's row.

    ``one`` has ``?`` marks for one row (SQLite, and a batch run piece by piece); ``many(n)``
    is the same statement for ``n`` rows, their values one row after the other, PostgreSQL's
    SQL. With ``returning``, the statement returns its rows' keys (an ``INSERT ... ON CONFLICT
    DO NOTHING RETURNING id`` says which rows it inserted), and its rows are distinct by their
    key: a row whose key an earlier piece of the batch sent is not sent, and its piece runs
    its ``Row.otherwise``. Without, every row is sent."""

    one: str
    many: Callable[[int], str]
    returning: bool = False


@dataclass(frozen=True)
class Row(Generic[R]):
    """What a piece returns to have its one row of ``statement`` (``values``, in the order of
    its marks) sent with the other pieces' rows: its result is ``result`` once the row is
    sent (with ``returning``: once it came back). A row of a ``returning`` statement that did
    not come back (its key was taken) runs ``otherwise`` instead: in the same transaction, or,
    when the batch committed with its rows, in the next batch."""

    statement: RowStatement
    key: Any
    values: tuple[Any, ...]
    result: R
    otherwise: Callable[[Connection], R | Refused] | None = None

    def __post_init__(self) -> None:
        if self.statement.returning and self.otherwise is None:
            raise ValueError("a row of a returning statement needs what to do otherwise")

    def missed(self, came_back: bool) -> bool:
        """Whether ``otherwise`` runs: a row of a ``returning`` statement that did not come
        back."""
        return self.otherwise is not None and not came_back

    def finish(self, came_back: bool, conn: Connection) -> R | Refused:
        """The piece's result, ``otherwise`` run on ``conn`` when its row was missed."""
        if self.otherwise is not None and self.missed(came_back):
            return self.otherwise(conn)
        return self.result


class _CommitUnknown(Exception):
    """The connection broke while a batch that sent its ``COMMIT`` waited for the answers: it
    may have committed, so it must not run again piece by piece."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True)
class _Again(Generic[R]):
    """A piece's ``Row.otherwise``, to run in the next batch (its batch has committed)."""

    work: Callable[[Connection], R | Refused]


@dataclass(eq=False)
class _Job(Generic[R]):
    work: Callable[[Connection], R | Refused | Row[R]]
    pipelined: bool  # runs its statements through database.driver only (see GroupCommit.run)
    wake: threading.Event | None = None  # a waiting thread's: finished, or to lead
    finished: bool = False
    waiting: bool = False  # its caller waits for it (and may be handed leadership)
    lead: bool = False  # handed leadership while waiting
    future: asyncio.Future[Any] | None = None  # its caller awaits it on an event loop
    result: Any = None
    error: BaseException | None = None


@dataclass(frozen=True)
class Pending(Generic[R]):
    """Work submitted to a group commit; ``wait`` returns its result once it is durable."""

    group: GroupCommit
    job: _Job[R]

    @property
    def done(self) -> bool:
        """Whether its batch is over: ``wait`` then returns (or raises) without blocking."""
        return self.job.finished

    def wait(self) -> R:
        return self.group._wait(self.job)

    async def wait_async(self) -> R:
        """``wait`` for a caller on an event loop, which parks no thread: the group's leader
        thread commits the batch. The work is committed even if the awaiting task is
        cancelled (as with ``wait``: a committed piece cannot be taken back)."""
        return await self.group._wait_async(self.job)


class GroupCommit:
    """Leader/follower batching of write transactions on ``engine``."""

    def __init__(
        self,
        engine: Engine,
        *,
        serialize: bool,
        writing: Callable[[], AbstractContextManager[object]] = nullcontext,
        max_batch: int = 256,
    ) -> None:
        self.engine = engine
        self.serialize = serialize  # take PG_GROUP_LOCK first (PostgreSQL)
        self.writing = writing  # the writers' turn, around each transaction (SQLite)
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Job[Any]] = []
        self._leading = False
        self._leader_turn = threading.Event()  # the leader thread's turn (async callers)
        self._leader: threading.Thread | None = None
        self.batches = 0  # committed batches, for tests and benchmarks
        self.jobs = 0
        self.retried = 0  # batches run again piece by piece because a piece failed

    def run(
        self,
        work: Callable[[Connection], R | Refused | Row[R]],
        *,
        pipelined: bool = False,
    ) -> R:
        """Run ``work(conn)`` inside a write transaction shared with concurrent callers; return
        its result once committed (or raise its error, or the commit's).

        ``pipelined`` work runs its statements only through ``database.driver``'s
        ``driver_send``, ``driver_later`` and ``driver_rows`` (the last only for statements
        that return rows), or returns a ``Row``: on PostgreSQL the batch runs such work in
        psycopg's pipeline mode, so its statements share round trips
        (``database.driver.pipelined``)."""
        return self.submit(work, pipelined=pipelined).wait()

    def submit(
        self,
        work: Callable[[Connection], R | Refused | Row[R]],
        *,
        pipelined: bool = False,
    ) -> Pending[R]:
        """Queue ``work`` without waiting for it: it is committed in the batch of whichever
        caller leads next (a request's last two writes, the key's completion and its audit
        event, then share one transaction), at the latest when ``Pending.wait`` is called.
        Nothing may be told the work is durable before ``wait`` returns."""
        job: _Job[R] = _Job(work, pipelined)
        with self._lock:
            self._queue.append(job)
        return Pending(self, job)

    def _wait(self, job: _Job[R]) -> R:
        with self._lock:
            job.waiting = True
            wake = job.wake = threading.Event()  # only a thread that waits needs one
            lead = not job.finished and not self._leading
            if lead:
                self._leading = True
        while not job.finished:
            if lead:
                self._commit_next_batch()
            else:
                wake.wait()
                wake.clear()
            lead, job.lead = job.lead, False
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[no-any-return]

    async def _wait_async(self, job: _Job[R]) -> R:
        loop = asyncio.get_running_loop()
        with self._lock:
            if not job.finished:
                job.future = loop.create_future()
                job.waiting = True
                if not self._leading:
                    self._leading = True
                    self._hand_to_leader_thread()
        if job.future is not None:
            # Not shielded (a shield costs each caller another turn of the loop): a cancelled
            # caller's future is cancelled, and its work is committed all the same.
            await job.future
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[no-any-return]

    def _hand_to_leader_thread(self) -> None:
        """Give the lead to the group's own thread (under ``_lock``, with ``_leading`` set):
        the oldest waiting caller awaits on an event loop and cannot lead."""
        if self._leader is None:
            self._leader = threading.Thread(
                target=self._lead_for_loops, name="timebank-group-commit", daemon=True
            )
            self._leader.start()
        self._leader_turn.set()

    def _lead_for_loops(self) -> None:
        while True:
            self._leader_turn.wait()
            self._leader_turn.clear()
            self._commit_next_batch()

    def _commit_next_batch(self) -> None:
        with self._lock:
            taken, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
        # The pipelined work first, sent with the batch's BEGIN and lock (see ``run``).
        batch = sorted(taken, key=lambda job: not job.pipelined)
        awaited: dict[asyncio.AbstractEventLoop, list[asyncio.Future[Any]]] = {}
        try:
            self._commit(batch)
        finally:
            with self._lock:
                again = [job for job in batch if isinstance(job.result, _Again)]
                self.batches += 1
                self.jobs += len(batch) - len(again)  # a job run again counts once, when done
                for job in again:  # at the head of the queue, for the next batch
                    job.work, job.pipelined, job.result = job.result.work, False, None
                self._queue[:0] = again
                for job in batch:
                    if job in again:
                        continue
                    job.finished = True
                    if job.wake is not None:
                        job.wake.set()
                    if job.future is not None:
                        awaited.setdefault(job.future.get_loop(), []).append(job.future)
                # Hand over to the oldest caller that waits (a submitted job whose caller does
                # not wait yet cannot lead: it is committed by the next leader, or leads when
                # its caller waits); for a caller on an event loop, to the leader thread.
                heir = next((job for job in self._queue if job.waiting), None)
                if heir is None:
                    self._leading = False
                elif heir.future is not None:
                    self._hand_to_leader_thread()
                else:
                    assert heir.wake is not None  # it waits in a thread
                    heir.lead = True
                    heir.wake.set()
            for loop, futures in awaited.items():  # one wake-up of each loop for its callers
                with suppress(RuntimeError):  # a closed loop: nobody awaits there any more
                    loop.call_soon_threadsafe(_resolve, futures)

    def _commit(self, batch: list[_Job[Any]]) -> None:
        failed = self._commit_together(batch)
        if failed is None:
            return
        if len(batch) == 1:  # alone: its error, and nothing else to commit
            batch[0].error = failed
            return
        self.retried += 1
        self._commit_apart(batch)

    def _commit_together(self, batch: list[_Job[Any]]) -> BaseException | None:
        """Every piece in one transaction, no savepoints. None when it committed (or when the
        commit itself failed, or may have: then every caller has that error); the error of the
        piece that failed otherwise (in a pipeline, of the first statement that failed), with
        nothing committed."""
        failed: BaseException | None = None
        try:
            with self.writing(), self._transaction() as conn:
                try:
                    results = self._run_together(conn, batch)
                except _CommitUnknown:
                    raise
                except Exception as exc:
                    failed = exc
                    raise
        except Exception as exc:
            if failed is not None:
                return failed
            error = exc.error if isinstance(exc, _CommitUnknown) else exc
            for job in batch:  # the commit failed, or may have: none is told its work is durable
                job.error = error
            return None
        for job, result in zip(batch, results, strict=True):
            _settle(job, result)
        return None

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """A write transaction for ``_run_together``. On PostgreSQL its ``BEGIN`` is sent by
        ``_run_together`` with the batch's first statements: psycopg, left in autocommit,
        would otherwise wait for its answer before sending them. The commit (or rollback)
        is SQLAlchemy's, which psycopg sends as the transaction is open, unless the batch
        sent its ``COMMIT`` in its pipeline (then there is nothing left to commit)."""
        if not self.serialize:
            with self.engine.begin() as conn:
                yield conn
            return
        with (
            self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn,
            conn.begin(),
        ):
            yield conn

    def _run_together(self, conn: Connection, batch: list[_Job[Any]]) -> list[Any]:
        results: list[Any] = []
        begun = not self.serialize
        # On PostgreSQL a batch of pipelined pieces alone commits in its pipeline: one wait
        # for the server (and one trip for the interpreter lock) fewer.
        commit_in_pipeline = self.serialize and all(job.pipelined for job in batch)
        for piped, jobs in groupby(batch, key=lambda job: job.pipelined):
            try:
                with pipelined(conn) if piped else nullcontext():  # leaving it waits for the rest
                    if not begun:
                        driver_send(conn, "BEGIN", ())
                        driver_send(conn, _PG_GROUP_LOCK_SQL, ())
                        begun = True
                    start = len(results)
                    for job in jobs:
                        results.append(job.work(conn))
                    returned = _send_rows(conn, results[start:])
                    if commit_in_pipeline:
                        driver_send(conn, "COMMIT", ())
            except Exception as exc:
                if commit_in_pipeline and _broken(conn):  # the COMMIT may have been applied
                    raise _CommitUnknown(exc) from exc
                raise
            for at, keys in returned.items():
                row: Row[Any] = results[start + at]
                came_back = keys is not None and row.key in keys()
                if commit_in_pipeline and row.otherwise is not None and row.missed(came_back):
                    results[start + at] = _Again(row.otherwise)  # the batch has committed
                else:
                    results[start + at] = row.finish(came_back, conn)
        return results

    def _commit_apart(self, batch: list[_Job[Any]]) -> None:
        """Each piece under its own savepoint, so a failing one is rolled back alone."""
        try:
            with self.writing(), self.engine.begin() as conn:
                if self.serialize:
                    driver_rows(conn, _PG_GROUP_LOCK_SQL, ())
                for job in batch:
                    savepoint = conn.begin_nested()
                    try:
                        result = job.work(conn)
                        if isinstance(result, Row):
                            result = result.finish(_row_alone(conn, result), conn)
                    except Exception as exc:
                        savepoint.rollback()
                        job.error = exc
                    else:
                        savepoint.commit()
                        _settle(job, result)
        except Exception as exc:  # the commit itself failed: nobody's work is durable
            for job in batch:
                if job.error is None:
                    job.error = exc
                    job.result = None


def _resolve(futures: list[asyncio.Future[Any]]) -> None:
    """On the callers' loop: wake each (its result or error is read from its job)."""
    for future in futures:
        if not future.done():
            future.set_result(None)


def _settle(job: _Job[Any], result: object) -> None:
    if isinstance(result, Refused):
        job.error = result.error
    else:
        job.result = result


def _send_rows(conn: Connection, results: list[Any]) -> dict[int, Callable[[], set[Any]] | None]:
    """Send the ``Row`` s among ``results`` (a run of pieces' results, by position): on
    PostgreSQL one statement of many rows for each ``RowStatement``, on SQLite a row at a
    time. For each position holding a ``Row``: how to read the keys its statement returned
    (once the pipeline has ended), None for a row that was not sent (a repeat) or a statement
    without ``returning``."""
    by_statement: dict[RowStatement, list[int]] = {}
    for at, result in enumerate(results):
        if isinstance(result, Row):
            by_statement.setdefault(result.statement, []).append(at)
    returned: dict[int, Callable[[], set[Any]] | None] = {}
    for statement, positions in by_statement.items():
        sent: dict[Any, int] = {}
        for at in positions:
            key = results[at].key if statement.returning else at  # without, every row is sent
            if key in sent:
                returned[at] = None  # an earlier piece's row has this key
            else:
                sent[key] = at
        rows = [results[at].values for at in sent.values()]
        if conn.dialect.name == "sqlite":
            for at in sent.values():
                returned[at] = _known(_row_alone(conn, results[at]), results[at].key)
            continue
        sql, values = statement.many(len(rows)), tuple(value for row in rows for value in row)
        read = None
        if statement.returning:
            read = _first_values(driver_later(conn, sql, values))
        else:
            driver_send(conn, sql, values)
        for at in sent.values():
            returned[at] = read
    return returned


def _first_values(later: Callable[[], list[tuple[Any, ...]]]) -> Callable[[], set[Any]]:
    """The first values of ``later`` 's rows (the keys it returned), read once however many
    pieces ask."""
    cache: list[set[Any]] = []

    def read() -> set[Any]:
        if not cache:
            cache.append({row[0] for row in later()})
        return cache[0]

    return read


def _broken(conn: Connection) -> bool:
    """Whether ``conn`` 's driver connection is lost (closed or broken)."""
    dbapi = conn.connection.dbapi_connection
    return dbapi is None or bool(dbapi.closed) or bool(getattr(dbapi, "broken", False))


def _known(came_back: bool, key: Any) -> Callable[[], set[Any]]:
    return lambda: {key} if came_back else set()


def _row_alone(conn: Connection, row: Row[Any]) -> bool:
    """Send ``row`` by itself (a batch run piece by piece); whether it came back."""
    found = driver_rows(conn, row.statement.one, row.values)
    return row.statement.returning and any(r[0] == row.key for r in found)
