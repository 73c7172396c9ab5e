"""The fast paths of the half-yearly report give the figures of the leaf-by-leaf reference
(``reports.public.PublicFigures``, FIFO lots): the server's SQL sums (``reports.halfyear.
public_figures``) on a real log in SQLite and PostgreSQL, and the auditor's partial sums
(``reports.summed.SummedFigures``) merged in any order, on a seeded random world of two banks
over four years: every moving kind, reversals (of reserves too), odd deposit bodies, entries
without postings of either bank, and entries right at the half-year boundaries."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar import Litestar

from audit.client import LogClient
from audit.report import Policy
from ledger.config import Settings
from ledger.entry import EntryRequest, Posting, canonical_json
from ledger.errors import LedgerError
from ledger.log import Log
from reports.halfyear import iter_leaves, public_figures
from reports.public import PublicFigures, half_bounds
from reports.recompute import verify_report
from reports.summed import SummedFigures
from tests.test_halfyear import app, principal, url, world

__all__ = ["app", "url"]  # fixtures of tests/test_halfyear.py used here

ZONE = "Asia/Shanghai"
HALVES = ("2023-H1", "2023-H2", "2024-H1", "2024-H2", "2025-H1", "2025-H2", "2026-H1")
SERVICES: tuple[Any, ...] = ("meal", "nursing", "护理", "", "x" * 65, 5, None, "MISSING")
MINUTES: tuple[Any, ...] = (30, 60, 45, "30", True, None, "MISSING")


class Clock:
    """The log's append time, moved by the world as it goes."""

    def __init__(self) -> None:
        self.now = datetime(2022, 12, 20, tzinfo=UTC)

    def __call__(self) -> str:
        return self.now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def timed_log(settings: Settings, clock: Clock) -> Iterator[Log]:
    opened = Log.open(settings, clock=clock)
    yield opened
    opened.close()


def _body(rng: random.Random, **fixed: Any) -> dict[str, Any]:
    body: dict[str, Any] = dict(fixed)
    for key, choices in (("service", SERVICES), ("org", SERVICES), ("minutes", MINUTES)):
        value = rng.choice(choices)
        if value != "MISSING":
            body[key] = value
    return body


def build_world(log: Log, clock: Clock, seed: int, entries: int) -> None:
    """Append ``entries`` random requests (those the log refuses are left out)."""
    rng = random.Random(seed)
    boundaries = [half_bounds(half, ZONE)[0] for half in HALVES]
    members = {bank: [f"{bank}:member:m{i}" for i in range(6)] for bank in ("t", "u")}
    moving: list[tuple[int, EntryRequest]] = []
    reversed_seqs: set[int] = set()
    for n in range(entries):
        step = rng.choice((0, 0, 1, 3600, 86400, 86400 * 5, 86400 * 20))
        clock.now += timedelta(seconds=step)
        if boundaries and clock.now >= boundaries[0] - timedelta(days=1) and rng.random() < 0.5:
            clock.now = max(clock.now, boundaries.pop(0))  # an entry right at a half's start
        bank = "t" if rng.random() < 0.85 else "u"
        m = members[bank]
        a, b = rng.choice(m), rng.choice(m)
        hold_a = a.replace(":member:", ":hold:")
        amount = rng.choice((5, 10, 30, 60, 120))
        roll = rng.random()
        request: EntryRequest
        if roll < 0.3:
            postings = [(f"{bank}:issuance", -amount), (a, amount)]
            if rng.random() < 0.2:
                postings = [(f"{bank}:issuance", -amount - 7), (a, amount), (f"{bank}:pool", 7)]
            request = _request("deposit", n, postings, _body(rng, weight=1000))
        elif roll < 0.4:
            request = _request("gift", n, [(a, -amount), (b, amount)], {})
        elif roll < 0.45:
            request = _request("donation", n, [(a, -amount), (f"{bank}:pool", amount)], {})
        elif roll < 0.5:
            request = _request(
                "grant", n, [(f"{bank}:pool", -amount), (a, amount)], {"reason": "care"}
            )
        elif roll < 0.57:
            request = _request("reserve", n, [(a, -amount), (hold_a, amount)], {})
        elif roll < 0.62:
            request = _request("release", n, [(hold_a, -amount), (a, amount)], {})
        elif roll < 0.68:
            source = rng.choice((a, hold_a))
            request = _request(
                "redemption", n, [(source, -amount), (f"{bank}:redemption", amount)], {}
            )
        elif roll < 0.7:
            request = _request("refund", n, [(f"{bank}:redemption", -amount), (a, amount)], {})
        elif roll < 0.73:
            request = _request("exchange", n, [(a, -amount), (f"{bank}:clearing:p1", amount)], {})
        elif roll < 0.76:
            sign = rng.choice((1, -1))
            request = _request(
                "correction",
                n,
                [(f"{bank}:issuance", -sign * amount), (a, sign * amount)],
                {"reason": "fix"},
            )
        elif roll < 0.84 and moving:
            seq, original = rng.choice(moving)
            if seq in reversed_seqs:
                continue
            negated = [(p.account, -p.minutes) for p in original.postings]
            request = _request("reversal", n, negated, {"reverses": seq, "reason": "mistake"})
        else:
            kind = rng.choice(("policy", "approval", "device", "report", "registration"))
            body = {} if rng.random() < 0.2 else {"bank": rng.choice(("t", "u", 7))}
            request = EntryRequest(kind, f"bare-{n}", body=body)
        try:
            result = log.append(request)
        except LedgerError:
            continue
        if request.postings and request.kind != "reversal":
            moving.append((result.seq, request))
        if request.kind == "reversal":
            reversed_seqs.add(int(request.body["reverses"]))


def _request(kind: str, n: int, postings: list[tuple[str, int]], body: dict[str, Any]) -> Any:
    return EntryRequest(kind, f"{kind}-{n}", tuple(Posting(a, m) for a, m in postings), body)


def test_the_fast_paths_give_the_reference_figures(timed_log: Log, clock: Clock) -> None:
    build_world(timed_log, clock, seed=14, entries=420)
    size = timed_log.size()
    leaves = list(iter_leaves(timed_log, size))
    kinds: set[str] = set()
    assert size > 300, "most requests of the world are appended"
    compared = 0
    for half in HALVES:
        start, end = half_bounds(half, ZONE)
        for upto in (size, size * 2 // 3):
            reference = PublicFigures("t", start, end)
            for leaf in leaves[:upto]:
                reference.add_leaf(leaf)
            expected = canonical_json(reference.figures())
            # the server: SQL sums over the log's tables
            assert canonical_json(public_figures(timed_log, "t", start, end, upto)) == expected
            # the auditor: sums of parts, merged newest part first
            parts = [SummedFigures("t", start, end) for _ in range(3)]
            for i, leaf in enumerate(leaves[:upto]):
                parts[i * 3 // upto].add_leaf(leaf)
            merged = parts[2].merge(parts[1]).merge(parts[0])
            assert canonical_json(merged.figures()) == expected
            compared += 1
            kinds.update(k for k, v in reference.figures()["entries_by_kind"].items() if v)
    # the world exercises what the figures depend on
    assert {"deposit", "reserve", "release", "reversal", "refund", "policy"} <= kinds
    assert compared == 2 * len(HALVES)


def test_the_world_has_what_the_comparison_needs(timed_log: Log, clock: Clock) -> None:
    """Ageing in several bands, a held liability, odd names: the comparison is not vacuous."""
    build_world(timed_log, clock, seed=14, entries=420)
    start, end = half_bounds("2026-H1", ZONE)
    figures = public_figures(timed_log, "t", start, end, timed_log.size())
    ages = figures["liability"]["age"]
    assert sum(1 for minutes in ages.values() if minutes) >= 3, ages
    assert figures["liability"]["minutes"] > 0
    assert "(none)" in figures["services"] and "meal" in figures["services"]


def test_the_auditor_recomputes_in_worker_processes(app: Litestar, log: Log, url: str) -> None:
    """The published report checks out with its leaves parsed in two processes, and a changed
    figure is named as it is when one process does everything."""
    reports = world(app, log)
    published = reports.publish(principal(app, "t-admin"), "2026-H2")
    client, policy = LogClient(url), Policy(log.signer.verifier)
    good = verify_report(published.data, client, policy, workers=2)
    assert good.ok, list(good.lines())
    assert good.entries == published.tree_size + 1
    changed = json.loads(published.data)
    changed["public"]["liability"]["age"]["days_0_89"] += 1
    for workers in (1, 2):
        report = verify_report(canonical_json(changed), client, policy, workers=workers)
        assert [p.where for p in report.problems] == ["public.liability.age.days_0_89", "sha256"]
