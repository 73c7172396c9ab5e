"""Live visit coverage of a large bank, as JSON on stdout.

Builds a bank on a fresh SQLite file (and PostgreSQL with ``--postgres URL``): ``--orgs``
organisations, ``--elders`` active elders each with a priority flag set before the month, and
a verified visit this month for ``--visited`` of them (rows written in bulk, as a year of the
workflow would leave them). Then times ``VisitCoverage.coverage`` — what ``GET
/v1/stats/coverage`` runs — for an auditor (counts), a bank admin (counts and the list of the
elders not yet visited, masked) and one organisation's staff, over ``--samples`` calls each.

Baseline in the same run, on the same database: the same two counts per organisation by one
hand-written SQL statement through the bare driver, so ``over_raw`` says what the service's
rules and objects cost. Target (issue 14): the live coverage of 10^5 elders in under 1 s.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text

from accounts.model import Grant, Principal, Role
from accounts.protection import Protector
from accounts.service import AccountsService
from accounts.storage import AccountsStore, member_flags, member_personal, members
from care.service import CareService
from care.storage import service_records
from database import Database
from migrations.runner import upgrade
from tests.fake_ledger import FakeLedger

RAW = """
SELECT m.org_id, count(DISTINCT m.id), count(DISTINCT r.elder_id)
FROM members m
JOIN member_flags f ON f.member_id = m.id AND f.set_at < :end
  AND (f.cleared_at IS NULL OR f.cleared_at >= :start)
LEFT JOIN service_records r ON r.elder_id = m.id AND r.status = 'verified'
  AND r.check_in >= :start AND r.check_in < :end
WHERE m.bank_id = 'bench' AND m.is_elder AND m.status = 'active'
GROUP BY m.org_id
"""


def timed(call: Callable[[], Any], samples: int) -> dict[str, float]:
    call()  # warm the caches once, untimed
    seconds = []
    for _ in range(samples):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return {
        "median_s": round(statistics.median(seconds), 4),
        "max_s": round(max(seconds), 4),
    }


def build(url: str, orgs: int, elders: int, visited: int) -> tuple[Database, AccountsService]:
    upgrade(url)
    database = Database(url)
    store = AccountsStore(database)
    accounts = AccountsService(store, Protector(secrets.token_bytes(32)), FakeLedger())
    care = CareService(store, accounts, accounts.ledger)
    accounts.create_bank("bench", "Bench bank")
    admin = accounts.create_user("bench", "admin", Role.BANK_ADMIN, None, "x" * 20).user
    principal = accounts.principal_for_user(admin.id)
    org_ids = [
        accounts.create_org(principal, f"中心{n}", "community_centre").id for n in range(orgs)
    ]
    kind = care.upsert_service_type(principal, "company", "探访关爱", "Company", "company", 1000)
    now = datetime.now(UTC)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    earlier = month_start - timedelta(days=40)
    volunteer = "v" * 16
    with database.writer.begin() as conn:
        conn.execute(
            insert(members),
            [
                {
                    "id": volunteer,
                    "bank_id": "bench",
                    "ledger_account": "bench:member:volunteer",
                    "is_volunteer": True,
                    "is_elder": False,
                    "status": "active",
                    "org_id": org_ids[0],
                    "assisted": True,
                    "created_at": earlier,
                }
            ],
        )
        for chunk in range(0, elders, 10_000):
            ids = [f"e{n:015d}" for n in range(chunk, min(chunk + 10_000, elders))]
            conn.execute(
                insert(members),
                [
                    {
                        "id": i,
                        "bank_id": "bench",
                        "ledger_account": f"bench:member:{i}",
                        "is_volunteer": False,
                        "is_elder": True,
                        "status": "active",
                        "org_id": org_ids[n % orgs],
                        "assisted": True,
                        "approved_at": earlier,
                        "created_at": earlier,
                    }
                    for n, i in enumerate(ids, start=chunk)
                ],
            )
            conn.execute(
                insert(member_personal), [{"member_id": i, "name": f"长者{i[-5:]}"} for i in ids]
            )
            conn.execute(
                insert(member_flags),
                [
                    {
                        "id": f"f{i[1:]}",
                        "member_id": i,
                        "flag": "living_alone",
                        "set_by": admin.id,
                        "set_at": earlier,
                    }
                    for i in ids
                ],
            )
            visits = [
                {
                    "id": f"r{i[1:]}",
                    "bank_id": "bench",
                    "volunteer_id": volunteer,
                    "elder_id": i,
                    "org_id": org_ids[n % orgs],
                    "service_type_id": kind.id,
                    "check_in": month_start + timedelta(minutes=n % 600),
                    "check_out": month_start + timedelta(minutes=n % 600 + 60),
                    "minutes": 60,
                    "digest": "0" * 64,
                    "status": "verified",
                    "created_by": admin.id,
                    "created_at": month_start,
                }
                for n, i in enumerate(ids, start=chunk)
                if n < visited
            ]
            if visits:
                conn.execute(insert(service_records), visits)
    return database, accounts


def measure(url: str, args: argparse.Namespace) -> dict[str, Any]:
    from reports.coverage import VisitCoverage, month_bounds

    started = time.perf_counter()
    database, accounts = build(url, args.orgs, args.elders, args.visited)
    built = time.perf_counter() - started
    care = CareService(accounts.store, accounts, accounts.ledger)
    coverage = VisitCoverage(accounts.store, accounts, care.policy)
    bank_admin = Principal(None, "bench", (Grant(Role.BANK_ADMIN, "bench"),))
    auditor = Principal(None, "bench", (Grant(Role.AUDITOR, "bench"),))
    first_org = coverage.coverage(auditor, None, None).organisations[0].org_id
    staff = Principal(None, "bench", (Grant(Role.ORG_STAFF, "bench", first_org),))
    result = coverage.coverage(bank_admin, None, None)
    assert (result.total.priority_elders, result.total.visited) == (args.elders, args.visited)
    start, end = month_bounds(result.month, result.timezone)

    def raw() -> None:
        with database.writer.connect() as conn:
            rows = conn.execute(text(RAW), {"start": start, "end": end}).all()
        assert sum(r[2] for r in rows) == args.visited

    baseline = timed(raw, args.samples)
    figures: dict[str, Any] = {"build_s": round(built, 1), "raw_sql": baseline}
    for name, who in (("auditor", auditor), ("bank_admin", bank_admin), ("org_staff", staff)):
        figures[name] = timed(lambda who=who: coverage.coverage(who, None, None), args.samples)
        figures[name]["over_raw"] = round(figures[name]["median_s"] / baseline["median_s"], 1)
    figures["unvisited_listed_for_bank_admin"] = len(result.unvisited)
    database.dispose()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elders", type=int, default=100_000)
    parser.add_argument("--visited", type=int, default=90_000)
    parser.add_argument("--orgs", type=int, default=50)
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--postgres", help="also on this PostgreSQL database URL (an empty one)")
    args = parser.parse_args()
    report: dict[str, Any] = {
        "elders": args.elders,
        "visited": args.visited,
        "organisations": args.orgs,
    }
    with tempfile.TemporaryDirectory() as tmp:
        print("sqlite…", file=sys.stderr)
        report["sqlite"] = measure(f"sqlite:///{Path(tmp) / 'coverage.db'}", args)
    if args.postgres:
        print("postgresql…", file=sys.stderr)
        report["postgresql"] = measure(args.postgres, args)
    report["targets"] = {
        f"{db}.{who}": {
            "target_s": 1.0,
            "value_s": report[db][who]["median_s"],
            "met": report[db][who]["median_s"] < 1.0,
        }
        for db in ("sqlite", "postgresql")
        if db in report
        for who in ("auditor", "bank_admin")
    }
    json.dump(report, sys.stdout, indent=1, ensure_ascii=False)
    print()


if __name__ == "__main__":
    main()
