"""Demo data through the real append path: what ``make run`` shows on first start."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator

from ledger.entry import EntryRequest
from ledger.kinds import Deposit, Donation, Gift, Grant, Redemption, Reversal

DEMO_BANK = "demo"
# The demo bank's catalogue: (code, Chinese name, English name, category, weight per mille)
CATALOGUE = (
    ("meal", "助餐", "Meal help", "meals", 1000),
    ("clean", "助洁", "Cleaning", "cleaning", 1000),
    ("escort", "助行", "Walking escort", "escort", 1100),
    ("bath", "助浴", "Bathing", "bathing", 1300),
    ("medical", "助医", "Medical escort", "medical_escort", 1200),
    ("rehab", "康复", "Rehabilitation", "rehabilitation", 1400),
    ("nursing", "护理", "Nursing", "nursing", 1500),
    ("company", "探访关爱", "Visits and company", "company", 1000),
    ("errand", "代购代办", "Errands", "errands", 1000),
    ("emergency", "紧急救援", "Emergency help", "emergency", 2000),
)

# Pseudonyms of who gave (four, as many as the relations the demo once drew from, so the demo's
# random sequence, and every balance it leads to, stays the same).
DEMO_GIVERS = ("p:demo-giver-1", "p:demo-giver-2", "p:demo-giver-3", "p:demo-giver-4")
SERVICE_WEIGHTS = tuple((code, weight) for code, _, _, _, weight in CATALOGUE)
# Past grants never take the pool below this, so that a bank administrator trying the demo
# (docs/workflow.md, section 8) has pool minutes to grant.
POOL_RESERVE = 600


def demo_requests(
    count: int,
    members: list[str],
    first_seq: int = 0,
    seed: int = 2026,
    org: str = "demo-org",
    verifier: Callable[[str], str] = lambda _: "p:demo-staff",
    confirmer: Callable[[str], str] = lambda _: "p:demo-confirmer",
) -> Iterator[EntryRequest]:
    """``count`` entries of mixed kinds over ``members``' accounts, every balance rule kept.

    ``first_seq`` is the seq the first of them will get (the reversal names an earlier one).
    ``verifier`` and ``confirmer`` name the staff in a deposit of that entry id as the public
    log names people: a pseudonym per entry (``accounts.protection.Protector.pseudonym``).
    """
    rng = random.Random(seed)  # noqa: S311 - reproducible demo data, not secrets
    balances = dict.fromkeys(members, 0)
    pool_balance = 0
    deposits: list[tuple[int, Deposit]] = []
    reversed_one = False
    for n in range(count):
        roll = rng.random()
        rich = [m for m in rng.sample(members, 8) if balances[m] >= 60]
        if n > 50 and not reversed_one and deposits:
            position, first = deposits[0]
            assert first.volunteer is not None
            if balances[first.volunteer] >= first.amount:
                reversed_one = True
                balances[first.volunteer] -= first.amount
                yield Reversal.of(
                    first.to_request(),
                    first_seq + position,
                    id=f"demo-{n}",
                    reason="duplicate",
                    approved_by="demo:admin:2",
                ).to_request()
                continue
        if roll < 0.6 or not rich:
            member = rng.choice(members)
            service, weight = rng.choice(SERVICE_WEIGHTS)
            minutes = rng.choice((30, 45, 60, 90, 120, 180))
            deposit = Deposit(
                id=f"demo-{n}",
                volunteer=member,
                bank=DEMO_BANK,
                record=hashlib.sha256(f"demo-record-{n}".encode()).hexdigest(),
                service=service,
                service_version=1,
                minutes=minutes,
                weight=weight,
                policy=0,
                org=org,
                confirmed_by=confirmer(f"demo-{n}"),
                confirmed_as="staff_for_elder",
                verified_by=verifier(f"demo-{n}"),
            )
            balances[member] += deposit.amount
            deposits.append((n, deposit))
            yield deposit.to_request()
        elif roll < 0.72:
            giver = rich[0]
            receiver = rng.choice(members)
            amount = rng.randint(15, min(balances[giver], 240))
            if receiver == giver:
                receiver = members[(members.index(giver) + 1) % len(members)]
            balances[giver] -= amount
            balances[receiver] += amount
            yield Gift(f"demo-{n}", giver, receiver, amount, rng.choice(DEMO_GIVERS)).to_request()
        elif roll < 0.82:
            donor = rich[0]
            amount = rng.randint(15, min(balances[donor], 120))
            balances[donor] -= amount
            pool_balance += amount
            yield Donation(f"demo-{n}", donor, amount).to_request()
        elif roll < 0.88 and pool_balance >= POOL_RESERVE + 60:
            elder = rng.choice(members)
            amount = rng.randint(30, min(pool_balance - POOL_RESERVE, 240))
            pool_balance -= amount
            balances[elder] += amount
            yield Grant(f"demo-{n}", elder, amount, "regular_support", "p:demo-admin").to_request()
        else:
            elder = rich[0]
            service, _ = rng.choice(SERVICE_WEIGHTS)
            amount = rng.randint(30, min(balances[elder], 180))
            balances[elder] -= amount
            yield Redemption(f"demo-{n}", elder, amount, service).to_request()
