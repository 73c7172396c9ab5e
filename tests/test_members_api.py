"""Members over HTTP: registration and approval, masking and the access record, relatives,
flags, and bad input on every route."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from ledger.config import Settings
from ledger.log import Log
from tests.accounts_world import PASSWORD, World, build_world


@pytest.fixture
def world(settings: Settings, log: Log) -> Iterator[World]:
    yield from build_world(settings, log)


def _ledger_kinds(log: Log) -> list[dict[str, object]]:
    size = log.size()
    return [json.loads(leaf.data) for leaf in log.leaves(0, size)] if size else []


def test_self_registration_is_pending_until_its_org_approves(world: World) -> None:
    response = world.client.post(
        "/v1/register",
        json={
            "bank_id": "b1",
            "org_id": world.ids["org_a"],
            "username": "new-vol",
            "password": "a fine long password",
            "personal": {"name": "新志愿者", "phone": "139 0000 1234"},
        },
    )
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "received"
    login = world.client.post(
        "/v1/auth/login", json={"username": "new-vol", "password": "a fine long password"}
    )
    assert login.status_code == 401  # no login until approved
    user = world.accounts.user_by_username("new-vol")
    assert user is not None
    member_id = world.accounts.principal_for_user(user.id).member_id
    member = world.client.get(f"/v1/members/{member_id}", headers=world.as_("staff-a")).json()
    assert member["status"] == "pending" and member["assisted"] is False
    assert member["personal"]["phone"] == "139****1234"  # staff see it masked
    other = world.client.post(f"/v1/members/{member['id']}/approve", headers=world.as_("staff-b"))
    assert other.status_code == 404
    approved = world.client.post(
        f"/v1/members/{member['id']}/approve", headers=world.as_("staff-a")
    )
    assert approved.status_code == 200
    body = approved.json()
    assert body["status"] == "active" and body["approved_by"] == world.ids["staff-a"]
    assert body["approved_at"]
    opaque = member["ledger_account"].rsplit(":", 1)[-1]
    entry = next(e for e in _ledger_kinds(world.log) if e["id"] == f"approval:{opaque}")
    assert entry["kind"] == "approval"
    assert entry["body"]["account"] == member["ledger_account"]  # type: ignore[index]
    # The log names who approved by a per-entry pseudonym, never by the user id other APIs show.
    named = world.accounts.protector.pseudonym(f"approval:{opaque}", world.ids["staff-a"])
    assert entry["body"]["approved_by"] == named != world.ids["staff-a"]  # type: ignore[index]
    assert "新志愿者" not in json.dumps(entry, ensure_ascii=False)  # no personal data in the log
    again = world.client.post(f"/v1/members/{member['id']}/approve", headers=world.as_("staff-a"))
    assert again.status_code == 409
    login = world.client.post(
        "/v1/auth/login", json={"username": "new-vol", "password": "a fine long password"}
    )
    assert login.json()["roles"] == ["volunteer"]


def test_rejection_needs_a_reason(world: World) -> None:
    path = f"/v1/members/{world.ids['pending-a']}/reject"
    missing = world.client.post(path, headers=world.as_("staff-a"), json={})
    assert missing.status_code == 400 and missing.json()["field"] == "reason"
    done = world.client.post(
        path, headers=world.as_("staff-a"), json={"reason": "could not verify identity"}
    )
    assert done.status_code == 200 and done.json()["status"] == "rejected"


def test_staff_registration_is_assisted_and_approved_at_once(world: World) -> None:
    response = world.client.post(
        "/v1/members",
        headers=world.as_("staff-a"),
        json={
            "org_id": world.ids["org_a"],
            "is_elder": True,
            "personal": {"name": "张大爷", "phone": "13612345678", "birth_date": "1938-02-01"},
        },
    )
    assert response.status_code == 201, response.text
    member = response.json()["member"]
    assert (member["status"], member["assisted"], member["registered_by"]) == (
        "active",
        True,
        world.ids["staff-a"],
    )
    assert member["personal"]["phone"] == "136****5678" and member["personal_masked"] is True


def test_family_registers_an_elder_pending_and_becomes_proxy(world: World) -> None:
    response = world.client.post(
        "/v1/members",
        headers=world.as_("vol-a"),
        json={
            "org_id": world.ids["org_a"],
            "is_elder": True,
            "personal": {"name": "李奶奶", "phone": "13512345678"},
        },
    )
    assert response.status_code == 201, response.text
    elder = response.json()["member"]
    assert elder["status"] == "pending" and elder["assisted"] is True
    assert (
        world.client.get(f"/v1/members/{elder['id']}", headers=world.as_("vol-a")).status_code
        == 200
    )
    volunteer = world.client.post(
        "/v1/members",
        headers=world.as_("vol-a"),
        json={
            "org_id": world.ids["org_a"],
            "is_volunteer": True,
            "personal": {"name": "X", "phone": "13512345679"},
        },
    )
    assert volunteer.status_code == 403


def test_a_family_registration_tells_nothing_of_numbers_on_file(world: World) -> None:
    """Any member may register an elder: a 409 for a phone or ID number on file (of any
    organisation) told them who is registered. A known and an unknown number are answered
    alike, pending for staff, who see the duplicate when they approve; staff get the 409."""
    known = {"name": "测试", "phone": "138-0000-2222"}  # elder-a's phone
    unknown = {"name": "测试", "phone": "13500009876"}
    answers, ids = [], []
    for personal in (known, unknown, {"name": "测试", "id_number": "320106194403150027"}):
        body = {"org_id": world.ids["org_a"], "is_elder": True, "personal": personal}
        answer = world.client.post("/v1/members", headers=world.as_("vol-a"), json=body)
        answers.append((answer.status_code, answer.json()["member"]["status"]))
        ids.append(answer.json()["member"]["id"])
    assert answers == [(201, "pending")] * 3
    for member_id in ids:  # her proxy may not approve: refused alike, known number or not
        answer = world.client.post(f"/v1/members/{member_id}/approve", headers=world.as_("vol-a"))
        assert answer.status_code == 403, answer.text
    staff = world.as_("staff-a")
    for member_id, field in ((ids[0], "phone"), (ids[2], "id_number")):  # staff meet them here
        held = world.client.post(f"/v1/members/{member_id}/approve", headers=staff)
        assert held.status_code == 409 and held.json()["field"] == field, held.text
    fresh = world.client.post(f"/v1/members/{ids[1]}/approve", headers=staff)
    assert fresh.status_code == 200 and fresh.json()["status"] == "active"
    by_staff = world.client.post(
        "/v1/members",
        headers=world.as_("staff-a"),
        json={"org_id": world.ids["org_a"], "is_elder": True, "personal": known},
    )
    assert by_staff.status_code == 409 and by_staff.json()["field"] == "phone"


def test_masking_reveal_and_the_access_record(world: World) -> None:
    elder = world.ids["elder-a"]
    masked = world.client.get(f"/v1/members/{elder}", headers=world.as_("staff-a")).json()
    assert masked["personal"] == {
        "name": "王*英",
        "phone": "138****2222",
        "id_number": "3201**********0027",
        "address": "南京市鼓****",
        "birth_year": 1944,
        "health_notes": "***",
    }
    auditor = world.client.get(f"/v1/members/{elder}", headers=world.as_("auditor")).json()
    assert auditor["personal"] == {"birth_year": 1944} and auditor["flags"] == []
    refused = world.client.get(
        f"/v1/members/{elder}?reveal_reason=curious", headers=world.as_("auditor")
    )
    assert refused.status_code == 403
    proxy = world.client.get(
        f"/v1/members/{elder}?reveal_reason=just+because", headers=world.as_("family-a")
    )
    assert proxy.status_code == 403
    short = world.client.get(f"/v1/members/{elder}?reveal_reason=x", headers=world.as_("staff-a"))
    assert short.status_code == 400 and short.json()["field"] == "reveal_reason"
    full = world.client.get(
        f"/v1/members/{elder}?reveal_reason=arranging+a+home+visit", headers=world.as_("staff-a")
    ).json()
    assert full["personal"]["id_number"] == "320106194403150027"
    assert full["personal"]["health_notes"] == "高血压" and full["personal_masked"] is False
    own = world.client.get(f"/v1/members/{elder}", headers=world.as_("elder-a")).json()
    assert own["personal"]["phone"] == "13800002222"
    records = world.client.get(
        f"/v1/members/{elder}/access-records", headers=world.as_("elder-a")
    ).json()
    assert [(r["actor"], r["reason"]) for r in records] == [
        (world.ids["staff-a"], "arranging a home visit")
    ]
    assert (
        world.client.get(
            f"/v1/members/{elder}/access-records", headers=world.as_("staff-a")
        ).status_code
        == 403
    )


def test_personal_data_is_encrypted_at_rest(world: World, settings: Settings) -> None:
    engine = create_engine(settings.database_url)
    with engine.connect() as conn:
        dump = " ".join(
            str(v) for row in conn.execute(text("SELECT * FROM member_personal")) for v in row
        )
    engine.dispose()
    for secret in ("320106194403150027", "13800002222", "湖南路12号", "高血压"):
        assert secret not in dump


def test_search_by_phone_or_id_uses_the_blind_index(world: World) -> None:
    hits = world.client.get("/v1/members?search=138-0000-2222", headers=world.as_("staff-a")).json()
    assert [m["id"] for m in hits] == [world.ids["elder-a"]]
    by_id = world.client.get(
        "/v1/members?search=320106194403150027", headers=world.as_("b1-admin")
    ).json()
    assert [m["id"] for m in by_id] == [world.ids["elder-a"]]
    other_org = world.client.get(
        "/v1/members?search=13800004444", headers=world.as_("staff-a")
    ).json()
    assert other_org == []
    assert (
        world.client.get("/v1/members?search=13800002222", headers=world.as_("auditor")).status_code
        == 403
    )
    assert world.client.get("/v1/members", headers=world.as_("vol-a")).status_code == 403


def test_every_search_by_phone_or_id_is_in_the_audit_trail(world: World) -> None:
    """A masked phone (``138****2222``) leaves 10,000 numbers to try one exact search at a
    time: each search is recorded (who, when, the answer; never the number searched), a list
    without a search is not."""
    trail = world.client.app.state.audit

    def searches() -> list[Any]:
        listed = trail.events(bank_id=None, action="GET /v1/members", limit=1000)
        return [e for e in listed if e.actor == world.ids["staff-a"]]

    staff = world.as_("staff-a")
    assert world.client.get("/v1/members", headers=staff).status_code == 200
    assert searches() == []
    for guess in ("13800000000", "13800002222", "13800009999"):
        assert world.client.get(f"/v1/members?search={guess}", headers=staff).status_code == 200
    found = searches()
    assert [e.status for e in found] == [200, 200, 200]
    dump = json.dumps([e.__dict__ for e in found], default=str)
    assert "13800002222" not in dump and "138" not in dump


def test_member_list_is_scoped(world: World) -> None:
    staff = {m["id"] for m in world.client.get("/v1/members", headers=world.as_("staff-a")).json()}
    assert world.ids["elder-a"] in staff and world.ids["elder-b"] not in staff
    admin = {
        m["id"]
        for m in world.client.get("/v1/members?limit=200", headers=world.as_("b1-admin")).json()
    }
    assert {world.ids["elder-a"], world.ids["elder-b"]} <= admin and world.ids["vol-c"] not in admin


def test_relatives_need_staff_confirmation(world: World) -> None:
    declared = world.client.post(
        f"/v1/members/{world.ids['vol-a']}/relatives",
        headers=world.as_("vol-a"),
        json={"relative_id": world.ids["elder-a"], "relation": "grandparent"},
    )
    assert declared.status_code == 201 and declared.json()["status"] == "pending"
    link = declared.json()["id"]
    assert not world.accounts.are_confirmed_relatives(world.ids["vol-a"], world.ids["elder-a"])
    assert (
        world.client.post(f"/v1/relatives/{link}/confirm", headers=world.as_("vol-a")).status_code
        == 403
    )
    assert (
        world.client.post(f"/v1/relatives/{link}/confirm", headers=world.as_("staff-b")).status_code
        == 404
    )
    confirmed = world.client.post(f"/v1/relatives/{link}/confirm", headers=world.as_("staff-a"))
    assert confirmed.status_code == 200 and confirmed.json()["decided_by"] == world.ids["staff-a"]
    assert world.accounts.are_confirmed_relatives(world.ids["elder-a"], world.ids["vol-a"])
    duplicate = world.client.post(
        f"/v1/members/{world.ids['vol-a']}/relatives",
        headers=world.as_("vol-a"),
        json={"relative_id": world.ids["elder-a"], "relation": "grandparent"},
    )
    assert duplicate.status_code == 409
    cross_bank = world.client.post(
        f"/v1/members/{world.ids['vol-a']}/relatives",
        headers=world.as_("vol-a"),
        json={"relative_id": world.ids["vol-c"], "relation": "sibling"},
    )
    assert cross_bank.status_code == 404 and cross_bank.json()["field"] == "relative_id"


def test_a_proxy_is_of_the_elders_organisation_or_her_confirmed_relative(world: World) -> None:
    """Staff cannot make a stranger from another organisation act for their elder (spend her
    time, read her record); once staff confirm him as her relative, the same grant works."""
    w = world
    record = f"/v1/members/{w.ids['elder-a']}"
    proxies = f"{record}/proxies"
    zh = {**w.as_("staff-a"), "Accept-Language": "zh-CN"}
    stranger = w.client.post(proxies, headers=zh, json={"username": "vol-b"})
    assert stranger.status_code == 400, stranger.text
    assert stranger.headers["content-type"].startswith("application/problem+json")
    assert stranger.json()["field"] == "username"
    assert "已确认的亲属" in stranger.json()["detail"]
    assert w.client.get(record, headers=w.as_("vol-b")).status_code == 404
    same_org = w.client.post(proxies, headers=w.as_("staff-a"), json={"username": "vol-a"})
    assert same_org.status_code == 204, same_org.text
    declared = w.client.post(
        f"/v1/members/{w.ids['vol-b']}/relatives",
        headers=w.as_("vol-b"),
        json={"relative_id": w.ids["elder-a"], "relation": "parent"},
    )
    confirm = f"/v1/relatives/{declared.json()['id']}/confirm"
    assert w.client.post(confirm, headers=w.as_("staff-a")).status_code == 200
    relative = w.client.post(proxies, headers=w.as_("staff-a"), json={"username": "vol-b"})
    assert relative.status_code == 204, relative.text
    assert w.client.get(record, headers=w.as_("vol-b")).status_code == 200


def test_priority_flags_record_who_and_when(world: World) -> None:
    elder = world.ids["elder-a"]
    flag = world.client.post(
        f"/v1/members/{elder}/flags",
        headers=world.as_("staff-a"),
        json={"flag": "living_alone", "note": "子女在外地"},
    )
    assert flag.status_code == 201
    assert flag.json()["set_by"] == world.ids["staff-a"] and flag.json()["set_at"]
    assert (
        world.client.post(
            f"/v1/members/{elder}/flags",
            headers=world.as_("staff-a"),
            json={"flag": "living_alone"},
        ).status_code
        == 409
    )
    assert (
        world.client.post(
            f"/v1/members/{elder}/flags", headers=world.as_("vol-a"), json={"flag": "disabled"}
        ).status_code
        == 404
    )
    cleared = world.client.post(
        f"/v1/members/{elder}/flags/{flag.json()['id']}/clear", headers=world.as_("admin-a")
    )
    assert cleared.status_code == 200 and cleared.json()["cleared_by"] == world.ids["admin-a"]


def test_orgs_are_created_by_bank_admins(world: World) -> None:
    created = world.client.post(
        "/v1/orgs",
        headers=world.as_("b1-admin"),
        json={"name": "新社区", "kind": "community_centre"},
    )
    assert created.status_code == 201
    assert (
        world.client.post(
            "/v1/orgs",
            headers=world.as_("b1-admin"),
            json={"name": "新社区", "kind": "community_centre"},
        ).status_code
        == 409
    )
    names = {o["name"] for o in world.client.get("/v1/orgs", headers=world.as_("vol-a")).json()}
    assert names == {"Org A", "Org B", "新社区"}


# Bad input on every route with a body: 400 problem+json that names the field.
BAD_INPUT = [
    ("/v1/auth/login", None, {"username": "x"}, "password"),
    ("/v1/auth/login", None, {"username": 5, "password": "x"}, "username"),
    ("/v1/auth/login", None, {"username": "x", "password": "y", "admin": True}, "admin"),
    ("/v1/auth/password", "vol-a", {"old_password": PASSWORD}, "new_password"),
    ("/v1/me/totp/confirm", "staff-a", {"code": 123456}, "code"),
    ("/v1/me/devices", "vol-a", {"public_key": "AAAA"}, "name"),
    ("/v1/orgs", "b1-admin", {"name": "x", "kind": "casino"}, "kind"),
    ("/v1/orgs", "b1-admin", {"name": "", "kind": "community_centre"}, "name"),
    ("/v1/orgs", "b1-admin", {"name": "x", "kind": "community_centre", "id": "mine"}, "id"),
    ("/v1/orgs/{org_a}/staff", "admin-a", {"username": "ab", "role": "org_staff"}, "username"),
    ("/v1/orgs/{org_a}/staff", "admin-a", {"username": "abc-def", "role": "bank_admin"}, "role"),
    (
        "/v1/orgs/{org_a}/staff",
        "admin-a",
        {"username": "abc-def", "role": "org_staff", "password": "short"},
        "password",
    ),
    (
        "/v1/register",
        None,
        {
            "bank_id": "b1",
            "org_id": "{org_a}",
            "username": "reg-x",
            "password": "long enough pass",
            "personal": {"name": "X", "phone": "12"},
        },
        "phone",
    ),
    (
        "/v1/register",
        None,
        {
            "bank_id": "b1",
            "org_id": "{org_a}",
            "username": "reg-x",
            "password": "long enough pass",
            "personal": {"phone": "13912345678"},
        },
        "personal.name",
    ),
    (
        "/v1/register",
        None,
        {
            "bank_id": "b1",
            "org_id": "{org_a}",
            "username": "reg-x",
            "password": "long enough pass",
            "personal": {"name": "X", "ssn": "1"},
        },
        "personal.ssn",
    ),
    ("/v1/members", "staff-a", {"org_id": "{org_a}", "personal": {"name": "X"}}, "is_volunteer"),
    (
        "/v1/members",
        "staff-a",
        {
            "org_id": "{org_a}",
            "is_elder": True,
            "personal": {"name": "X", "birth_date": "2999-01-01"},
        },
        "birth_date",
    ),
    (
        "/v1/members",
        "staff-a",
        {"org_id": "{org_a}", "is_elder": "yes", "personal": {"name": "X"}},
        "is_elder",
    ),
    (
        "/v1/members",
        "staff-a",
        {"org_id": "{org_a}", "is_elder": True, "status": "active", "personal": {"name": "X"}},
        "status",
    ),
    (
        "/v1/members",
        "staff-a",
        {"org_id": "{org_a}", "is_elder": True, "personal": {"name": "X", "id_number": "?"}},
        "id_number",
    ),
    ("/v1/members/{elder-a}/flags", "staff-a", {"flag": "rich"}, "flag"),
    (
        "/v1/members/{elder-a}/relatives",
        "elder-a",
        {"relative_id": "{vol-a}", "relation": "friend"},
        "relation",
    ),
    ("/v1/members/{elder-a}/relatives", "elder-a", {"relation": "child"}, "relative_id"),
    ("/v1/members/{elder-a}/proxies", "staff-a", {"username": "no-such-user"}, "username"),
    ("/v1/partner-keys", "b1-admin", {"name": "x", "scopes": []}, "scopes"),
    ("/v1/partner-keys", "b1-admin", {"name": "x", "scopes": "read_points"}, "scopes"),
]


@pytest.mark.parametrize(
    ("path", "who", "body", "field"), BAD_INPUT, ids=[f"{p}:{f}" for p, _, _, f in BAD_INPUT]
)
def test_bad_input_names_the_field(
    world: World, path: str, who: str | None, body: dict[str, object], field: str
) -> None:
    for key, value in world.ids.items():
        path = path.replace("{" + key + "}", value)
    raw = json.dumps(body)
    for key, value in world.ids.items():
        raw = raw.replace("{" + key + "}", value)
    headers = {"content-type": "application/json", **(world.as_(who) if who else {})}
    before = world.log.size()
    response = world.client.post(path, content=raw, headers=headers)
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["field"] == field, problem
    assert problem["detail"]
    assert world.log.size() == before  # nothing half-written to the ledger


@pytest.mark.parametrize("body", ["{not json", "[]", "null", ""])
def test_malformed_json_is_a_400(world: World, body: str) -> None:
    response = world.client.post(
        "/v1/orgs",
        content=body,
        headers={"content-type": "application/json", **world.as_("b1-admin")},
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"


def test_pending_members_cannot_register_elders(world: World) -> None:
    refused = world.client.post(
        "/v1/auth/login", json={"username": "pending-a", "password": PASSWORD}
    )
    assert refused.status_code == 401  # no login before approval
    token = world.accounts.issue_token("pending-a").token  # an operator's token, then
    response = world.client.post(
        "/v1/members",
        headers={"Authorization": f"Bearer {token}"},
        json={
            "org_id": world.ids["org_a"],
            "is_elder": True,
            "personal": {"name": "X", "phone": "13512340000"},
        },
    )
    assert response.status_code == 403


def test_self_registration_does_not_reveal_registered_phones(world: World) -> None:
    response = world.client.post(
        "/v1/register",
        json={
            "bank_id": "b1",
            "org_id": world.ids["org_a"],
            "username": "copycat",
            "password": "a fine long password",
            "personal": {"name": "某人", "phone": "13800002222"},
        },
    )
    assert response.status_code == 202  # staff see the duplicate when they approve


def test_registration_answers_alike_for_taken_and_free_usernames(world: World) -> None:
    """Registering does not tell a stranger which usernames exist: a taken name gets the same
    answer as a free one (and stores nothing), and neither can log in before approval."""

    def register(username: str) -> Any:
        return world.client.post(
            "/v1/register",
            json={
                "bank_id": "b1",
                "org_id": world.ids["org_a"],
                "username": username,
                "password": "a fine long password",
                "personal": {"name": "某人", "phone": "13800003333"},
            },
        )

    taken, free = register("vol-a"), register("brand-new-name")
    assert (taken.status_code, taken.json()) == (free.status_code, free.json())
    assert taken.status_code == 202
    assert world.client.get("/v1/me", headers=world.as_("vol-a")).status_code == 200  # untouched
    logins = [
        world.client.post(
            "/v1/auth/login", json={"username": name, "password": "a fine long password"}
        )
        for name in ("vol-a", "brand-new-name")
    ]
    assert [r.status_code for r in logins] == [401, 401]
    assert logins[0].json()["detail"] == logins[1].json()["detail"]
    # Refusals that do not depend on the name are the same for both.
    weak = [
        world.client.post(
            "/v1/register",
            json={
                "bank_id": "b1",
                "org_id": world.ids["org_a"],
                "username": name,
                "password": "short",
                "personal": {"name": "某人"},
            },
        ).json()
        for name in ("vol-a", "another-new-name")
    ]
    assert weak[0] == weak[1] and weak[0]["field"] == "password"
