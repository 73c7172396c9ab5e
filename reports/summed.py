"""The public figures from sums instead of a walk through every member's lots: the same
figures as ``reports.public.PublicFigures`` (tests/test_halfyear_fast.py compares them on
generated logs), computed by the server from SQL sums (``Log.bank_totals``) and by the auditor
from leaves parsed in worker processes, in any order.

Why sums are enough for the age profile: lots are used oldest first and a credit that meets
a debt pays it at once, so what is used is always the oldest part of a member's credits, as
much as their debits. A member holding S = credits - debits > 0 minutes at the half's end
holds the newest S minutes credited; their age profile needs only the minutes credited per
age band, taken from the newest band back.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from datetime import datetime

from ledger import BankTotals
from ledger.entry import ASCII_KEY
from ledger.postings import KIND_RULES
from reports.public import AGE_BUCKETS, UNNAMED, PublicFigures

OWN_MOVES = ("reserve", "release")  # between a member and their own hold: minutes stay stored
# Entries without postings the figures count (by their body's bank); registrations are not.
BARE_KINDS = tuple(
    kind for kind, rule in KIND_RULES.items() if not rule.needs_postings and kind != "registration"
)


class SummedFigures(PublicFigures):
    """``PublicFigures`` holding, per member, the net minutes and the minutes credited per age
    band instead of dated lots; partial figures over parts of the log ``merge``."""

    def __init__(self, bank: str, start: datetime, end: datetime) -> None:
        super().__init__(bank, start, end)
        self.edges = [edge for _, edge in self.age_edges()][:-1]  # the last band is open
        self.held: dict[str, list[int]] = {}  # owner → [net, credited per band (oldest first)]

    def _held(self, owner: str, time: str, minutes: int) -> None:
        row = self.held.get(owner)
        if row is None:
            row = self.held[owner] = [0] * (len(AGE_BUCKETS) + 1)
        row[0] += minutes
        if minutes > 0:
            row[1 + bisect_left(self.edges, time)] += minutes

    def holdings(self) -> tuple[int, int, dict[str, int]]:
        names = [name for name, _ in self.age_edges()]  # oldest first, as the bands
        ages = dict.fromkeys((name for name, _ in AGE_BUCKETS), 0)
        liability = holders = 0
        for net, *credited in self.held.values():
            liability += net
            if net <= 0:
                continue
            holders += 1
            left = net
            for band in range(len(credited) - 1, -1, -1):  # newest first
                taken = min(left, credited[band])
                ages[names[band]] += taken
                left -= taken
                if not left:
                    break
        return liability, holders, ages

    def merge(self, other: SummedFigures) -> SummedFigures:
        """Add the figures of another part of the log (parts in any order)."""
        _add(self.minutes, other.minutes)
        _add(self.entries, other.entries)
        for mine, theirs in ((self.services, other.services), (self.orgs, other.orgs)):
            for name, row in theirs.items():
                _add(mine.setdefault(name, dict.fromkeys(row, 0)), row)
        self.pool_in += other.pool_in
        self.pool_out += other.pool_out
        self.pool_balance += other.pool_balance
        for owner, sums in other.held.items():
            held = self.held.get(owner)
            if held is None:
                self.held[owner] = list(sums)
            else:
                for i, value in enumerate(sums):
                    held[i] += value
        return self

    @classmethod
    def from_totals(
        cls, bank: str, start: datetime, end: datetime, totals: BankTotals
    ) -> SummedFigures:
        """The figures from the log's SQL sums (``Log.bank_totals`` asked with ``edges``)."""
        figures = cls(bank, start, end)
        for kind, (count, minutes) in totals.kinds.items():
            figures.minutes[kind] = figures.minutes.get(kind, 0) + minutes
            figures.entries[kind] = figures.entries.get(kind, 0) + count
        for service, org, minutes, count, credited in totals.deposits:
            served = minutes * count if type(minutes) is int else 0
            for key, book in ((service, figures.services), (org, figures.orgs)):
                name = key if isinstance(key, str) and ASCII_KEY.match(key) else UNNAMED
                row = book.setdefault(name, {"deposits": 0, "served": 0, "deposited": 0})
                row["deposits"] += count
                row["served"] += served
                row["deposited"] += credited
        for leaf in totals.bare:
            figures.add_leaf(leaf)
        figures.pool_in, figures.pool_out, figures.pool_balance = totals.pool
        skip = len(figures.prefix)
        for account, bands in totals.holdings.items():
            owner = account[skip:].partition(":")[2]
            held = figures.held.setdefault(owner, [0] * (len(AGE_BUCKETS) + 1))
            for band, (credited, net) in bands.items():
                held[0] += net
                held[1 + band] += credited
        return figures


def _add(mine: dict[str, int], theirs: Mapping[str, int]) -> None:
    for key, value in theirs.items():
        mine[key] = mine.get(key, 0) + value


def edges_of(figures: PublicFigures) -> Sequence[str]:
    """The band limits ``Log.bank_totals`` takes (all but the open, newest band)."""
    return [edge for _, edge in figures.age_edges()][:-1]
