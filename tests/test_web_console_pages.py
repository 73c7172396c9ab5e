"""The console's forms without a browser, on both databases: a grant posted twice grants once;
a reversal asked for on the console cannot be approved by the same admin (no button, and the
service refuses the post: 422 in the audit trail) and is approved by a second one; a policy
change shows its ledger entry; volunteers, staff and auditors get the API's 403, next to the
admin getting in."""

from __future__ import annotations

import re
from typing import Any

from tests.accounts_world import World
from tests.test_web_volunteer_pages import as_browser, form_post
from tests.test_workflow import (
    _pool_seed,
    ok,
    world,  # noqa: F401 - the workflow's world, with a catalogue
)
from tests.web_helpers import shown_forms


def pool(w: World) -> int:
    w.client.cookies.clear()
    return int(ok(w.client.get("/v1/pool", headers=w.as_("b1-admin")))["minutes"])


def test_a_grant_posted_twice_grants_once(world: World) -> None:  # noqa: F811
    w = world
    w.log.append(_pool_seed(30))
    before = pool(w)
    admin = as_browser(w, "b1-admin")
    page = admin.get("/console/pool")
    assert page.status_code == 200
    match = re.search(r'name="key" value="([0-9a-f]+)"', page.text)
    assert match
    form = {"elder_id": w.ids["elder-a"], "minutes": "10", "reason": "winter care"}
    first = form_post(admin, "/console/pool/grant", "/console/pool", key=match.group(1), **form)
    again = form_post(admin, "/console/pool/grant", "/console/pool", key=match.group(1), **form)
    assert first.status_code == again.status_code == 303
    assert first.headers["location"] == again.headers["location"]
    shown = admin.get(first.headers["location"]).text
    assert "&#34;kind&#34;:&#34;grant&#34;" in shown or '"kind":"grant"' in shown
    assert pool(w) == before - 10
    refused = form_post(
        as_browser(w, "b1-admin"),
        "/console/pool/grant",
        "/console/pool",
        key="k1",
        **{**form, "minutes": "0"},
    )
    assert refused.status_code == 400  # InvalidInput, field minutes, as the service says
    assert pool(w) == before - 10


def _grant(w: World) -> int:
    w.log.append(_pool_seed(10))
    admin = as_browser(w, "b1-admin")
    done = form_post(
        admin,
        "/console/pool/grant",
        "/console/pool",
        key="reverse0me",
        elder_id=w.ids["elder-a"],
        minutes="5",
        reason="to be reversed",
    )
    assert done.status_code == 303, done.text
    return int(done.headers["location"].rsplit("=", 1)[1])


def test_a_reversal_is_approved_by_a_second_admin_only(world: World) -> None:  # noqa: F811
    w = world
    seq = _grant(w)
    admin = as_browser(w, "b1-admin")
    asked = form_post(admin, "/console/reversals", "/console/reversals", seq=str(seq), reason="x")
    assert asked.status_code == 303, asked.text
    page = admin.get("/console/reversals").text
    assert 'class="approve"' not in page
    assert "另一位管理员" in page
    w.client.cookies.clear()
    [pending] = ok(w.client.get("/v1/reversals?status=pending", headers=w.as_("b1-admin")))
    admin = as_browser(w, "b1-admin")
    forced = form_post(admin, f"/console/reversals/{pending['id']}/approve", "/console/reversals")
    assert forced.status_code == 422
    assert "冲正须由另一位管理员批准" in forced.text
    second = as_browser(w, "b1-admin2")
    assert 'class="approve"' in second.get("/console/reversals").text
    approved = form_post(
        second, f"/console/reversals/{pending['id']}/approve", "/console/reversals"
    )
    assert approved.status_code == 303, approved.text
    w.client.cookies.clear()
    [done] = ok(w.client.get("/v1/reversals?status=approved", headers=w.as_("b1-admin")))
    assert done["decided_by"] == w.ids["b1-admin2"]
    events = ok(
        w.client.get(
            "/v1/audit/events?action=POST%20/console/reversals/",
            headers=w.as_("auditor"),
        )
    )
    assert [(e["actor"], e["outcome"]) for e in events if e["action"].endswith("/approve")] == [
        (w.ids["b1-admin"], "refused"),
        (w.ids["b1-admin2"], "ok"),
    ]


def test_a_policy_change_shows_its_entry(world: World) -> None:  # noqa: F811
    w = world
    w.client.cookies.clear()
    current = ok(w.client.get("/v1/policy", headers=w.as_("b1-admin")))
    admin = as_browser(w, "b1-admin")
    values: dict[str, Any] = {
        k: str(current[k])
        for k in ("redemption_age", "stored_cap_minutes", "daily_cap_minutes", "record_late_days")
    }
    values["timezone"] = current["timezone"]
    if current["gifts_allowed"]:
        values["gifts_allowed"] = "1"
    unchanged = form_post(admin, "/console/policy", "/console/policy", **values)
    assert unchanged.status_code == 400
    values["daily_cap_minutes"] = "420"
    changed = form_post(admin, "/console/policy", "/console/policy", **values)
    assert changed.status_code == 303
    shown = admin.get(changed.headers["location"]).text
    assert "policy:b1:" in shown
    w.client.cookies.clear()
    assert ok(w.client.get("/v1/policy", headers=w.as_("b1-admin")))["daily_cap_minutes"] == 420


def test_the_console_refuses_whom_the_api_refuses(world: World) -> None:  # noqa: F811
    w = world
    for who in ("vol-a", "staff-a", "auditor"):
        w.client.cookies.clear()
        api = w.client.get(  # in the page's language (zh-CN, the default)
            "/v1/reversals?status=pending", headers={**w.as_(who), "accept-language": "zh-CN"}
        )
        assert api.status_code == 403
        browser = as_browser(w, who)
        for path in ("/console", "/console/catalogue", "/console/pool", "/console/orgs"):
            page = browser.get(path)
            assert page.status_code == 403, (who, path)
            assert api.json()["detail"] in page.text
        posted = form_post(
            browser, "/console/orgs", "/account", name="Not mine", kind="community_centre"
        )
        assert posted.status_code == 403
    admin = as_browser(w, "b1-admin")
    assert admin.get("/console").status_code == 200
    made = form_post(
        admin, "/console/orgs", "/console/orgs", name="新的服务站", kind="service_station"
    )
    assert made.status_code == 303
    assert "新的服务站" in admin.get("/console/orgs").text


def test_a_partner_key_is_shown_once_and_revoked(world: World) -> None:  # noqa: F811
    w = world
    admin = as_browser(w, "b1-admin")
    made = form_post(
        admin, "/console/partners", "/console/partners", name="市养老平台", scope_read_points="1"
    )
    assert made.status_code == 201
    secret = re.search(r'<code class="wrap">([^<]+)</code>', made.text)
    assert secret
    w.client.cookies.clear()
    keys = ok(w.client.get("/v1/partner-keys", headers=w.as_("b1-admin")))
    [key] = [k for k in keys if k["name"] == "市养老平台"]
    assert key["scopes"] == ["read_points"]
    assert secret.group(1) not in w.client.get("/v1/partner-keys", headers=w.as_("b1-admin")).text
    admin = as_browser(w, "b1-admin")
    assert secret.group(1) not in admin.get("/console/partners").text  # shown once
    revoked = form_post(admin, f"/console/partners/{key['id']}/revoke", "/console/partners")
    assert revoked.status_code == 303
    w.client.cookies.clear()
    keys = ok(w.client.get("/v1/partner-keys", headers=w.as_("b1-admin")))
    [after] = [k for k in keys if k["id"] == key["id"]]
    assert after["revoked_at"] is not None


def test_a_refused_console_form_comes_back_as_typed(world: World) -> None:  # noqa: F811
    """Each console form refused for one wrong field comes back with the refusal and everything
    the administrator typed — names, the chosen category, kind and scopes, boxes ticked or not —
    next to the same form going through once that field is corrected."""
    w = world
    admin = as_browser(w, "b1-admin")

    def refused_then_done(path: str, page: str, typed: dict[str, str], fix: dict[str, str]) -> Any:
        assert typed not in shown_forms(admin.get(page).text, path)  # not what it shows anyway
        refused = form_post(admin, path, page, **typed)
        assert 400 <= refused.status_code < 500 and 'id="error"' in refused.text, refused.text
        assert typed in shown_forms(refused.text, path), shown_forms(refused.text, path)
        return form_post(admin, path, page, **{**typed, **fix})

    new_type = {
        "code": "home_repair",
        "name_zh": "上门维修",
        "name_en": "Repairs at home",
        "category": "errands",
        "weight_permille": "90",  # under 100
    }  # and "active" left unticked
    added = refused_then_done(
        "/console/catalogue", "/console/catalogue", new_type, {"weight_permille": "1200"}
    )
    assert added.status_code == 303
    row = {"code": "meal", "weight_permille": "99999"}  # unticked: to be made inactive
    changed = refused_then_done(
        "/console/catalogue", "/console/catalogue", row, {"weight_permille": "1100"}
    )
    assert changed.status_code == 303
    w.client.cookies.clear()
    types = ok(w.client.get("/v1/catalogue?all=true", headers=w.as_("b1-admin")))
    assert {(t["code"], t["weight_permille"], t["active"]) for t in types} >= {
        ("home_repair", 1200, False),
        ("meal", 1100, False),
    }

    current = ok(w.client.get("/v1/policy", headers=w.as_("b1-admin")))
    policy = {
        "redemption_age": "65",
        "stored_cap_minutes": str(current["stored_cap_minutes"] + 60),
        "daily_cap_minutes": "300",
        "record_late_days": "9",
        "timezone": "Asia/Nowhere",
        **({} if current["gifts_allowed"] else {"gifts_allowed": "1"}),  # the box turned over
    }
    admin = as_browser(w, "b1-admin")
    saved = refused_then_done(
        "/console/policy", "/console/policy", policy, {"timezone": "Asia/Urumqi"}
    )
    assert saved.status_code == 303
    w.client.cookies.clear()
    now = ok(w.client.get("/v1/policy", headers=w.as_("b1-admin")))
    assert (now["daily_cap_minutes"], now["timezone"]) == (300, "Asia/Urumqi")
    assert now["gifts_allowed"] is not current["gifts_allowed"]

    admin = as_browser(w, "b1-admin")
    key = {"name": "市养老平台" * 21, "scope_read_statement": "1", "scope_receive_webhooks": "1"}
    made = refused_then_done("/console/partners", "/console/partners", key, {"name": "市养老平台"})
    assert made.status_code == 201
    org = {"name": "宁海路服务站", "kind": "service_station", "phone": "call us"}
    added = refused_then_done("/console/orgs", "/console/orgs", org, {"phone": "025-8888 0000"})
    assert added.status_code == 303
