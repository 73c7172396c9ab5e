"""Points and star levels, computed from the ledger, never stored by hand.

A member's **verified minutes** are the minutes of service verified into their account: every
``deposit`` (and ``correction``) credited to it, less any ``reversal`` of one. Gifts, grants,
donations and spending do not change them: they measure service given, not minutes held.
**Points** are those minutes as the bank's policy shows them (``points_unit``: minutes, hours,
or ``points_per_hour`` points per hour, rounded down); the **star level** is how many of the
policy's ``star_hours`` thresholds (一星 100 h … 五星 1,500 h by default) the verified hours
reach. The policy is a ``policy`` entry of the log, so anyone can redo the sum.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from care.model import Policy
from ledger import LedgerPort

SERVICE_KINDS = frozenset({"deposit", "correction"})
STAR_NAMES = ("一星", "二星", "三星", "四星", "五星")
PAGE = 200


@dataclass(frozen=True)
class Standing:
    verified_minutes: int
    points: Decimal  # verified minutes in the policy's unit
    points_unit: str
    star_level: int | None  # 0–5; None when the bank does not show star levels
    next_star_hours: int | None  # the hours of the next star, None at five stars or when off

    @property
    def star_name(self) -> str | None:
        return STAR_NAMES[self.star_level - 1] if self.star_level else None


def verified_minutes(ledger: LedgerPort, account: str) -> int:
    """Minutes of verified service credited to ``account``, read from its entries in the log."""
    total = 0
    before: int | None = None
    while True:
        entries = ledger.history([account], PAGE, before)
        for entry in entries:
            kind = entry.request.kind
            if kind == "reversal":
                undone = ledger.entry(int(entry.request.body.get("reverses", -1)))
                if undone is None or undone.request.kind not in SERVICE_KINDS:
                    continue
            elif kind not in SERVICE_KINDS:
                continue
            total += sum(p.minutes for p in entry.request.postings if p.account == account)
        if len(entries) < PAGE:
            return total
        before = entries[-1].seq


def standing(policy: Policy, minutes: int) -> Standing:
    """``minutes`` of verified service as ``policy`` shows them."""
    if policy.points_unit == "minutes":
        points = Decimal(minutes)
    elif policy.points_unit == "points":
        points = Decimal(minutes * policy.points_per_hour // 60)
    else:
        points = (Decimal(minutes) / 60).quantize(Decimal("0.01"), rounding=ROUND_DOWN)
    if not policy.star_levels:
        return Standing(minutes, points, policy.points_unit, None, None)
    thresholds = policy.star_thresholds
    level = sum(1 for hours in thresholds if minutes >= hours * 60)
    upcoming = thresholds[level] if level < len(thresholds) else None
    return Standing(minutes, points, policy.points_unit, level, upcoming)
