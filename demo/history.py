"""The demo bank's months of history: ``demo.seed.demo_requests`` written day after day on a
clock set in the past, with the demo's members joining along the way (``demo.bank`` seeds the
rest: people, organisations, this month, the partner and the reports)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta

from demo.seed import DEMO_BANK, demo_requests
from ledger import AppendResult
from ledger.entry import EntryRequest, Posting
from ledger.log import Log
from reports.public import log_time


class DemoClock:
    """The demo seed's clock: set in the past while the seed writes the bank's history, the
    real time once ``at`` is None. The log stamps entries with it (``Log.open(settings,
    clock=DemoClock())``) and the seed lends it to the accounts and care services, so members,
    flags and ledger entries share one time line. The log never goes back in time, so the seed
    moves it forward only."""

    def __init__(self) -> None:
        self.at: datetime | None = None

    def now(self) -> datetime:
        return self.at or datetime.now(UTC)

    def __call__(self) -> str:
        return log_time(self.now())


def history(
    log: Log,
    clock: DemoClock,
    entries: int,
    newcomers: int,
    register: Callable[[int], None],
    accounts_of: dict[str, str],
    opened: datetime,
    until: datetime,
    org: str,
    verifier: Callable[[str], str],
    confirmer: Callable[[str], str],
) -> int:
    """The bank's months from ``opened`` to ``until``: the newcomers join spread over them, or
    earlier when the history first credits or debits one of them (so more join in the first
    months, never more than a handful a day: no registration burst), and the ``entries`` of
    ``demo.seed.demo_requests`` are written day after day, each day's as one batch stamped at
    that day. Returns the entries appended (approvals not counted)."""
    slots = [slot(i) for i in range(3 + newcomers)]
    requests = list(
        demo_requests(entries, slots, 0, org=org, verifier=verifier, confirmer=confirmer)
    )
    days = max((until - opened).days, 1)

    def day_of(k: int) -> int:
        return k * days // max(len(requests), 1)

    def at_day(day: int) -> datetime:
        return opened + timedelta(days=day, hours=1)

    first_use: dict[str, int] = {}
    for k, request in enumerate(requests):
        for p in request.postings:
            first_use.setdefault(p.account, k)
    span = until - opened
    events: list[tuple[datetime, int, int]] = []  # (when, 0 join | 1 day of entries, which)
    for n in range(newcomers):
        planned = opened + span * (n + 1) / (newcomers + 1)
        used = first_use.get(slot(n + 3))
        if used is not None:  # she joins before the history first names her account
            planned = min(planned, at_day(day_of(used)) - timedelta(minutes=30 + n % 60))
        events.append((max(planned, opened + timedelta(minutes=5)), 0, n))
    by_day: dict[int, list[EntryRequest]] = {}
    for k, request in enumerate(requests):
        by_day.setdefault(day_of(k), []).append(request)
    events += [(at_day(day), 1, day) for day in by_day]
    events.sort()

    seqs: dict[str, int] = {}  # demo request id -> its seq
    appended = 0
    for when, what, which in events:
        clock.at = max(clock.now(), when)
        if what == 0:
            register(which)
            continue
        pending: list[Future[AppendResult]] = []
        for request in by_day[which]:
            placed = _placed(request, accounts_of, requests, seqs)
            if placed.kind == "reversal":  # it names an earlier seq: all before must be in
                appended += _drain(pending, seqs)
                pending = []
                result = log.append(placed)
                seqs[result.id] = result.seq
                appended += 1
                continue
            pending.append(log.sequencer.submit(placed))
        appended += _drain(pending, seqs)
    return appended


def slot(n: int) -> str:
    """A stand-in account for the demo's ``n``-th member (the volunteer, the family member and
    the elder, then the newcomers) in the history written before the members exist;
    ``_placed`` puts their real accounts in."""
    return f"{DEMO_BANK}:member:slot{n}"


def _placed(
    request: EntryRequest,
    accounts_of: dict[str, str],
    requests: list[EntryRequest],
    seqs: dict[str, int],
) -> EntryRequest:
    """``request`` on the members' real accounts; a reversal names its deposit's real seq."""
    postings = tuple(
        Posting(accounts_of.get(p.account, p.account), p.minutes) for p in request.postings
    )
    body = request.body
    if request.kind == "reversal":
        body = {**body, "reverses": seqs[requests[int(body["reverses"])].id]}
    return dataclasses.replace(request, postings=postings, body=body)


def _drain(pending: list[Future[AppendResult]], seqs: dict[str, int]) -> int:
    for future in pending:
        result = future.result()
        seqs[result.id] = result.seq
    return len(pending)
