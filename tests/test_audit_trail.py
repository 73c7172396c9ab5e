"""The audit trail: what is recorded, who may read it, its seals in the log, and tampering."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest

from audit.trail import AuditTrail, check_chain, check_seals, seal_of
from ledger.config import Settings
from ledger.log import Log
from tests.accounts_world import PASSWORD, World, build_world
from tests.helpers import raw_sql


@pytest.fixture
def world(settings: Settings, log: Log) -> Iterator[World]:
    yield from build_world(settings, log)


def trail(w: World) -> AuditTrail:
    found: AuditTrail = w.client.app.state.audit
    return found


def seals(log: Log) -> list[object]:
    found = []
    for leaf in log.leaves(0, log.size()):
        raw = json.loads(leaf.data)
        seal = seal_of(raw["seq"], raw["kind"], raw["body"])
        if seal is not None:
            found.append(seal)
    return found


def test_actions_refusals_failed_logins_and_pii_reads_are_recorded(world: World) -> None:
    w = world
    assert (
        w.client.post(
            "/v1/auth/login", json={"username": "vol-a", "password": "wrong pass!"}
        ).status_code
        == 401
    )
    w.client.get(
        f"/v1/members/{w.ids['elder-a']}?reveal_reason=arranging+a+visit", headers=w.as_("staff-a")
    )
    w.client.post(
        f"/v1/members/{w.ids['elder-a']}/flags", headers=w.as_("vol-a"), json={"flag": "disabled"}
    )
    created = w.client.post(
        "/v1/orgs", headers=w.as_("b1-admin"), json={"name": "Org Z", "kind": "community_centre"}
    )
    assert created.status_code == 201
    events = trail(w).all_events()
    by_action = {(e.action, e.outcome) for e in events}
    assert ("POST /v1/auth/login", "refused") in by_action
    assert ("GET /v1/members/{member_id}", "ok") in by_action
    assert ("POST /v1/members/{member_id}/flags", "refused") in by_action
    assert ("POST /v1/orgs", "ok") in by_action
    login = next(e for e in events if e.action == "POST /v1/auth/login")
    assert login.actor == w.ids["vol-a-user"] and login.status == 401
    reveal = next(e for e in events if e.action.startswith("GET /v1/members"))
    assert reveal.actor == w.ids["staff-a"] and reveal.objects == (w.ids["elder-a"],)
    dump = json.dumps([e.to_json() for e in events], ensure_ascii=False)
    for personal in ("王秀英", "13800002222", "320106194403150027", "arranging"):
        assert personal not in dump
    problems, _ = check_chain(events)
    assert problems == []


def test_only_auditors_read_the_trail_with_filters_and_paging(world: World) -> None:
    w = world
    for n in range(5):
        w.client.post(
            "/v1/orgs",
            headers=w.as_("b1-admin"),
            json={"name": f"Org {n}", "kind": "community_centre"},
        )
    assert w.client.get("/v1/audit/events", headers=w.as_("b1-admin")).status_code == 403
    assert w.client.get("/v1/audit/events", headers=w.as_("staff-a")).status_code == 403
    page = w.client.get("/v1/audit/events?limit=2", headers=w.as_("auditor"))
    assert page.status_code == 200
    first = page.json()
    assert [e["seq"] for e in first] == [0, 1]
    rest = w.client.get(
        f"/v1/audit/events?after_seq={first[-1]['seq']}", headers=w.as_("auditor")
    ).json()
    assert rest[0]["seq"] == 2
    mine = w.client.get(
        f"/v1/audit/events?actor={w.ids['b1-admin']}&action=POST+/v1/orgs", headers=w.as_("auditor")
    ).json()
    assert len(mine) == 5
    other_bank = w.client.get("/v1/audit/events", headers=w.as_("auditor")).json()
    assert all(e["bank"] in ("b1", None) for e in other_bank)


def test_seals_put_the_trail_under_the_signed_checkpoint(world: World) -> None:
    w = world
    w.client.post(
        "/v1/orgs", headers=w.as_("b1-admin"), json={"name": "Org Y", "kind": "community_centre"}
    )
    result = trail(w).seal(w.log)
    assert result is not None
    events = trail(w).all_events()
    problems, heads = check_chain(events)
    assert problems == []
    assert check_seals(seals(w.log), heads) == []  # type: ignore[arg-type]
    assert w.log.verify().ok


def test_tampered_events_are_named(world: World, db_url: str) -> None:
    w = world
    for n in range(4):
        w.client.post(
            "/v1/orgs",
            headers=w.as_("b1-admin"),
            json={"name": f"T{n}", "kind": "community_centre"},
        )
    trail(w).seal(w.log)
    from tests.helpers import drop_append_only_triggers

    drop_append_only_triggers(db_url)
    table = "audit_events"
    if db_url.startswith("sqlite"):
        raw_sql(
            db_url,
            f"DROP TRIGGER IF EXISTS {table}_no_update",
            f"DROP TRIGGER IF EXISTS {table}_no_delete",
        )
    else:
        raw_sql(db_url, f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
    raw_sql(db_url, "UPDATE audit_events SET actor = 'someone-else' WHERE seq = 1")
    events = trail(w).all_events()
    problems, heads = check_chain(events)
    assert any(p.startswith("audit event 2: prev does not match") for p in problems)
    seal_problems = check_seals(seals(w.log), heads)  # type: ignore[arg-type]
    assert seal_problems and "differs from the trail" in seal_problems[0]
    raw_sql(db_url, "DELETE FROM audit_events WHERE seq = 2")
    problems, _ = check_chain(trail(w).all_events())
    assert any("expected seq 2" in p for p in problems)


def test_shutdown_seals_the_trail(settings: Settings, log: Log) -> None:
    for w in build_world(settings, log):
        w.client.post("/v1/auth/login", json={"username": "vol-a", "password": PASSWORD})
        count = trail(w).count()
    last = seals(log)[-1]
    assert last.count == count  # type: ignore[attr-defined]
    assert base64.b64encode(last.head)  # type: ignore[attr-defined]


def test_a_reveal_is_recorded_however_the_query_spells_it(world: World) -> None:
    w = world
    elder = w.ids["elder-a"]
    for query, status in (
        ("reveal_reason=%E5%AE%B6%E8%AE%BF", 400),  # 家访: too short to say why
        ("reveal%5Freason=%E5%AE%89%E6%8E%92%E4%B8%8A%E9%97%A8%E5%AE%B6%E8%AE%BF", 200),
        ("reveal_reason=%E5%AE%89%E6%8E%92%E4%B8%8A%E9%97%A8%E5%AE%B6%E8%AE%BF", 200),
    ):
        response = w.client.get(f"/v1/members/{elder}?{query}", headers=w.as_("staff-a"))
        assert response.status_code == status, (query, response.text)
        if status == 200:
            assert response.json()["personal_masked"] is False
        else:
            assert response.json()["field"] == "reveal_reason"
    reveals = [e for e in trail(w).all_events() if e.action == "GET /v1/members/{member_id}"]
    assert [e.status for e in reveals] == [400, 200, 200]
    # a masked read is not a reveal and is not an event
    assert w.client.get(f"/v1/members/{elder}", headers=w.as_("staff-a")).status_code == 200
    assert len([e for e in trail(w).all_events() if e.action.startswith("GET")]) == 3
