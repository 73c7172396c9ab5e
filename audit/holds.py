"""Holds, checked from the public log alone: every paid request is held once, then redeemed
or released (never both, never neither while it is finished), and every hold account holds
exactly what its open reserves say.

A ``reserve`` moves an elder's minutes to her hold account for one request (``body.request``);
a ``release`` gives them back, a ``redemption`` from the hold account pays for the service, a
``refund`` pays a redemption back when its record was rejected. When a bank administrator
reverses a redemption, the reversal puts the minutes back on hold and a ``release`` naming the
reversal (``body.reversal``) gives them back. The book below follows these, leaf by leaf, and at
the end compares each hold account's replayed balance with the minutes its open reserves hold.

What the log alone cannot tell is whether an open reserve's request is still open: a reserve
whose request was cancelled without its release looks like any open hold here. The operator's
``timebank verify`` compares the holds with the requests themselves (``care.holds``), and
``timebank admin repair`` releases such a hold.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ledger.postings import HOLD, parse_account

# (kind, reference, hold account, minutes): what a leaf did to a hold; the reference is the
# request (``body.request``) or, for a reversal's release, ``reversal:<id>``.
HoldEvent = tuple[str, str, str, int]
HOLD_KINDS = frozenset({"reserve", "release", "redemption", "refund", "reversal"})


def hold_event(
    kind: str, body: Mapping[str, Any], postings: Iterable[tuple[str, int]]
) -> HoldEvent | None:
    """What this entry did to a hold, or None if it touched none (plain tuples for workers)."""
    held = [
        (account, minutes) for account, minutes in postings if parse_account(account)[1] == HOLD
    ]
    request = body.get("request")
    reference = request if isinstance(request, str) and request else None
    if kind == "release" and reference is None and isinstance(body.get("reversal"), str):
        reference = f"reversal:{body['reversal']}"
    if kind == "refund":
        refunded = sum(m for account, m in postings if parse_account(account)[1] != "redemption")
        return ("refund", reference or "", "", refunded)
    if len(held) != 1:
        return None  # a redemption straight from the member's account, or no hold at all
    account, minutes = held[0]
    if kind == "reversal":
        reverses = body.get("reverses")
        return ("reversal", str(reverses) if isinstance(reverses, int) else "", account, minutes)
    return (kind, reference or "", account, minutes)


@dataclass
class HoldBook:
    """Open reserves and paid redemptions, carried from leaf to leaf (and between online runs)."""

    open: dict[str, tuple[str, int]] = field(default_factory=dict)  # request → (account, minutes)
    # request → (minutes redeemed and not paid back, the redemption's seq)
    paid: dict[str, tuple[int, int]] = field(default_factory=dict)
    reversed_holds: dict[str, int] = field(default_factory=dict)  # account → minutes put back

    def apply(self, seq: int, event: HoldEvent) -> list[str]:
        """The problems this leaf shows (empty when it keeps the book straight)."""
        kind, reference, account, minutes = event
        if kind == "reversal":
            if minutes > 0:  # a reversed redemption: minutes back on hold, until released
                self.reversed_holds[account] = self.reversed_holds.get(account, 0) + minutes
                for request, (_, redeemed_at) in list(self.paid.items()):
                    if str(redeemed_at) == reference:
                        del self.paid[request]  # nothing left to pay back
            return []
        if kind == "refund":
            redeemed, _ = self.paid.pop(reference, (None, 0))
            if redeemed is None:
                return [f"refund of request {reference!r}, which has no redemption to pay back"]
            if minutes != redeemed:
                return [
                    f"refund of request {reference!r} pays {minutes} minutes back, "
                    f"but {redeemed} were redeemed"
                ]
            return []
        if reference.startswith("reversal:") and kind == "release":
            back = self.reversed_holds.get(account, 0)
            if -minutes > back:
                return [
                    f"release after {reference} takes {-minutes} minutes from {account}, "
                    f"but the reversal put back {back}"
                ]
            self.reversed_holds[account] = back + minutes
            return []
        if not reference:
            return [
                f"{kind} moves minutes of hold account {account} without naming its "
                "request (body.request)"
            ]
        if kind == "reserve":
            if reference in self.open or reference in self.paid:
                return [
                    f"second reserve for request {reference!r} while it is held or paid "
                    "(one hold a request)"
                ]
            self.open[reference] = (account, minutes)
            return []
        held = self.open.pop(reference, None)
        if held is None:
            return [
                f"{kind} of request {reference!r}, which holds nothing (never reserved, "
                "or already redeemed or released)"
            ]
        if held[0] != account or held[1] != -minutes:
            self.open[reference] = held
            return [
                f"{kind} of request {reference!r} takes {-minutes} minutes from {account}, "
                f"but its reserve held {held[1]} in {held[0]}"
            ]
        if kind == "redemption":
            self.paid[reference] = (held[1], seq)
        return []

    def finish(self, balances: Mapping[str, int]) -> list[str]:
        """Each hold account against its open reserves (and reversals not yet released)."""
        expected: dict[str, int] = dict(self.reversed_holds)
        for account, minutes in self.open.values():
            expected[account] = expected.get(account, 0) + minutes
        problems = []
        accounts = {a for a in balances if parse_account(a)[1] == HOLD} | set(expected)
        for account in sorted(accounts):
            actual, wanted = balances.get(account, 0), expected.get(account, 0)
            if actual != wanted:
                problems.append(
                    f"hold account {account} holds {actual} minutes, but its open requests hold "
                    f"{wanted}: {actual - wanted} minutes are stuck"
                )
        return problems

    def to_json(self) -> dict[str, Any]:
        return {
            "open": {r: [a, m] for r, (a, m) in sorted(self.open.items())},
            "paid": {r: [m, s] for r, (m, s) in sorted(self.paid.items())},
            "reversed": dict(sorted(self.reversed_holds.items())),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HoldBook:
        return cls(
            {str(r): (str(a), int(m)) for r, (a, m) in data["open"].items()},
            {str(r): (int(m), int(s)) for r, (m, s) in data["paid"].items()},
            {str(a): int(m) for a, m in data["reversed"].items()},
        )
