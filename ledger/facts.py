"""The facts of an entry that the statistics sum (``log_facts``, one row per entry, written in
the append's own transaction): its kind, the bank its postings belong to, the minutes it
credits, and for a deposit the ``service`` and ``org`` its body names and the ``minutes`` it
says were served. The half-yearly report sums these narrow rows instead of reading every leaf
(ledger/storage_totals.py). A body's value the report cannot name (not a string of 1-64
printable ASCII characters, the document's keys) or count (not an integer) is stored as NULL,
which the report shows as ``(none)`` and 0 as the leaf-by-leaf reference (reports/public.py)
does; so odd bodies (a NUL, 护理, a number) are never refused at append.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ledger.entry import ASCII_KEY, EntryRequest

FACT_COLUMNS = ("seq", "kind", "bank", "credited", "service", "org", "served")


def facts(
    seq: int, kind: str, postings: Sequence[tuple[str, int]], body: Mapping[str, Any]
) -> dict[str, Any]:
    """The ``log_facts`` row of entry ``seq``. ``bank``: the part before the first ':' of the
    first posting's account (one entry's postings never mix banks), None without postings;
    ``service``, ``org``: the deposit body's value when it is a name (``ASCII_KEY``), else None;
    ``served``: the deposit body's ``minutes`` when it is an integer (not a boolean)."""
    return dict(zip(FACT_COLUMNS, fact_values(seq, kind, postings, body), strict=True))


def fact_values(
    seq: int, kind: str, postings: Sequence[tuple[str, int]], body: Mapping[str, Any]
) -> tuple[Any, ...]:
    """``facts`` in ``FACT_COLUMNS`` order (also what ``timebank verify`` expects the row to
    hold, for every entry: written plainly, it is a part of verify's time per leaf)."""
    account = postings[0][0] if postings else ""
    colon = account.find(":")
    bank = account[:colon] if colon >= 0 else None
    credited = 0
    for _, minutes in postings:
        if minutes > 0:
            credited += minutes
    if kind != "deposit":
        return (seq, kind, bank, credited, None, None, None)
    service, org, served = body.get("service"), body.get("org"), body.get("minutes")
    named = ASCII_KEY.match
    return (
        seq,
        kind,
        bank,
        credited,
        service if isinstance(service, str) and named(service) else None,
        org if isinstance(org, str) and named(org) else None,
        served if type(served) is int else None,
    )


def fact_row(seq: int, request: EntryRequest) -> tuple[Any, ...]:
    """``facts`` of an entry being appended, as a row in ``FACT_COLUMNS`` order."""
    postings = [(p.account, p.minutes) for p in request.postings]
    return fact_values(seq, request.kind, postings, request.body)


def facts_of_leaf(seq: int, leaf: bytes) -> dict[str, Any]:
    """The row of a stored leaf (a migration's backfill): the same as at its append."""
    raw = json.loads(leaf)
    postings = [(str(p["account"]), int(p["minutes"])) for p in raw.get("postings", ())]
    body = raw.get("body")
    return facts(seq, str(raw["kind"]), postings, body if isinstance(body, dict) else {})
