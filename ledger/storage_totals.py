"""Sums of one bank's postings over ranges of the log, in SQL (SQLite or PostgreSQL): what the
half-yearly report needs without parsing every leaf in Python (reports/summed.py turns them
into figures; the leaf-by-leaf computation in reports/public.py is the reference).

Ranges are given as seqs: the log's entry times never go backwards (ledger.sequencer), so a
time bound is the first seq at or after it, found by bisection on the primary key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, String, bindparam, insert, text

from ledger.facts import facts_of_leaf
from ledger.storage import log_facts

# Part 0: the bank's entries in [lo, hi) by kind and, for deposits, service, org and minutes
# served (``log_facts``, narrow rows written with each entry: no leaf is read); part 2: per
# member or hold account and age band, the minutes credited and the net minutes below hi;
# part 1: the same for the moves between a member and their own hold, which the caller takes
# off part 2. Columns: part, account or kind, band, service, org, served, c, d.
_TOTALS = """
SELECT 0 AS part, kind AS a, CAST(NULL AS INTEGER) AS band, service, org, served,
       count(*) AS c, sum(credited) AS d
FROM log_facts
WHERE seq >= :lo AND seq < :hi AND bank = :bank AND kind NOT IN :bare
GROUP BY kind, service, org, served
UNION ALL
SELECT 1, p.account, {band}, NULL, NULL, NULL,
       sum(CASE WHEN p.minutes > 0 THEN p.minutes ELSE 0 END), sum(p.minutes)
FROM log_postings p
WHERE p.seq IN (SELECT seq FROM log_facts WHERE seq < :hi AND kind IN :own) AND {held}
GROUP BY p.account, {band}
UNION ALL
SELECT 2, p.account, {band}, NULL, NULL, NULL,
       sum(CASE WHEN p.minutes > 0 THEN p.minutes ELSE 0 END), sum(p.minutes)
FROM log_postings p {scan}
WHERE p.seq < :hi AND {held}
GROUP BY p.account, {band}
"""
# The leaves of the entries without postings whose body names their bank (policies, …).
_BARE = """
SELECT e.leaf FROM log_facts f JOIN log_entries e ON e.seq = f.seq
WHERE f.seq >= :lo AND f.seq < :hi AND f.kind IN :bare
ORDER BY f.seq
"""
_HELD = (
    "((p.account > :member_lo AND p.account < :member_hi)"
    " OR (p.account > :hold_lo AND p.account < :hold_hi))"
)
_SCAN = {
    True: "NOT INDEXED",  # SQLite: a scan of the small rows beats the index and a lookup per row
    False: "",
}
_POOL = """
SELECT coalesce(sum(CASE WHEN seq >= :lo AND minutes > 0 THEN minutes ELSE 0 END), 0),
       coalesce(sum(CASE WHEN seq >= :lo AND minutes < 0 THEN -minutes ELSE 0 END), 0),
       coalesce(sum(minutes), 0)
FROM log_postings WHERE account = :pool AND seq < :hi
"""


@dataclass
class BankTotals:
    """One bank's sums over the log: ``kinds`` (kind → entries, minutes credited) and
    ``deposits`` (service, org, minutes served as ``log_facts`` keeps them, None when the
    report cannot name or count them → count, minutes credited) in [lo, hi); ``bare``: leaves
    in [lo, hi) of the kinds asked for; ``pool`` (in, out in [lo, hi), balance below hi);
    ``holdings``: account → band → (credited, net) below hi."""

    kinds: dict[str, tuple[int, int]] = field(default_factory=dict)
    deposits: list[tuple[Any, Any, Any, int, int]] = field(default_factory=list)
    bare: list[bytes] = field(default_factory=list)
    pool: tuple[int, int, int] = (0, 0, 0)
    holdings: dict[str, dict[int, tuple[int, int]]] = field(default_factory=dict)


def first_seq(conn: Connection, time: str, size: int, after: bool) -> int:
    """The first seq below ``size`` whose time is at or after ``time`` (strictly after if
    ``after``), or ``size``: a bisection on the primary key, as times never go backwards."""
    query = text("SELECT time FROM log_entries WHERE seq = :seq")
    lo, hi = 0, size
    while lo < hi:
        mid = (lo + hi) // 2
        at = str(conn.execute(query, {"seq": mid}).scalar_one())
        if at > time or (at == time and not after):
            hi = mid
        else:
            lo = mid + 1
    return lo


def bank_totals(
    conn: Connection,
    is_sqlite: bool,
    bank: str,
    lo: int,
    hi: int,
    bands: Sequence[int],
    bare_kinds: Sequence[str],
    own_moves: Sequence[str],
) -> BankTotals:
    """The sums of ``bank``; ``bands``: ascending seqs, a posting's band is the number of them
    at or below its seq; ``bare_kinds``: kinds without postings whose leaves are wanted."""
    # Account ids are ``<bank>:<role>:…`` with no ':' in the bank: a range on the primary key.
    params: dict[str, Any] = {
        "lo": lo,
        "hi": hi,
        "pool": f"{bank}:pool",
        "bank": bank,
        "member_lo": f"{bank}:member:",
        "member_hi": f"{bank}:member;",
        "hold_lo": f"{bank}:hold:",
        "hold_hi": f"{bank}:hold;",
        "bare": list(bare_kinds) or [""],
        "own": list(own_moves) or [""],
    }
    band = " ".join(f"WHEN p.seq < {int(b)} THEN {i}" for i, b in enumerate(bands))
    band = f"CASE {band} ELSE {len(bands)} END" if bands else "0"
    expanding = (
        bindparam("bare", expanding=True, type_=String),
        bindparam("own", expanding=True, type_=String),
    )
    statement = text(_TOTALS.format(band=band, held=_HELD, scan=_SCAN[is_sqlite]))
    if not is_sqlite:
        # Hash the million-row aggregates in memory, not in sorted runs on disk; JIT compiling
        # this one-off statement costs more than it saves.
        conn.execute(text("SET LOCAL work_mem = '64MB'"))
        conn.execute(text("SET LOCAL jit = off"))
    totals = BankTotals()
    own: dict[tuple[str, int], tuple[int, int]] = {}  # (account, band) → credited, net
    all_held: dict[tuple[str, int], tuple[int, int]] = {}
    for part, a, index, service, org, served, c, d in conn.execute(
        statement.bindparams(*expanding), params
    ):
        if part == 0:
            count, moved = totals.kinds.get(a, (0, 0))
            totals.kinds[a] = (count + int(c), moved + int(d))
            if a == "deposit":
                totals.deposits.append((service, org, served, int(c), int(d)))
        else:
            held = own if part == 1 else all_held
            held[(a, int(index))] = (int(c), int(d))
    for (account, index), (credited, net) in all_held.items():
        off_credited, off_net = own.get((account, index), (0, 0))
        totals.holdings.setdefault(account, {})[index] = (credited - off_credited, net - off_net)
    if bare_kinds:
        bare = text(_BARE).bindparams(expanding[0])
        totals.bare = [bytes(leaf) for (leaf,) in conn.execute(bare, params)]
    pool_in, pool_out, balance = conn.execute(text(_POOL), params).one()
    totals.pool = (int(pool_in), int(pool_out), int(balance))
    return totals


_MISSING = """
SELECT e.seq, e.leaf FROM log_entries e
WHERE e.seq >= :lo AND e.seq < :hi
  AND NOT EXISTS (SELECT 1 FROM log_facts f WHERE f.seq = e.seq)
ORDER BY e.seq
"""
FILL_PAGE = 5000


def facts_count(conn: Connection, size: int) -> int:
    """How many of the entries [0, size) have their ``log_facts`` row."""
    query = text("SELECT count(*) FROM log_facts WHERE seq < :size")
    return int(conn.execute(query, {"size": size}).scalar_one())


def fill_facts(conn: Connection, size: int | None = None) -> int:
    """Write the ``log_facts`` rows of the entries below ``size`` (all: None) that have none,
    from their leaves (ledger/facts.py, as the append writes them), a range of seqs at a time;
    how many were written. Migration 0023's backfill; the caller holds the writer's lock."""
    if size is None:
        size = int(
            conn.execute(text("SELECT coalesce(max(seq) + 1, 0) FROM log_entries")).scalar_one()
        )
    filled = 0
    for lo in range(0, size, FILL_PAGE):
        bounds = {"lo": lo, "hi": min(size, lo + FILL_PAGE)}
        rows = conn.execute(text(_MISSING), bounds).all()
        if rows:
            facts = [facts_of_leaf(seq, bytes(leaf)) for seq, leaf in rows]
            conn.execute(insert(log_facts), facts)
            filled += len(rows)
    return filled
