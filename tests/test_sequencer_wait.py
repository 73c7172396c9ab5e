"""How a caller blocked in ``Sequencer.append`` waits: for its own entry only, woken once it is
durable, never past its timeout, and refused at once by a closed sequencer."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from ledger.batch_writer import AppendResult
from ledger.entry import EntryRequest
from ledger.errors import InsufficientBalance, LedgerError
from ledger.log import Log
from tests.helpers import deposit, gift, member

# A caller that never wakes fails the test here instead of hanging it.
WAKE_WITHIN = 30.0


def _hold_the_writer(log: Log) -> threading.Event:
    """Make the writer wait at its next batch until the returned event is set."""
    release = threading.Event()
    writer = log.sequencer.writer
    append = writer.append

    def held(requests: Sequence[EntryRequest]) -> list[AppendResult | LedgerError]:
        release.wait(WAKE_WITHIN)
        return append(requests)  # type: ignore[return-value]

    writer.append = held  # type: ignore[method-assign]
    return release


def test_each_blocked_caller_gets_its_own_entry(log: Log) -> None:
    def appends(k: int) -> list[tuple[str, int]]:
        return [
            (r.id, r.seq)
            for r in map(log.append, (deposit(f"t{k}-{i}", member(k), 5) for i in range(6)))
        ]

    with ThreadPoolExecutor(16) as pool:
        results = [pair for part in pool.map(appends, range(16)) for pair in part]
    assert sorted(seq for _, seq in results) == list(range(96))
    stored = log.entries_by_id([entry_id for entry_id, _ in results])
    assert all(stored[entry_id].seq == seq for entry_id, seq in results)


def test_a_refused_entry_raises_in_its_own_caller_only(log: Log) -> None:
    log.append(deposit("d", member(1), 10))
    release = _hold_the_writer(log)
    with ThreadPoolExecutor(2) as pool:
        refused = pool.submit(log.append, gift("g", member(2), member(1), 10))
        accepted = pool.submit(log.append, deposit("d2", member(3), 10))
        release.set()
        with pytest.raises(InsufficientBalance):
            refused.result(WAKE_WITHIN)
        assert accepted.result(WAKE_WITHIN).seq == 1


def test_a_caller_past_its_timeout_gets_timeout_error_and_the_entry_is_still_appended(
    log: Log,
) -> None:
    release = _hold_the_writer(log)
    with pytest.raises(TimeoutError):
        log.sequencer.append(deposit("late", member(1), 10), timeout=0.05)
    release.set()
    assert log.append(deposit("next", member(1), 10)).seq == 1
    assert log.entries_by_id(["late"])["late"].seq == 0


def test_a_closed_sequencer_refuses_at_once(log: Log) -> None:
    log.sequencer.close()
    with ThreadPoolExecutor(1) as pool:
        refused = pool.submit(log.sequencer.append, deposit("d", member(1), 10))
        with pytest.raises(LedgerError, match="closed"):
            refused.result(WAKE_WITHIN)


def test_a_request_racing_close_is_appended_or_refused_never_left_waiting(log: Log) -> None:
    """Callers appending while the log closes each get an answer: their entry (queued before
    the close, so appended and durable) or the refusal; none waits for a writer that is gone."""
    release = _hold_the_writer(log)  # keep a batch in the writer while the race runs
    first = log.sequencer.submit(deposit("first", member(1), 5))
    answers: list[str] = []

    def racer(k: int) -> None:
        try:
            log.sequencer.append(deposit(f"r{k}", member(k), 5), timeout=WAKE_WITHIN)
            answers.append("appended")
        except TimeoutError:
            answers.append("left waiting")
        except LedgerError:
            answers.append("refused")

    racers = [threading.Thread(target=racer, args=(k,)) for k in range(32)]
    for thread in racers[:16]:
        thread.start()
    closer = threading.Thread(target=log.sequencer.close)
    closer.start()
    while not log.sequencer.closed:  # close() has begun (it waits for the held writer)
        time.sleep(0.001)
    for thread in racers[16:]:
        thread.start()
    release.set()
    for thread in [*racers, closer]:
        thread.join(2 * WAKE_WITHIN)
    assert first.result(WAKE_WITHIN).seq == 0
    assert len(answers) == 32 and "left waiting" not in answers
    assert "refused" in answers  # the last 16 came after the close began


def test_callers_awaiting_on_a_loop_each_get_their_own_entry_or_refusal(log: Log) -> None:
    """``append_async`` parks no thread: the writer stores each outcome and wakes the loop once
    a batch; each caller gets its own entry, or its own refusal, mixed with blocked callers."""
    log.append(deposit("d", member(1), 10))
    release = _hold_the_writer(log)

    async def on_the_loop() -> list[object]:
        async def one(k: int) -> object:
            request = (
                gift("g", member(99), member(1), 10) if k == 7 else deposit(f"a{k}", member(k), 5)
            )
            try:
                return (await log.append_async(request)).seq
            except InsufficientBalance:
                return "refused"

        answers = asyncio.gather(*(one(k) for k in range(20)))
        await asyncio.sleep(0.05)  # all twenty queued behind the held batch: one batch
        release.set()
        return list(await asyncio.wait_for(answers, WAKE_WITHIN))

    with ThreadPoolExecutor(4) as pool:
        blocked = [pool.submit(log.append, deposit(f"b{k}", member(k), 5)) for k in range(4)]
        answers = asyncio.run(on_the_loop())
        seqs = [future.result(WAKE_WITHIN).seq for future in blocked]
    assert answers[7] == "refused"
    taken = [a for k, a in enumerate(answers) if k != 7] + seqs
    assert sorted(taken) == list(range(1, 24))  # each its own, none twice, none lost
    stored = log.entries_by_id([f"a{k}" for k in range(20) if k != 7])
    assert all(stored[f"a{k}"].seq == answers[k] for k in range(20) if k != 7)


def test_a_cancelled_awaiting_caller_still_has_its_entry_appended(log: Log) -> None:
    """As for a blocked caller past its timeout: an entry once queued is appended even if the
    task awaiting it is cancelled, and the next caller is answered as usual."""
    release = _hold_the_writer(log)

    async def cancel_it() -> None:
        task = asyncio.ensure_future(log.append_async(deposit("gone", member(1), 10)))
        await asyncio.sleep(0.05)
        task.cancel()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (await log.append_async(deposit("next", member(1), 10))).seq == 1

    asyncio.run(cancel_it())
    assert log.entries_by_id(["gone"])["gone"].seq == 0


def test_a_closed_sequencer_refuses_an_awaiting_caller_at_once(log: Log) -> None:
    log.sequencer.close()
    with pytest.raises(LedgerError, match="closed"):
        asyncio.run(asyncio.wait_for(log.sequencer.append_async(deposit("d", member(1), 5)), 5))
