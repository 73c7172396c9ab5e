"""The public part of a half-yearly report: figures computed from the log's entries alone, so
that anyone holding the leaves recomputes them (the server when it publishes, the auditor's
``timebank audit report`` when it checks). No database, no clock: the same entries and bounds
give the same figures. Every figure is defined in docs/statistics.md (Half-yearly reports).

All figures are whole minutes or counts (the report is canonical JSON, which has no floats);
the one ratio, months of redemption capacity, is a decimal string with one digit.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ledger.entry import ASCII_KEY, Entry

HALF = re.compile(r"^(\d{4})-H([12])\Z")
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # the log's entry time

# The kinds that move minutes, each reported even at 0 (the log's kinds, ledger/postings.py).
MOVING_KINDS = (
    "deposit",
    "correction",
    "gift",
    "donation",
    "grant",
    "reserve",
    "release",
    "redemption",
    "refund",
    "exchange",
    "reversal",
)
# Age of stored minutes at the half's end, in whole days: (name, lowest age in days).
AGE_BUCKETS = (
    ("days_0_89", 0),
    ("days_90_179", 90),
    ("days_180_364", 180),
    ("days_365_729", 365),
    ("days_730_plus", 730),
)
HALF_MONTHS = 6
UNNAMED = "(none)"  # a deposit without a service or organisation the document can name


_RAW_DECODE = json.JSONDecoder().raw_decode


def _loads(leaf: bytes) -> Any:
    """``json.loads(leaf)``, a third faster for a leaf that is UTF-8 JSON with nothing around
    it (every leaf the log writes); anything else goes to ``json.loads`` itself, so the result
    and the error are always its own."""
    try:
        text = leaf.decode("utf-8")
        value, end = _RAW_DECODE(text)
    except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return json.loads(leaf)
    return value if end == len(text) else json.loads(leaf)


class BadHalf(ValueError):
    """A half year that is not ``YYYY-H1`` or ``YYYY-H2``."""


def half_bounds(half: str, zone: str) -> tuple[datetime, datetime]:
    """``YYYY-H1`` (1 January – 1 July) or ``YYYY-H2`` (1 July – 1 January) in ``zone`` → its
    [start, end) in UTC."""
    match = HALF.match(half) if isinstance(half, str) else None
    if match is None or not 1970 <= int(match.group(1)) <= 9998:
        raise BadHalf("half must be YYYY-H1 or YYYY-H2")
    year, second = int(match.group(1)), match.group(2) == "2"
    try:
        local = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise BadHalf(f"unknown time zone {zone!r}") from exc
    start = datetime(year, 7 if second else 1, 1, tzinfo=local)
    end = datetime(year + 1, 1, 1, tzinfo=local) if second else datetime(year, 7, 1, tzinfo=local)
    return start.astimezone(UTC), end.astimezone(UTC)


def log_time(moment: datetime) -> str:
    """``moment`` as the log writes entry times (UTC, six fractional digits)."""
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


def months_to_redeem(liability: int, spent: int) -> str | None:
    """Stored minutes over the half's average monthly spending, one decimal rounded half up;
    None when nothing was spent."""
    if spent <= 0:
        return None
    tenths = (liability * HALF_MONTHS * 10 * 2 + spent) // (2 * spent)
    return f"{tenths // 10}.{tenths % 10}"


@dataclass
class _Lots:
    """One member's stored minutes (member and hold account together) as dated lots."""

    lots: deque[list[Any]] = field(default_factory=deque)  # [time, minutes], oldest first
    debt: int = 0  # minutes debited beyond the lots (an overdraft), paid by the next credits

    def credit(self, time: str, minutes: int) -> None:
        if self.debt:
            paid = min(self.debt, minutes)
            self.debt -= paid
            minutes -= paid
        if minutes:
            self.lots.append([time, minutes])

    def debit(self, minutes: int) -> None:
        while minutes and self.lots:
            oldest = self.lots[0]
            used = min(oldest[1], minutes)
            oldest[1] -= used
            minutes -= used
            if not oldest[1]:
                self.lots.popleft()
        self.debt += minutes


class PublicFigures:
    """Feed the log's entries in order (``add``); ``figures`` gives the public part of the
    report of ``bank`` for the half [start, end) (UTC)."""

    def __init__(self, bank: str, start: datetime, end: datetime) -> None:
        self.bank = bank
        self.start, self.end = log_time(start), log_time(end)
        self.end_moment = end.astimezone(UTC)
        self.minutes = dict.fromkeys(MOVING_KINDS, 0)
        self.entries: dict[str, int] = {}
        self.services: dict[str, dict[str, int]] = {}
        self.orgs: dict[str, dict[str, int]] = {}
        self.pool_in = self.pool_out = self.pool_balance = 0
        self.owners: dict[str, _Lots] = {}
        self.prefix = f"{bank}:"
        self.pool = f"{bank}:pool"

    def add_all(self, entries: Iterable[Entry]) -> PublicFigures:
        for entry in entries:
            self.add(entry)
        return self

    def add(self, entry: Entry) -> None:
        request = entry.request
        postings = [(p.account, p.minutes) for p in request.postings]
        self.add_fields(entry.time, request.kind, postings, request.body)

    def add_leaf(self, leaf: bytes) -> None:
        """A leaf's bytes, read for the fields the figures need (checking a leaf in full is the
        audit's work: ``timebank audit verify``). ValueError if those fields are malformed."""
        at = leaf.rfind(b'"time":"')  # the entry's own: after it only "v" (keys are sorted)
        if at >= 0 and leaf[at + 8 : at + 35].decode("ascii", "replace") >= self.end:
            return  # after the half: no figure needs it
        raw = _loads(leaf)
        try:
            time, kind, body = raw["time"], raw["kind"], raw["body"]
            postings = [(p["account"], p["minutes"]) for p in raw["postings"]]
        except (KeyError, TypeError) as exc:
            raise ValueError(f"the entry lacks {exc}") from exc
        if not (isinstance(time, str) and isinstance(kind, str) and isinstance(body, dict)):
            raise ValueError("the entry's time, kind or body is malformed")
        if not all(isinstance(a, str) and type(m) is int for a, m in postings):
            raise ValueError("the entry's postings are malformed")
        self.add_fields(time, kind, postings, body)

    def add_fields(
        self,
        time: str,
        kind: str,
        postings: Sequence[tuple[str, int]],
        body: Mapping[str, Any],
    ) -> None:
        if time >= self.end:
            return
        if postings and not postings[0][0].startswith(self.prefix):
            return  # another bank's entry (one bank's postings never mix, ledger/postings.py)
        if not postings:
            bank = body.get("bank")
            if kind != "registration" and self.start <= time and bank in (None, self.bank):
                self.entries[kind] = self.entries.get(kind, 0) + 1
            return
        in_half = self.start <= time
        if in_half:
            moved = sum(m for _, m in postings if m > 0)
            self.minutes[kind] = self.minutes.get(kind, 0) + moved
            self.entries[kind] = self.entries.get(kind, 0) + 1
            if kind == "deposit":
                self._deposit(body, moved)
        own_move = kind in ("reserve", "release")
        skip = len(self.prefix)
        for account, minutes in postings:
            if account == self.pool:
                self.pool_balance += minutes
                if in_half:
                    if minutes > 0:
                        self.pool_in += minutes
                    else:
                        self.pool_out -= minutes
                continue
            if own_move:
                continue  # between a member and their own hold: the minutes stay stored
            role, _, opaque = account[skip:].partition(":")
            if role in ("member", "hold"):
                self._held(opaque, time, minutes)

    def _held(self, owner: str, time: str, minutes: int) -> None:
        """A posting on ``owner``'s member or hold account (not between the two)."""
        lots = self.owners.get(owner)
        if lots is None:
            lots = self.owners[owner] = _Lots()
        if minutes > 0:
            lots.credit(time, minutes)
        else:
            lots.debit(-minutes)

    def _deposit(self, body: Mapping[str, Any], credited: int) -> None:
        served = body.get("minutes")
        served = served if type(served) is int else 0
        for key, book in ((body.get("service"), self.services), (body.get("org"), self.orgs)):
            # a JSON key of the document: printable ASCII, 1-64 characters (ledger/entry.py)
            name = key if isinstance(key, str) and ASCII_KEY.match(key) else UNNAMED
            row = book.get(name)
            if row is None:
                row = book[name] = {"deposits": 0, "served": 0, "deposited": 0}
            row["deposits"] += 1
            row["served"] += served
            row["deposited"] += credited

    def age_edges(self) -> list[tuple[str, str]]:
        """Bucket limits as log times, oldest first: a lot dated at or before ``edge`` is at
        least that old (the last, ``days_0_89``, is the half's end)."""
        return [
            (name, log_time(self.end_moment - timedelta(days=days)))
            for name, days in reversed(AGE_BUCKETS)
        ]

    def holdings(self) -> tuple[int, int, dict[str, int]]:
        """(liability, members holding, minutes by age) from the lots."""
        ages = dict.fromkeys((name for name, _ in AGE_BUCKETS), 0)
        edges = self.age_edges()
        liability = holders = 0
        for lots in self.owners.values():
            stored = sum(minutes for _, minutes in lots.lots) - lots.debt
            liability += stored
            holders += stored > 0
            for time, minutes in lots.lots:
                for name, edge in edges:
                    if time <= edge:
                        ages[name] += minutes
                        break
        return liability, holders, ages

    def figures(self) -> dict[str, Any]:
        liability, holders, ages = self.holdings()
        spent = self.minutes["redemption"] + self.minutes["exchange"] - self.minutes["refund"]
        return {
            "minutes_by_kind": dict(sorted(self.minutes.items())),
            "entries_by_kind": dict(sorted(self.entries.items())),
            "services": dict(sorted(self.services.items())),
            "organisations": dict(sorted(self.orgs.items())),
            "liability": {
                "minutes": liability,
                "members_holding": holders,
                "age": ages,
                "spent": spent,
                "spent_per_month": spent // HALF_MONTHS,
                "months_to_redeem": months_to_redeem(liability, spent),
            },
            "pool": {"in": self.pool_in, "out": self.pool_out, "balance": self.pool_balance},
        }


def flatten(figures: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``: each figure by its dotted name."""
    if isinstance(figures, dict):
        flat: dict[str, Any] = {}
        for key, value in figures.items():
            flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: figures}
