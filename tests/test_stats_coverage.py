"""Visit coverage (reports.coverage) against a hand-built month where the right answer is known:
month boundaries in the bank's time zone, flags set and cleared mid-month, rejected records,
reversed deposits, pending elders, the services that count as a visit, and who may see what.
Real SQLite and PostgreSQL (the ``db_url`` fixture), the in-memory ledger, a clock we move."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import update

from accounts.errors import Forbidden, InvalidInput, NotFound
from accounts.storage import members
from ledger.config import Settings
from ledger.log import Log
from reports.charts import Bar, rate_bars
from reports.coverage import month_bounds
from reports.storage import coverage_elders, coverage_months
from tests.accounts_world import World, build_world
from tests.stats_world import Month, local, open_month


@pytest.fixture
def month(db_url: str) -> Iterator[Month]:
    yield from open_month(db_url)


def build_march(m: Month) -> None:
    """March 2026 in Shanghai, with one elder for each rule."""
    m.elder("e1", "a", "living_alone")  # visited at 00:30 on 1 March, Shanghai time
    m.elder("e2", "a", "disabled")  # visited at 23:30 on 28 February only: not in March
    m.elder("e3", "a")  # flagged on 15 March, visited on 20 March
    m.elder("e4", "a")  # never flagged: visited, but not a priority elder
    m.elder("e5", "b", "empty_nest")  # a rejected record only
    m.elder("e6", "b", "low_income")  # visited, then the deposit was reversed
    m.elder("e7", "b", "advanced_age")  # flag cleared on 10 March, never visited: counts
    m.elder("e8", "b", "living_alone")  # flag cleared in February: not counted
    m.elder("e9", "b", "living_alone")  # visited on 31 March 23:00 Shanghai (15:00 UTC)
    m.elder("e10", "a", "living_alone")  # visited at 00:05 on 1 April, Shanghai time
    m.visit("e2", local(2026, 2, 28, 23, 30))
    m.clock.now = local(2026, 2, 25)
    m.accounts.clear_flag(m.people["staff-b"], m.ids["e8"], m.ids["e8:living_alone"])
    m.visit("e1", local(2026, 3, 1, 0, 30))
    m.clock.now = local(2026, 3, 10)
    m.accounts.clear_flag(m.people["staff-b"], m.ids["e7"], m.ids["e7:advanced_age"])
    m.clock.now = local(2026, 3, 15)
    m.accounts.set_flag(m.people["staff-a"], m.ids["e3"], "advanced_age", None)
    m.visit("e3", local(2026, 3, 20, 10))
    m.visit("e4", local(2026, 3, 20, 14))
    rejected = m.visit("e5", local(2026, 3, 21, 10), verify=False)
    m.care.reject(m.people["staff-b"], rejected, "no such visit")
    reversed_record = m.visit("e6", local(2026, 3, 22, 10))
    seq = m.care.get_record(m.people["admin"], reversed_record).deposit_seq
    assert seq is not None
    reversal = m.care.request_reversal(m.people["admin"], seq, "logged by mistake")
    m.care.approve_reversal(m.people["admin2"], reversal["id"])
    m.visit("e9", local(2026, 3, 31, 23))
    m.visit("e10", local(2026, 4, 1, 0, 5))  # April in Shanghai, still 31 March in UTC


def test_month_bounds_are_the_banks_calendar_month() -> None:
    start, end = month_bounds("2026-03", "Asia/Shanghai")
    assert start == datetime(2026, 2, 28, 16, tzinfo=UTC)
    assert end == datetime(2026, 3, 31, 16, tzinfo=UTC)
    assert month_bounds("2026-12", "UTC")[1] == datetime(2027, 1, 1, tzinfo=UTC)
    for bad in ("2026-13", "2026-3-1", "March", ""):
        with pytest.raises(InvalidInput) as caught:
            month_bounds(bad, "UTC")
        assert caught.value.field == "month"


def test_coverage_counts_each_rule_of_the_definition(month: Month) -> None:
    build_march(month)
    month.clock.now = local(2026, 4, 3)
    c = month.coverage.coverage(month.people["admin"], "2026-03", None)
    by_org = {o.org_id: (o.priority_elders, o.visited) for o in c.organisations}
    # a: e1 (visited), e2 (February only), e3 (flagged mid-month, visited), e10 (April)
    # b: e5 (rejected), e6 (reversed), e7 (flag cleared mid-month), e9 (visited on the 31st)
    assert by_org == {month.ids["a"]: (4, 2), month.ids["b"]: (4, 1)}
    assert (c.total.priority_elders, c.total.visited, c.total.rate) == (8, 3, 3 / 8)
    unvisited = {u.member_id: u for u in c.unvisited}
    assert set(unvisited) == {month.ids[k] for k in ("e2", "e5", "e6", "e7", "e10")}
    e2 = unvisited[month.ids["e2"]]
    assert e2.last_visit == local(2026, 2, 28, 23, 30)
    assert e2.name != "长者e2" and e2.name.startswith("长") and "****" in e2.area  # masked
    assert unvisited[month.ids["e7"]].last_visit is None
    assert c.unvisited_total == 5 and c.unvisited[-1].member_id == month.ids["e2"]  # the last
    first = month.coverage.coverage(month.people["admin"], "2026-03", None, limit=4)
    assert first.unvisited_total == 5 and {u.member_id for u in first.unvisited} == {
        month.ids[k]
        for k in ("e5", "e6", "e7", "e10")  # never visited first
    }
    with pytest.raises(InvalidInput):
        month.coverage.coverage(month.people["admin"], "2026-03", None, limit=0)
    assert c.live  # records of the month's last days may still arrive (record_late_days)
    month.clock.now = local(2026, 4, 9)
    assert not month.coverage.coverage(month.people["admin"], "2026-03", None).live


def test_the_policy_chooses_the_flags_and_the_services_that_count(month: Month) -> None:
    build_march(month)
    month.clock.now = local(2026, 4, 3)
    month.care.set_policy(month.people["admin"], {"coverage_flags": "living_alone,disabled"})
    c = month.coverage.coverage(month.people["admin"], "2026-03", None)
    assert (c.total.priority_elders, c.total.visited) == (4, 2)  # e1 e2 e9 e10; e1 e9
    assert c.flags == ("disabled", "living_alone")
    month.care.set_policy(month.people["admin"], {"visit_services": "meal"})
    c = month.coverage.coverage(month.people["admin"], "2026-03", None)
    assert (c.total.priority_elders, c.total.visited) == (4, 0)  # every visit was nursing
    with pytest.raises(InvalidInput) as caught:
        month.care.set_policy(month.people["admin"], {"visit_services": "meal,dancing"})
    assert caught.value.field == "visit_services"
    with pytest.raises(InvalidInput) as caught:
        month.care.set_policy(month.people["admin"], {"coverage_flags": "rich"})
    assert caught.value.field == "coverage_flags"


def test_staff_see_their_organisation_and_auditors_counts_only(month: Month) -> None:
    build_march(month)
    month.clock.now = local(2026, 4, 3)
    staff = month.coverage.coverage(month.people["staff-a"], "2026-03", None)
    assert [o.org_id for o in staff.organisations] == [month.ids["a"]]
    assert (staff.total.priority_elders, staff.total.visited) == (4, 2)
    assert {u.org_id for u in staff.unvisited} == {month.ids["a"]}
    with pytest.raises(Forbidden):
        month.coverage.coverage(month.people["staff-a"], "2026-03", month.ids["b"])
    admin_b = month.coverage.coverage(month.people["admin"], "2026-03", month.ids["b"])
    assert (admin_b.total.priority_elders, admin_b.total.visited) == (4, 1)
    audited = month.coverage.coverage(month.people["auditor"], "2026-03", None)
    assert audited.total == month.coverage.coverage(month.people["admin"], "2026-03", None).total
    assert audited.unvisited == ()  # counts, never people
    with pytest.raises(Forbidden):
        month.coverage.coverage(month.people["vol"], "2026-03", None)
    with pytest.raises(NotFound):
        month.coverage.coverage(month.people["admin"], "2026-03", "nosuchorg")
    with pytest.raises(InvalidInput):
        month.coverage.coverage(month.people["admin"], "2026-05", None)  # the future


def test_the_current_month_is_live_and_counts_a_visit_as_soon_as_it_is_verified(
    month: Month,
) -> None:
    month.elder("e1", "a", "living_alone")
    month.clock.now = local(2026, 3, 5)
    before = month.coverage.coverage(month.people["staff-a"], None, None)
    assert before.month == "2026-03" and before.live
    assert (before.total.priority_elders, before.total.visited) == (1, 0)
    month.visit("e1", local(2026, 3, 5, 9))
    after = month.coverage.coverage(month.people["staff-a"], None, None)
    assert (after.total.visited, after.unvisited) == (1, ())


@pytest.fixture
def world(settings: Settings, log: Log) -> Iterator[World]:
    yield from build_world(settings, log)


def test_the_api_answers_staff_and_refuses_bad_months_in_the_callers_language(
    world: World,
) -> None:
    w = world
    url = f"/v1/stats/coverage?org_id={w.ids['org_b']}"
    answer = w.client.get(url, headers=w.as_("staff-b"))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["live"] and body["timezone"] == "Asia/Shanghai"
    assert [o["org_id"] for o in body["organisations"]] == [w.ids["org_b"]]
    # elder-b is flagged living_alone and has no visit this month: on the list, masked
    assert body["total"] == {
        "org_id": None,
        "org_name": "",
        "priority_elders": 1,
        "visited": 0,
        "rate": 0.0,
    }
    (unvisited,) = body["unvisited"]
    assert unvisited["member_id"] == w.ids["elder-b"] and unvisited["flags"] == ["living_alone"]
    assert w.client.get(url, headers=w.as_("staff-a")).status_code == 403
    bad = w.client.get(
        "/v1/stats/coverage?month=2026-13", headers={**w.as_("staff-b"), "Accept-Language": "zh-CN"}
    )
    assert bad.status_code == 400
    assert bad.headers["content-type"] == "application/problem+json"
    assert bad.json()["field"] == "month" and "格式" in bad.json()["detail"]


def test_a_chart_is_the_same_bytes_for_the_same_figures_and_holds_no_script() -> None:
    bars = [Bar("中心<a>", 2 / 3, "66.7 %"), Bar("站", 0.0, "0.0 %"), Bar("协会", None, "—")]
    svg = rate_bars("探访 & 覆盖", "描述", bars)
    assert svg == rate_bars("探访 & 覆盖", "描述", list(bars))  # deterministic
    assert "<script" not in svg and "on" + "load" not in svg
    assert '<title id="chart-title">探访 &amp; 覆盖</title>' in svg
    assert "中心&lt;a&gt;" in svg and "<a>" not in svg  # labels are text, never markup
    filled = [line for line in svg.splitlines() if 'class="bar"' in line]
    assert len(filled) == 2 and 'width="200"' in filled[0] and 'width="0"' in filled[1]
    assert rate_bars("t", "d", [Bar("x", 0.5, "50 %")]) != rate_bars(
        "t", "d", [Bar("x", 0.6, "60 %")]
    )


def test_a_final_month_is_frozen_as_first_computed_and_later_changes_leave_it(
    month: Month,
) -> None:
    m = month
    build_march(m)
    m.clock.now = local(2026, 4, 7, 23, 59)  # within 7 days after March: still live
    live = m.coverage.coverage(m.people["admin"], "2026-03", None)
    assert live.live
    m.clock.now = local(2026, 4, 8)  # final from here
    first = m.coverage.coverage(m.people["admin"], "2026-03", None)
    assert not first.live and (first.total.priority_elders, first.total.visited) == (8, 3)
    # Afterwards: e1's visit is reversed, the policy counts other flags, e9 moves to a.
    e1_record = m.care.list_records(m.people["admin"], None)
    seq = next(
        r.deposit_seq
        for r in e1_record
        if r.elder_id == m.ids["e1"] and r.check_in == local(2026, 3, 1, 0, 30)
    )
    assert seq is not None
    reversal = m.care.request_reversal(m.people["admin"], seq, "logged by mistake")
    m.care.approve_reversal(m.people["admin2"], reversal["id"])
    m.care.set_policy(m.people["admin"], {"coverage_flags": "disabled"})
    with m.accounts.store.transaction() as tx:
        tx.conn.execute(
            update(members).where(members.c.id == m.ids["e9"]).values(org_id=m.ids["a"])
        )
    again = m.coverage.coverage(m.people["admin"], "2026-03", None)
    assert again == first  # the same figures, list and flags as when it was frozen
    staff_b = m.coverage.coverage(m.people["staff-b"], "2026-03", None)
    assert (staff_b.total.priority_elders, staff_b.total.visited) == (4, 1)  # e9 still at b
    # February was never asked for while live: frozen now, with today's policy and data
    february = m.coverage.coverage(m.people["admin"], "2026-02", None)
    assert february.flags == ("disabled",) and not february.live
    # A live month follows the data: April counts with the new policy
    m.clock.now = local(2026, 4, 9, 12)
    april = m.coverage.coverage(m.people["admin"], "2026-04", None)
    assert april.live and april.flags == ("disabled",)


def test_two_requests_freezing_a_month_at_once_agree(month: Month) -> None:
    m = month
    build_march(m)
    m.clock.now = local(2026, 4, 20)
    start = threading.Barrier(4)
    answers: list[tuple[int, int]] = []

    def ask() -> None:
        start.wait()
        c = m.coverage.coverage(m.people["admin"], "2026-03", None)
        answers.append((c.total.priority_elders, c.total.visited))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [(8, 3)] * 4
    with m.accounts.store.snapshot() as tx:
        assert tx.count(coverage_months) == 1 and tx.count(coverage_elders) == 8
