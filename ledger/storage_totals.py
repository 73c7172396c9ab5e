"""Sums of one bank's postings over ranges of the log, in SQL (SQLite or PostgreSQL): what the
half-yearly report needs without parsing every leaf in Python (reports/summed.py turns them
into figures; the leaf-by-leaf computation in reports/public.py is the reference).

Ranges are given as seqs: the log's entry times never go backwards (ledger.sequencer), so a
time bound is the first seq at or after it, found by bisection on the primary key.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, String, bindparam, text

# One statement, one pass over each table: ``e`` reads every entry once (a deposit's body
# fields as one JSON text, the whole leaf of an entry without postings), ``m`` the minutes
# credited per entry of the bank. Part 0: entries in [lo, hi) by kind and deposit fields (or
# leaf); part 2: per member or hold account and age band, the minutes credited and the net
# minutes below hi; part 1: the same for the moves between a member and their own hold, which
# the caller takes off part 2.
_TOTALS = """
WITH e AS MATERIALIZED (
  SELECT seq, kind,
         CASE WHEN seq < :lo THEN NULL
              WHEN kind = 'deposit' THEN {deposit_fields}
              WHEN kind IN :bare THEN {leaf_text} END AS k
  FROM log_entries WHERE seq < :hi),
m AS MATERIALIZED (
  SELECT seq, sum(minutes) AS moved FROM log_postings {scan}
  WHERE seq >= :lo AND seq < :hi AND minutes > 0 AND account > :bank_lo AND account < :bank_hi
  GROUP BY seq)
SELECT 0 AS part, e.kind AS a, e.k AS b, CAST(NULL AS INTEGER) AS band, count(*) AS c,
       sum(m.moved) AS d
FROM e LEFT JOIN m ON m.seq = e.seq
WHERE e.seq >= :lo AND (m.seq IS NOT NULL OR e.kind IN :bare)
GROUP BY e.kind, e.k
UNION ALL
SELECT 1, p.account, NULL, {band}, sum(CASE WHEN p.minutes > 0 THEN p.minutes ELSE 0 END),
       sum(p.minutes)
FROM log_postings p
WHERE p.seq IN (SELECT seq FROM e WHERE kind IN :own) AND {held}
GROUP BY p.account, {band}
UNION ALL
SELECT 2, p.account, NULL, {band}, sum(CASE WHEN p.minutes > 0 THEN p.minutes ELSE 0 END),
       sum(p.minutes)
FROM log_postings p {scan}
WHERE p.seq < :hi AND {held}
GROUP BY p.account, {band}
"""
_HELD = (
    "((p.account > :member_lo AND p.account < :member_hi)"
    " OR (p.account > :hold_lo AND p.account < :hold_hi))"
)
_SQLITE = {
    "deposit_fields": "json_extract(CAST(leaf AS TEXT), '$.body.service', '$.body.org',"
    " '$.body.minutes')",
    "leaf_text": "CAST(leaf AS TEXT)",
    "scan": "NOT INDEXED",  # a scan of the small rows beats the index and a lookup per row
}
_POSTGRESQL = {
    "deposit_fields": "(SELECT json_build_array(r.service, r.org, r.minutes)::text"
    " FROM json_to_record(convert_from(leaf, 'UTF8')::json -> 'body')"
    " AS r(service json, org json, minutes json))",
    "leaf_text": "convert_from(leaf, 'UTF8')",
    "scan": "",
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
    ``deposits`` (body's service, org, minutes (None when absent) → count, minutes credited)
    in [lo, hi); ``bare``: leaves in [lo, hi) of the kinds asked for; ``pool`` (in, out
    in [lo, hi), balance below hi); ``holdings``: account → band → (credited, net) below hi."""

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
        "bank_lo": f"{bank}:",
        "bank_hi": f"{bank};",
        "member_lo": f"{bank}:member:",
        "member_hi": f"{bank}:member;",
        "hold_lo": f"{bank}:hold:",
        "hold_hi": f"{bank}:hold;",
        "bare": list(bare_kinds) or [""],
        "own": list(own_moves) or [""],
    }
    band = " ".join(f"WHEN p.seq < {int(b)} THEN {i}" for i, b in enumerate(bands))
    band = f"CASE {band} ELSE {len(bands)} END" if bands else "0"
    sql = _TOTALS.format(band=band, held=_HELD, **(_SQLITE if is_sqlite else _POSTGRESQL))
    statement = text(sql).bindparams(
        bindparam("bare", expanding=True, type_=String),
        bindparam("own", expanding=True, type_=String),
    )
    if not is_sqlite:
        # Hash the million-row aggregates in memory, not in sorted runs on disk; JIT compiling
        # this one-off statement costs more than it saves.
        conn.execute(text("SET LOCAL work_mem = '64MB'"))
        conn.execute(text("SET LOCAL jit = off"))
    totals = BankTotals()
    own: dict[tuple[str, int], tuple[int, int]] = {}  # (account, band) → credited, net
    all_held: dict[tuple[str, int], tuple[int, int]] = {}
    for part, a, b, index, c, d in conn.execute(statement, params):
        if part == 0 and a in bare_kinds:
            totals.bare.append(str(b).encode())
        elif part == 0:
            count, moved = totals.kinds.get(a, (0, 0))
            totals.kinds[a] = (count + int(c), moved + int(d))
            if a == "deposit":
                service, org, minutes = json.loads(b)
                totals.deposits.append((service, org, minutes, int(c), int(d)))
        else:
            held = own if part == 1 else all_held
            held[(a, int(index))] = (int(c), int(d))
    for (account, index), (credited, net) in all_held.items():
        off_credited, off_net = own.get((account, index), (0, 0))
        totals.holdings.setdefault(account, {})[index] = (credited - off_credited, net - off_net)
    pool_in, pool_out, balance = conn.execute(text(_POOL), params).one()
    totals.pool = (int(pool_in), int(pool_out), int(balance))
    return totals
