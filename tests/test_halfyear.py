"""Half-yearly reports (reports.public, reports.halfyear, reports.recompute): each public figure
on a hand-built log where the answer is known (half-year boundaries in Shanghai, a reversed
deposit, a hold, the pool), then a report published on a real log (SQLite and PostgreSQL)
served over HTTP, recomputed by the auditor, and the tampered variants failing by name."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from accounts.errors import Conflict, Forbidden, InvalidInput
from accounts.model import Role
from accounts.service import PersonalInput
from api.app import create_app
from audit.client import LogClient
from audit.report import AuditReport, Policy
from cli.main import main
from demo.bank import last_two_halves, seed_demo_bank
from demo.history import DemoClock
from ledger.config import Settings
from ledger.entry import ZERO_HASH, Entry, EntryRequest, Posting, canonical_json
from ledger.log import Log
from ledger.merkle import leaf_hash
from reports.charts import amount_bars
from reports.halfyear import HalfYearReports, iter_leaves
from reports.public import BadHalf, PublicFigures, half_bounds, log_time, months_to_redeem
from reports.recompute import verify_report
from reports.repo import insert_report
from tests.helpers import ISSUANCE, POOL, REDEMPTION, deposit, gift, member
from tests.test_witness import serve

ZONE = "Asia/Shanghai"
HOLD1 = "t:hold:m1"
CLEARING = "t:clearing:p1"


def test_half_bounds_are_the_banks_calendar() -> None:
    assert half_bounds("2026-H1", ZONE) == (
        datetime(2025, 12, 31, 16, tzinfo=UTC),
        datetime(2026, 6, 30, 16, tzinfo=UTC),
    )
    assert half_bounds("2026-H2", ZONE)[1] == datetime(2026, 12, 31, 16, tzinfo=UTC)
    assert half_bounds("2026-H2", "UTC") == (
        datetime(2026, 7, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    for bad in ("2026-H3", "2026-1", "2026H1", "", "26-H1"):
        with pytest.raises(BadHalf):
            half_bounds(bad, ZONE)


def test_months_to_redeem_is_one_decimal_rounded_half_up() -> None:
    assert months_to_redeem(160, 50) == "19.2"
    assert months_to_redeem(1, 120) == "0.1"  # 0.05 → 0.1
    assert months_to_redeem(0, 7) == "0.0"
    assert months_to_redeem(100, 0) is None


def _deposit(
    entry_id: str, postings: list[tuple[str, int]], service: str, org: str, minutes: int
) -> EntryRequest:
    body = {"service": service, "org": org, "minutes": minutes, "weight": 1000}
    return EntryRequest("deposit", entry_id, tuple(Posting(a, m) for a, m in postings), body)


def _move(kind: str, entry_id: str, postings: list[tuple[str, int]], **body: Any) -> EntryRequest:
    return EntryRequest(kind, entry_id, tuple(Posting(a, m) for a, m in postings), body)


# (time, request): the first just before the half (23:59:59 on 31 December in Shanghai), the
# last just after it (00:00 on 1 July in Shanghai).
HAND_BUILT = [
    (
        "2025-12-31T15:59:59.000000Z",
        _deposit("d0", [(ISSUANCE, -120), (member(1), 120)], "nursing", "o1", 120),
    ),
    (
        "2025-12-31T16:00:00.000000Z",
        _deposit("d1", [(ISSUANCE, -60), (member(1), 60)], "meal", "o2", 60),
    ),
    ("2025-12-31T16:00:00.000000Z", EntryRequest("policy", "policy:t:1", body={"timezone": ZONE})),
    ("2026-02-10T02:00:00.000000Z", gift("g2", member(1), member(2), 20)),
    (
        "2026-03-01T02:00:00.000000Z",
        _deposit("d3", [(ISSUANCE, -40), (member(2), 30), (POOL, 10)], "nursing", "o1", 40),
    ),
    (
        "2026-04-01T02:00:00.000000Z",
        _move(
            "reversal",
            "r4",
            [(ISSUANCE, 40), (member(2), -30), (POOL, -10)],
            reverses=4,
            reason="mistake",
        ),
    ),
    ("2026-04-02T02:00:00.000000Z", _move("donation", "n5", [(member(2), -5), (POOL, 5)])),
    (
        "2026-05-01T02:00:00.000000Z",
        _move("grant", "g6", [(POOL, -5), (member(3), 5)], reason="other"),
    ),
    ("2026-05-10T02:00:00.000000Z", _move("reserve", "s7", [(member(1), -40), (HOLD1, 40)])),
    (
        "2026-05-11T02:00:00.000000Z",
        _move("redemption", "x8", [(HOLD1, -40), (REDEMPTION, 40)], service="meal"),
    ),
    ("2026-06-01T02:00:00.000000Z", _move("exchange", "e9", [(member(1), -10), (CLEARING, 10)])),
    (
        "2026-06-30T15:59:59.999999Z",
        _deposit("d10", [(ISSUANCE, -30), (member(3), 30)], "nursing", "o1", 30),
    ),
    (
        "2026-06-30T16:00:00.000000Z",
        _deposit("d11", [(ISSUANCE, -100), (member(3), 100)], "nursing", "o1", 100),
    ),
    (
        "2026-03-01T02:00:00.000000Z",
        EntryRequest(
            "deposit", "other-bank", (Posting("u:issuance", -9), Posting("u:member:z", 9))
        ),
    ),
]


def hand_built_entries() -> list[Entry]:
    entries, prev = [], ZERO_HASH
    for seq, (time, request) in enumerate(HAND_BUILT):
        entries.append(Entry(seq, prev, time, request))
        prev = leaf_hash(entries[-1].leaf())
    return entries


def test_each_public_figure_on_a_hand_built_log() -> None:
    start, end = half_bounds("2026-H1", ZONE)
    figures = PublicFigures("t", start, end).add_all(hand_built_entries()).figures()
    # d0 is in the half before, d11 in the half after; the reversal of d3 counts under
    # reversal (its minutes moved), d3 stays a deposit; the other bank's entry counts nowhere.
    assert figures["minutes_by_kind"] == {
        "correction": 0,
        "deposit": 60 + 40 + 30,
        "donation": 5,
        "exchange": 10,
        "gift": 20,
        "grant": 5,
        "redemption": 40,
        "refund": 0,
        "release": 0,
        "reserve": 40,
        "reversal": 40,
    }
    assert figures["entries_by_kind"] == {
        "deposit": 3,
        "donation": 1,
        "exchange": 1,
        "gift": 1,
        "grant": 1,
        "policy": 1,
        "redemption": 1,
        "reserve": 1,
        "reversal": 1,
    }
    assert figures["services"] == {
        "meal": {"deposits": 1, "served": 60, "deposited": 60},
        "nursing": {"deposits": 2, "served": 70, "deposited": 70},
    }
    assert figures["organisations"] == {
        "o1": {"deposits": 2, "served": 70, "deposited": 70},
        "o2": {"deposits": 1, "served": 60, "deposited": 60},
    }
    # FIFO: m1 had 120 (d0) then 60 (d1); the gift (20), the redemption from its hold (40) and
    # the exchange (10) used up the oldest, so 50 of d0 and 60 of d1 are left, both 180 days
    # old or more at the half's end. m2: 20 (gift), 30 (d3); the reversal took 30 (the gift's
    # 20, then 10 of d3), the donation 5: 15 of 1 March left. m3: 5 (1 May), 30 (30 June).
    assert figures["liability"] == {
        "minutes": 160,
        "members_holding": 3,
        "age": {
            "days_0_89": 35,
            "days_90_179": 15,
            "days_180_364": 110,
            "days_365_729": 0,
            "days_730_plus": 0,
        },
        "spent": 50,
        "spent_per_month": 8,
        "months_to_redeem": "19.2",
    }
    assert figures["pool"] == {"in": 15, "out": 15, "balance": 0}
    from_leaves = PublicFigures("t", start, end)  # the server's and the auditor's path
    for entry in hand_built_entries():
        from_leaves.add_leaf(entry.leaf())
    assert from_leaves.figures() == figures


def test_the_half_before_sees_only_its_entries() -> None:
    start, end = half_bounds("2025-H2", ZONE)
    figures = PublicFigures("t", start, end).add_all(hand_built_entries()).figures()
    assert figures["minutes_by_kind"]["deposit"] == 120
    assert figures["liability"]["minutes"] == 120
    assert figures["liability"]["months_to_redeem"] is None


# ---------------------------------------------------------------- published on a real log


AFTER_H2 = datetime(2027, 1, 2, tzinfo=UTC)  # the log's entries are written now, in 2026-H2


@pytest.fixture
def app(settings: Settings, log: Log) -> Litestar:
    return create_app(settings, log=log)


@pytest.fixture
def url(app: Litestar) -> Iterator[str]:
    with serve(app) as base:
        yield base


def world(app: Litestar, log: Log) -> HalfYearReports:
    accounts = app.state.accounts
    accounts.create_bank("t", "Bank T")
    accounts.create_user("t", "t-admin", Role.BANK_ADMIN, None, "correct horse battery")
    accounts.create_user("t", "t-auditor", Role.AUDITOR, None, "correct horse battery")
    log.append(deposit("d1", member(1), 90))
    log.append(deposit("d2", member(2), 30))
    log.append(gift("g3", member(1), member(2), 15))
    reports: HalfYearReports = app.state.reports
    reports.clock = lambda: AFTER_H2
    return reports


def principal(app: Litestar, username: str) -> Any:
    user = app.state.accounts.user_by_username(username)
    return app.state.accounts.principal_for_user(user.id)


def problems(report: AuditReport) -> list[str]:
    return [p.where for p in report.problems]


def test_a_published_report_recomputes_and_tampering_is_named(
    app: Litestar, log: Log, url: str
) -> None:
    reports = world(app, log)
    admin = principal(app, "t-admin")
    published = reports.publish(admin, "2026-H2")
    assert published.tree_size == 3 and published.seq == 3
    assert hashlib.sha256(published.data).hexdigest() == published.sha256
    entry = log.entry(3)
    assert entry is not None and entry.request.kind == "report" and not entry.request.postings
    assert entry.request.body == {
        "bank": "t",
        "format": "timebank-halfyear-report/v1",
        "half": "2026-H2",
        "sha256": published.sha256,
        "tree_size": 3,
    }
    document = json.loads(published.data)
    assert document["public"]["minutes_by_kind"]["deposit"] == 120
    assert document["public"]["liability"]["minutes"] == 120
    assert document["attested"]["coverage"][0] == {
        "month": "2026-07",
        "priority_elders": 0,
        "visited": 0,
    }

    client, policy = LogClient(url), Policy(log.signer.verifier)
    served = client.get(f"/v1/reports/{published.id}/document")
    assert served == published.data
    listed = json.loads(client.get("/v1/reports"))
    assert [(r["id"], r["half"], r["sha256"]) for r in listed] == [
        (published.id, "2026-H2", published.sha256)
    ]
    good = verify_report(served, client, policy)
    assert good.ok, list(good.lines())

    # A public figure changed (the document re-canonicalised, so only the figure is wrong)
    changed = json.loads(served)
    changed["public"]["minutes_by_kind"]["gift"] = 30
    report = verify_report(canonical_json(changed), client, policy)
    assert problems(report) == ["public.minutes_by_kind.gift", "sha256"]
    assert "the document says 30, the log gives 15" in str(report.problems[0])

    # An attested figure changed: not recomputable, but the bytes are no longer the anchored ones
    changed = json.loads(served)
    changed["attested"]["members"]["registered"]["volunteers"] = 99
    assert problems(verify_report(canonical_json(changed), client, policy)) == ["sha256"]

    # The same document with one more space: not the canonical bytes that were hashed
    spaced = served.replace(b'"half":', b'"half": ', 1)
    assert problems(verify_report(spaced, client, policy)) == ["document", "sha256"]

    # Computed again at a later checkpoint: the figures are right for it, the anchor is not
    log.append(deposit("d5", member(3), 45))
    later = reports.compute(admin, "2026-H2")
    report = verify_report(later.data, client, policy)
    assert problems(report) == ["sha256", "checkpoint"]
    assert "entry 3 anchors checkpoint 3" in str(report.problems[1])


def test_who_may_publish_and_what_is_refused(app: Litestar, log: Log, url: str) -> None:
    reports = world(app, log)
    admin, auditor = principal(app, "t-admin"), principal(app, "t-auditor")
    with pytest.raises(Forbidden):
        reports.publish(auditor, "2026-H2")
    for bad, message in (("2026-H3", "YYYY-H1"), ("2027-H1", "has not ended")):
        with pytest.raises(InvalidInput) as caught:
            reports.publish(admin, bad)
        assert caught.value.field == "half" and message in str(caught.value)
    assert reports.compute(auditor, "2026-H2").document["half"] == "2026-H2"
    first = reports.publish(admin, "2026-H2")
    with pytest.raises(Conflict) as conflict:
        reports.publish(admin, "2026-H2")
    assert conflict.value.field == "half" and first.id in str(conflict.value)
    assert [r.id for r in reports.list()] == [first.id]


def test_cli_audit_report(
    app: Litestar, log: Log, url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reports = world(app, log)
    published = reports.publish(principal(app, "t-admin"), "2026-H2")
    path = tmp_path / "report.json"
    path.write_bytes(published.data)
    key = log.verifier_key
    assert main(["audit", "report", str(path), "--url", url, "--key", key]) == 0
    assert "OK: report 2026-H2 of bank t" in capsys.readouterr().out
    changed = json.loads(published.data)
    changed["public"]["pool"]["balance"] = 1
    path.write_bytes(canonical_json(changed))
    assert main(["audit", "report", str(path), "--url", url, "--key", key]) == 1
    out = capsys.readouterr().out
    assert "public.pool.balance: the document says 1, the log gives 0" in out


def test_the_routes(settings: Settings, log: Log) -> None:
    """Publishing over HTTP: bank administrators only, problems naming ``half`` in the caller's
    language, 409 for a half published already; the published report is public."""
    app = create_app(settings, log=log)
    with TestClient(app) as client:
        accounts = app.state.accounts
        accounts.create_bank("t", "Bank T")
        for name, role in (("t-admin", Role.BANK_ADMIN), ("t-auditor", Role.AUDITOR)):
            accounts.create_user("t", name, role, None, "correct horse battery")
        log.append(deposit("d1", member(1), 90))
        admin = {"Authorization": f"Bearer {accounts.issue_token('t-admin').token}"}
        auditor = {"Authorization": f"Bearer {accounts.issue_token('t-auditor').token}"}
        assert client.post("/v1/reports", json={"half": "2026-H1"}).status_code == 401
        refused = client.post("/v1/reports", headers=auditor, json={"half": "2026-H1"})
        assert refused.status_code == 403
        for half, detail, zh in (
            ("2026-H3", "half must be YYYY-H1 or YYYY-H2", "half 应为 YYYY-H1 或 YYYY-H2"),
            ("2030-H1", "2030-H1 has not ended yet", "2030-H1 尚未结束"),
        ):
            bad = client.post("/v1/reports", headers=admin, json={"half": half})
            assert (
                bad.status_code == 400 and bad.headers["content-type"] == "application/problem+json"
            )
            assert (bad.json()["field"], bad.json()["detail"]) == ("half", detail)
            chinese = client.post(
                "/v1/reports", headers={**admin, "Accept-Language": "zh-CN"}, json={"half": half}
            )
            assert chinese.json()["detail"].startswith(zh), chinese.json()
        assert client.post("/v1/reports", headers=admin, json={}).status_code == 400
        made = client.post("/v1/reports", headers=admin, json={"half": "2026-H1"})
        assert made.status_code == 201, made.text
        report = made.json()
        assert report["half"] == "2026-H1" and report["document"]["bank"] == "t"
        again = client.post("/v1/reports", headers=admin, json={"half": "2026-H1"})
        assert again.status_code == 409 and again.json()["field"] == "half"
        assert report["id"] in again.json()["detail"]
        public = client.get(f"/v1/reports/{report['id']}")  # no login
        assert public.status_code == 200 and public.json()["sha256"] == report["sha256"]
        document = client.get(f"/v1/reports/{report['id']}/document")
        assert hashlib.sha256(document.content).hexdigest() == report["sha256"]
        assert [r["id"] for r in client.get("/v1/reports").json()] == [report["id"]]
        missing = client.get("/v1/reports/0000000000000000")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"


def test_the_public_statistics_page(settings: Settings, log: Log) -> None:
    """No login: the published reports, one chart (no script, a title and a description) and
    the same numbers in a table; the chart is the same bytes for the same figures."""
    app = create_app(settings, log=log)
    with TestClient(app) as client:
        empty = client.get("/statistics")
        assert empty.status_code == 200 and 'id="no-reports"' in empty.text
        app.state.accounts.create_bank("t", "Bank T")
        app.state.accounts.create_user(
            "t", "t-admin", Role.BANK_ADMIN, None, "correct horse battery"
        )
        log.append(deposit("d1", member(1), 90))
        log.append(gift("g2", member(1), member(2), 15))
        reports: HalfYearReports = app.state.reports
        reports.clock = lambda: AFTER_H2
        published = reports.publish(principal(app, "t-admin"), "2026-H2")
        page = client.get("/statistics")
        assert page.status_code == 200
        html = page.text
        svg = html[html.index("<svg") : html.index("</svg>") + 6]
        assert "<script" not in svg and "<title" in svg and "<desc" in svg
        assert ">2026-H2 存入</text>" in svg and ">90</text>" in svg  # Chinese by default
        table = html[html.index('id="minutes"') : html.index("</table>")]
        assert '<th scope="row">2026-H2</th><td>90</td><td>0</td><td>0</td><td>15</td>' in table
        assert published.sha256 in html
        assert f'href="/v1/reports/{published.id}/document"' in html
        assert client.get("/statistics").text == html  # the same figures, the same bytes
        english = client.get("/statistics", headers={"Accept-Language": "en"}).text
        assert ">2026-H2 deposited</text>" in english


def test_amount_bars_are_deterministic_and_scaled() -> None:
    first = amount_bars("t", "d", [("a", 50, "50"), ("b", 100, "100"), ("c", 0, "0")])
    assert first == amount_bars("t", "d", [("a", 50, "50"), ("b", 100, "100"), ("c", 0, "0")])
    assert 'width="150" height="20" class="bar"' in first  # half of the largest
    assert 'width="300" height="20" class="bar"' in first
    assert 'class="target"' not in first


def test_the_workflow_on_both_databases(settings: Settings, log: Log) -> None:
    """Real records through the care workflow: a verified visit counts, a rejected record never
    made a deposit, a reversed deposit stays deposited and its reversal counts as reversed; the
    attested figures count the members and the verified records only."""
    app = create_app(settings, log=log)
    with TestClient(app):
        accounts, care = app.state.accounts, app.state.care
        accounts.create_bank("b1", "Bank 1")
        ids: dict[str, str] = {}
        people: dict[str, Any] = {}
        for name in ("admin", "admin2"):
            user = accounts.create_user("b1", name, Role.BANK_ADMIN, None, "correct horse battery")
            people[name] = accounts.principal_for_user(user.user.id)
        ids["org"] = accounts.create_org(people["admin"], "中心", "community_centre").id
        for name in ("staff", "staff2"):
            user = accounts.create_user(
                "b1", name, Role.ORG_STAFF, ids["org"], "correct horse battery"
            )
            people[name] = dataclasses.replace(
                accounts.principal_for_user(user.user.id), second_factor=True
            )
        care.upsert_service_type(people["admin"], "nursing", "护理", "nursing", "nursing", 1000)
        for key, volunteer, elder in (
            ("vol", True, False),
            ("e1", False, True),
            ("e2", False, True),
        ):
            new = accounts.register_member(
                people["staff"],
                ids["org"],
                PersonalInput(f"成员{key}", f"1390000{len(ids):04d}", birth_date=date(1950, 1, 1)),
                volunteer=volunteer,
                elder=elder,
                username=f"member-{key}",
                password="correct horse battery",
            )
            ids[key] = new.member.id
            people[key] = accounts.principal_for_user(new.user.id)
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=10)

        def record(elder: str, hours: int) -> str:
            made = care.log_record(
                people["vol"],
                elder_id=ids[elder],
                service_code="nursing",
                check_in=start + timedelta(hours=hours),
                check_out=start + timedelta(hours=hours + 1),
                minutes=None,
                request_id=None,
                device_key_id=None,
                signature=None,
                confirmation_code=None,
            )
            care.confirm(people[elder], made.id)
            return str(made.id)

        care.verify(people["staff"], record("e1", 0))
        reversed_record = record("e2", 2)
        care.verify(people["staff"], reversed_record)
        care.reject(people["staff"], record("e2", 4), "no such visit")
        seq = care.get_record(people["admin"], reversed_record).deposit_seq
        reversal = care.request_reversal(people["admin"], seq, "logged by mistake")
        care.approve_reversal(people["admin2"], reversal["id"])

        reports: HalfYearReports = app.state.reports
        reports.clock = lambda: AFTER_H2
        document = reports.compute(people["admin"], "2026-H2").document
        public, attested = document["public"], document["attested"]
        assert public["minutes_by_kind"]["deposit"] == 120
        assert public["minutes_by_kind"]["reversal"] == 60
        assert public["services"] == {"nursing": {"deposits": 2, "served": 120, "deposited": 120}}
        assert public["organisations"] == {
            ids["org"]: {"deposits": 2, "served": 120, "deposited": 120}
        }
        assert public["liability"]["minutes"] == 60
        assert public["liability"]["members_holding"] == 1
        assert attested["members"]["registered"] == {"volunteers": 1, "elders": 2}
        assert attested["members"]["serving"] == {"volunteers": 1, "elders": 1}


def test_an_interrupted_publication_is_finished_by_the_next(
    app: Litestar, log: Log, url: str
) -> None:
    """The document was stored but the process stopped before its entry was appended: the
    next publish appends the stored document's entry (not a new computation) and finishes."""
    reports = world(app, log)
    admin = principal(app, "t-admin")
    computed = reports.compute(admin, "2026-H2")
    size = computed.document["checkpoint"]["size"]
    with app.state.accounts.store.transaction() as tx:
        assert insert_report(
            tx,
            id="0123456789abcdef",
            bank_id="t",
            half="2026-H2",
            sha256=computed.sha256,
            tree_size=size,
            document=computed.data,
            status="pending",
            entry_id="report:t:2026-H2",
            seq=None,
            published_by="",
            published_at=AFTER_H2,
        )
    assert reports.list() == []  # not published until its entry is in the log
    log.append(deposit("d4", member(4), 10))  # the log moved on meanwhile
    finished = reports.publish(admin, "2026-H2")
    assert (finished.id, finished.sha256, finished.tree_size) == (
        "0123456789abcdef",
        computed.sha256,
        size,
    )
    assert finished.data == computed.data
    assert verify_report(finished.data, LogClient(url), Policy(log.signer.verifier)).ok


def test_the_last_two_half_years_that_have_ended() -> None:
    assert last_two_halves(date(2026, 12, 5)) == ("2025-H2", "2026-H1")
    assert last_two_halves(date(2026, 7, 1)) == ("2025-H2", "2026-H1")
    assert last_two_halves(date(2027, 6, 30)) == ("2026-H1", "2026-H2")


def test_the_demo_publishes_the_two_half_years_that_have_ended(settings: Settings) -> None:
    """``timebank seed --demo`` (as ``make run``): about 18 months of history written on the
    demo's clock, the two half years that have ended published by its administrator, each
    recomputed from the log by the auditor's check."""
    demo_log = Log.open(settings, clock=DemoClock())
    app = create_app(settings, log=demo_log)
    try:
        with serve(app) as url:
            seed_demo_bank(
                app.state.accounts,
                app.state.care,
                demo_log,
                2000,
                members=40,
                partners=app.state.partners,
                reports=app.state.reports,
            )
            now = datetime.now(UTC)
            halves = last_two_halves(now.astimezone(ZoneInfo(ZONE)).date())
            published = app.state.reports.list()
            assert [r.half for r in published] == list(halves)
            client, policy = LogClient(url), Policy(demo_log.signer.verifier)
            for report in published:
                document = json.loads(report.data)
                assert document["public"]["minutes_by_kind"]["deposit"] > 0
                assert document["public"]["liability"]["minutes"] > 0
                checked = verify_report(report.data, client, policy)
                assert checked.ok, list(checked.lines())
    finally:
        demo_log.close()
    times = [Entry.from_leaf(leaf).time for leaf in iter_leaves(demo_log, demo_log.size())]
    assert times == sorted(times)  # never backwards
    assert times[0] < log_time(now - timedelta(days=540))  # the bank opened ~18 months ago
    history = [t for t in times if t < log_time(now - timedelta(days=1))]
    assert len(history) > 2000  # the past entries, the members' approvals, the catalogue
