"""Supervision signals (reports.signals) on planted patterns, each next to a twin that stays
below its threshold: a volunteer at the daily cap five days (fires) and four days (quiet), a
heavy volunteer–elder pair, one staff member confirming for the elders, a record logged 80 hours
after the service (fires) and one 70 hours after (quiet), deposits up to the stored-time cap, a
day of many registrations. Real SQLite and PostgreSQL under the in-memory ledger."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import date, datetime, timedelta

import pytest

from accounts.errors import Forbidden, InvalidInput
from accounts.model import Role
from accounts.service import PersonalInput
from ledger.config import Settings
from ledger.log import Log
from reports.signals import Signal, SignalKind, Thresholds
from tests.accounts_world import World, build_world
from tests.stats_world import PASSWORD, Month, local, open_month

UNTIL = local(2026, 4, 1)  # the window: March 2026 in Shanghai (31 days)
MARCH = Thresholds(days=31)


@pytest.fixture
def month(db_url: str) -> Iterator[Month]:
    yield from open_month(db_url)


def serve(
    m: Month,
    volunteer: str,
    elder: str,
    at: datetime,
    *,
    logged_after: timedelta = timedelta(hours=1),
    by_staff: bool = False,
) -> str:
    """An hour of nursing from ``at``, logged ``logged_after`` the end, confirmed by the elder
    (or by her organisation's staff on her behalf), verified by the other staff member."""
    org = "a" if m.accounts.member(m.ids[elder]).org_id == m.ids["a"] else "b"
    m.clock.now = at + timedelta(hours=1) + logged_after
    record = m.care.log_record(
        m.people[volunteer],
        elder_id=m.ids[elder],
        service_code="nursing",
        check_in=at,
        check_out=at + timedelta(hours=1),
        minutes=None,
        request_id=None,
        device_key_id=None,
        signature=None,
        confirmation_code=None,
    )
    m.care.confirm(m.people[f"staff-{org}" if by_staff else elder], record.id)
    m.care.verify(m.people[f"staff-{org}2" if by_staff else f"staff-{org}"], record.id)
    return record.id


def plant_march(m: Month) -> dict[str, list[str]]:
    """The patterns of March; returns the records behind each, by name."""
    m.care.set_policy(m.people["admin"], {"daily_cap_minutes": 120})
    for org in ("a", "b"):
        user = m.accounts.create_user(
            "b1", f"staff-{org}2", Role.ORG_STAFF, m.ids[org], PASSWORD
        ).user
        m.people[f"staff-{org}2"] = dataclasses.replace(
            m.accounts.principal_for_user(user.id), second_factor=True
        )
    second = m.accounts.register_member(
        m.people["staff-b"],
        m.ids["b"],
        PersonalInput("第二志愿者", "13800000001", birth_date=date(1991, 1, 1)),
        volunteer=True,
        elder=False,
        username="vol2",
        password=PASSWORD,
    )
    assert second.user is not None
    m.people["vol2"] = m.accounts.principal_for_user(second.user.id)
    m.ids["vol2"] = second.member.id
    m.ids["vol"] = m.people["vol"].member_id or ""
    for key, org in (("e1", "a"), ("e2", "a"), ("e3", "a"), ("e4", "a"), ("e5", "b")):
        m.elder(key, org)
    m.elder("e6", "b")
    planted: dict[str, list[str]] = {"vol_full_days": [], "vol2": [], "late": []}
    for day in range(2, 7):  # vol: two hours with e1 on five days, the daily cap each time
        for hour in (9, 14):
            planted["vol_full_days"].append(serve(m, "vol", "e1", local(2026, 3, day, hour)))
    for day in range(2, 6):  # vol2: the cap on four days; staff confirm for the elders
        for hour, elder in ((9, "e5"), (14, "e6")):
            planted["vol2"].append(
                serve(m, "vol2", elder, local(2026, 3, day, hour), by_staff=True)
            )
    for day, elder in ((10, "e2"), (11, "e3"), (14, "e4")):  # vol's ordinary pairs
        serve(m, "vol", elder, local(2026, 3, day, 10))
    planted["late"].append(
        serve(m, "vol", "e2", local(2026, 3, 12), logged_after=timedelta(hours=80))
    )
    serve(m, "vol", "e3", local(2026, 3, 13), logged_after=timedelta(hours=70))
    m.clock.now = local(2026, 3, 20, 9)  # five elders registered on one morning at b, three at a
    for n in range(5):
        m.elder(f"burst-b{n}", "b")
    for n in range(3):
        m.elder(f"burst-a{n}", "a")
    return planted


def by_kind(found: tuple[Signal, ...], kind: SignalKind) -> list[Signal]:
    return [s for s in found if s.kind is kind]


def test_each_pattern_fires_and_its_twin_below_the_threshold_stays_quiet(month: Month) -> None:
    m = month
    planted = plant_march(m)
    found = m.signals.signals(m.people["admin"], MARCH, UNTIL).signals

    (cap,) = by_kind(found, SignalKind.NEAR_DAILY_CAP)  # vol2's four days stay quiet
    assert (cap.subjects, cap.measured, cap.threshold, cap.unit) == ((m.ids["vol"],), 5, 5, "days")
    assert set(cap.records) == set(planted["vol_full_days"]) and cap.org_id == m.ids["a"]

    # org a: vol–e1 600 minutes; vol–e2 120, vol–e3 120, vol–e4 60: median 120, bar 600.
    # org b has only two pairs: no median to compare with.
    (pair,) = by_kind(found, SignalKind.HEAVY_PAIR)
    assert pair.subjects == (m.ids["vol"], m.ids["e1"])
    assert (pair.measured, pair.threshold, pair.org_id) == (600, 600, m.ids["a"])
    assert set(pair.records) == set(planted["vol_full_days"])

    # staff-b confirmed all eight of org b's confirmations: but ten are needed by default
    assert not by_kind(found, SignalKind.STAFF_CONFIRMS_FOR_ELDERS)
    fewer = dataclasses.replace(MARCH, staff_min_confirmations=8)
    (staff,) = by_kind(
        m.signals.signals(m.people["admin"], fewer, UNTIL).signals,
        SignalKind.STAFF_CONFIRMS_FOR_ELDERS,
    )
    assert staff.subjects == (m.people["staff-b"].user_id,) and staff.names == ("staff-b",)
    assert (staff.measured, staff.unit, set(staff.records)) == (
        100,
        "percent",
        set(planted["vol2"]),
    )

    (late,) = by_kind(found, SignalKind.LATE_RECORD)  # 80 hours fires, 70 does not
    assert (late.subjects, late.measured, late.threshold) == ((m.ids["vol"],), 80, 72)
    assert late.records == tuple(planted["late"])

    assert not by_kind(found, SignalKind.REGISTRATION_BURST)  # 5 at b and 3 at a: under 10
    assert not by_kind(found, SignalKind.NEAR_STORED_CAP)  # the cap is far away


def test_registration_bursts_compare_a_day_with_the_organisations_usual_day(
    month: Month,
) -> None:
    m = month
    plant_march(m)
    quiet = m.signals.signals(m.people["admin"], MARCH, UNTIL).signals
    assert not by_kind(quiet, SignalKind.REGISTRATION_BURST)  # 5 and 3 are under 10
    low = dataclasses.replace(MARCH, burst_min=4)
    (burst,) = by_kind(
        m.signals.signals(m.people["admin"], low, UNTIL).signals, SignalKind.REGISTRATION_BURST
    )
    assert (burst.org_id, burst.subjects, burst.measured, burst.threshold) == (
        m.ids["b"],
        ("2026-03-20",),
        5,
        4,
    )
    assert set(burst.records) == {m.ids[f"burst-b{n}"] for n in range(5)}


def test_a_deposit_near_the_stored_time_cap_is_shown_with_the_balance_it_left(
    month: Month,
) -> None:
    m = month
    plant_march(m)
    balance = m.ledger.balances([m.accounts.member(m.ids["vol"]).ledger_account])
    minutes = next(iter(balance.values()))
    assert minutes == 15 * 60  # fifteen verified hours of nursing at weight 1
    m.clock.now = UNTIL
    m.care.set_policy(m.people["admin"], {"stored_cap_minutes": minutes + 30})
    found = m.signals.signals(m.people["admin"], MARCH, UNTIL).signals
    (near,) = by_kind(found, SignalKind.NEAR_STORED_CAP)
    threshold = -(-(minutes + 30) * 95 // 100)  # 884 minutes
    assert (near.subjects, near.measured, near.threshold) == ((m.ids["vol"],), minutes, threshold)
    # the deposits that left vol at 884 minutes or more: only the last (900)
    records = [m.care.get_record(m.people["admin"], r) for r in near.records]
    assert [r.deposit_minutes for r in records] == [60]
    assert all(r.volunteer_id == m.ids["vol"] for r in records)


def test_admins_see_masked_names_auditors_ids_only_and_no_one_else_sees_them(
    month: Month,
) -> None:
    m = month
    plant_march(m)
    admin = m.signals.signals(m.people["admin"], MARCH, UNTIL)
    auditor = m.signals.signals(m.people["auditor"], MARCH, UNTIL)
    assert [(s.kind, s.subjects, s.records) for s in admin.signals] == [
        (s.kind, s.subjects, s.records) for s in auditor.signals
    ]
    assert all(s.names == () for s in auditor.signals)
    (pair,) = by_kind(admin.signals, SignalKind.HEAVY_PAIR)
    volunteer, elder = pair.names
    assert volunteer != "志愿者" and volunteer.startswith("志") and elder.startswith("长")
    for who in ("staff-a", "vol", "e1"):
        with pytest.raises(Forbidden):
            m.signals.signals(m.people[who], MARCH, UNTIL)
    for bad in (Thresholds(days=0), Thresholds(near_cap_percent=101), Thresholds(burst_min=0)):
        with pytest.raises(InvalidInput) as caught:
            m.signals.signals(m.people["admin"], bad, UNTIL)
        assert caught.value.field == bad.problems()[0].field
    with pytest.raises(InvalidInput) as naive:
        m.signals.signals(m.people["admin"], MARCH, datetime(2026, 4, 1))
    assert naive.value.field == "until"


def test_thresholds_collect_every_problem() -> None:
    bad = Thresholds(days=0, near_cap_percent=200, late_hours=0)
    assert [problem.field for problem in bad.problems()] == [
        "days",
        "near_cap_percent",
        "late_hours",
    ]
    assert Thresholds().problems() == []


@pytest.fixture
def world(settings: Settings, log: Log) -> Iterator[World]:
    yield from build_world(settings, log)


def test_the_api_answers_admins_and_auditors_and_refuses_others_in_their_language(
    world: World,
) -> None:
    w = world
    answer = w.client.get("/v1/stats/signals?days=7&late_hours=24", headers=w.as_("b1-admin"))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["thresholds"]["days"] == 7 and body["thresholds"]["late_hours"] == 24
    assert body["thresholds"]["near_cap_percent"] == 90  # the default
    assert body["timezone"] == "Asia/Shanghai" and isinstance(body["signals"], list)
    assert w.client.get("/v1/stats/signals", headers=w.as_("auditor")).status_code == 200
    refused = w.client.get("/v1/stats/signals", headers=w.as_("staff-a"))
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    bad = w.client.get(
        "/v1/stats/signals?near_cap_percent=150",
        headers={**w.as_("b1-admin"), "Accept-Language": "zh-CN"},
    )
    assert bad.status_code == 400 and bad.json()["field"] == "near_cap_percent"
    assert bad.json()["detail"] == "接近每日上限：占上限的百分比 必须在 1 到 100 之间"
