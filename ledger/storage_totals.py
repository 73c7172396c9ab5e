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

from sqlalchemy import Connection, bindparam, text

# The deposits' body fields grouped by (is it a string, its value) for service and org, with
# the count, the served minutes (integers only) and the minutes credited.
_DEPOSITS_SQLITE = """
SELECT json_type(b, '$.service') = 'text', json_extract(b, '$.service'),
       json_type(b, '$.org') = 'text', json_extract(b, '$.org'), count(*),
       sum(CASE WHEN json_type(b, '$.minutes') = 'integer'
                THEN json_extract(b, '$.minutes') ELSE 0 END),
       sum(moved)
FROM (SELECT json_extract(CAST(e.leaf AS TEXT), '$.body') AS b, x.moved AS moved
      FROM log_entries e JOIN ({moved}) x ON x.seq = e.seq
      WHERE e.kind = 'deposit' AND e.seq >= :lo AND e.seq < :hi) d
GROUP BY 1, 2, 3, 4
"""
_DEPOSITS_PG = """
SELECT jsonb_typeof(b -> 'service') = 'string', b ->> 'service',
       jsonb_typeof(b -> 'org') = 'string', b ->> 'org', count(*),
       sum(CASE WHEN jsonb_typeof(b -> 'minutes') = 'number'
                THEN (b ->> 'minutes')::numeric ELSE 0 END),
       sum(moved)
FROM (SELECT (convert_from(e.leaf, 'UTF8')::jsonb) -> 'body' AS b, x.moved AS moved
      FROM log_entries e JOIN ({moved}) x ON x.seq = e.seq
      WHERE e.kind = 'deposit' AND e.seq >= :lo AND e.seq < :hi) d
GROUP BY 1, 2, 3, 4
"""
# Minutes credited per entry of the bank in [lo, hi) (every entry that moves minutes has a
# positive posting, and all postings of an entry belong to one bank).
_MOVED = """
SELECT seq, sum(minutes) AS moved FROM log_postings
WHERE seq >= :lo AND seq < :hi AND minutes > 0 AND account > :bank_lo AND account < :bank_hi
GROUP BY seq
"""
_KINDS = """
SELECT e.kind, count(*), sum(x.moved) FROM ({moved}) x JOIN log_entries e ON e.seq = x.seq
GROUP BY e.kind
"""
_BARE = """
SELECT e.leaf FROM log_entries e
WHERE e.seq >= :lo AND e.seq < :hi AND e.kind NOT IN :skip
  AND NOT EXISTS (SELECT 1 FROM log_postings p WHERE p.seq = e.seq)
ORDER BY e.seq
"""
_POOL = """
SELECT coalesce(sum(CASE WHEN seq >= :lo AND minutes > 0 THEN minutes ELSE 0 END), 0),
       coalesce(sum(CASE WHEN seq >= :lo AND minutes < 0 THEN -minutes ELSE 0 END), 0),
       coalesce(sum(minutes), 0)
FROM log_postings WHERE account = :pool AND seq < :hi
"""
# Per member or hold account and age band: the minutes credited and the net minutes, leaving
# out the kinds that move minutes between a member and their own hold.
_HOLDINGS = """
SELECT p.account, {band} AS band, sum(CASE WHEN p.minutes > 0 THEN p.minutes ELSE 0 END),
       sum(p.minutes)
FROM log_postings p JOIN log_entries e ON e.seq = p.seq
WHERE p.seq < :hi AND e.kind NOT IN :own
  AND ((p.account > :member_lo AND p.account < :member_hi)
       OR (p.account > :hold_lo AND p.account < :hold_hi))
GROUP BY p.account, band
"""


@dataclass
class BankTotals:
    """One bank's sums over the log: ``kinds`` (kind → entries, minutes credited) and
    ``deposits`` in [lo, hi); ``bare``: leaves in [lo, hi) without postings; ``pool`` (in, out
    in [lo, hi), balance below hi); ``holdings``: account → band → (credited, net) below hi."""

    kinds: dict[str, tuple[int, int]] = field(default_factory=dict)
    deposits: list[tuple[bool, Any, bool, Any, int, int, int]] = field(default_factory=list)
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
    skip_bare: Sequence[str],
    own_moves: Sequence[str],
) -> BankTotals:
    """The sums of ``bank``; ``bands``: ascending seqs, a posting's band is the number of them
    at or below its seq."""
    # Account ids are ``<bank>:<role>:…`` with no ':' in the bank: a range on the primary key.
    ranges = {
        "bank_lo": f"{bank}:",
        "bank_hi": f"{bank};",
        "member_lo": f"{bank}:member:",
        "member_hi": f"{bank}:member;",
        "hold_lo": f"{bank}:hold:",
        "hold_hi": f"{bank}:hold;",
    }
    params: dict[str, Any] = {"lo": lo, "hi": hi, "pool": f"{bank}:pool", **ranges}
    totals = BankTotals()
    run = conn.execute
    moved = _MOVED
    for kind, count, minutes in run(text(_KINDS.format(moved=moved)), params):
        totals.kinds[str(kind)] = (int(count), int(minutes))
    deposits = (_DEPOSITS_SQLITE if is_sqlite else _DEPOSITS_PG).format(moved=moved)
    for s_text, service, o_text, org, count, served, credited in run(text(deposits), params):
        totals.deposits.append(
            (bool(s_text), service, bool(o_text), org, int(count), int(served), int(credited))
        )
    bare = text(_BARE).bindparams(bindparam("skip", expanding=True))
    totals.bare = [bytes(r[0]) for r in run(bare, {**params, "skip": list(skip_bare)})]
    pool_in, pool_out, balance = run(text(_POOL), params).one()
    totals.pool = (int(pool_in), int(pool_out), int(balance))
    band = "CASE " + " ".join(f"WHEN p.seq < {int(b)} THEN {i}" for i, b in enumerate(bands))
    band += f" ELSE {len(bands)} END"
    holdings = text(_HOLDINGS.format(band=band)).bindparams(bindparam("own", expanding=True))
    for account, index, credited, net in run(holdings, {**params, "own": list(own_moves)}):
        totals.holdings.setdefault(str(account), {})[int(index)] = (int(credited), int(net))
    return totals
