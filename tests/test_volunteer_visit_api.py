"""``GET /v1/requests/{id}/visit``: the visit page's view for a volunteer's phone, by the page's
rule. The volunteer a request is assigned to, while it is assigned, gets the elder's masked
name, her area and full address, the window and the service, and the read of the address is in
her access records as on the page; everyone else (another volunteer, another organisation's
staff, her own organisation's staff and the elder's side, who have their own views, an unknown
id) gets the 404 of a request that does not exist, and each refusal is shown next to the
assigned volunteer succeeding on the same request."""

from __future__ import annotations

from typing import Any

from tests.accounts_world import World
from tests.test_web_volunteer_pages import as_browser, iso, open_request
from tests.test_workflow import (
    log_record,
    ok,
    refused,
    world,  # noqa: F401 - the workflow's world, with a catalogue
)


def visit_of(w: World, who: str, request_id: str, **headers: str) -> Any:
    return w.client.get(f"/v1/requests/{request_id}/visit", headers={**w.as_(who), **headers})


def access_records(w: World) -> list[tuple[str, str, list[str], str]]:
    records = ok(
        w.client.get(f"/v1/members/{w.ids['elder-a']}/access-records", headers=w.as_("elder-a"))
    )
    return [(r["actor"], r["role"], r["fields"], r["reason"]) for r in records]


def claimed(w: World) -> str:
    request_id = open_request(w)
    ok(w.client.post(f"/v1/requests/{request_id}/claim", headers=w.as_("vol-a")))
    return request_id


def test_the_assigned_volunteer_is_shown_the_visit(world: World) -> None:  # noqa: F811
    w = world
    request_id = claimed(w)
    assert access_records(w) == []
    shown = ok(visit_of(w, "vol-a", request_id))
    request = ok(w.client.get(f"/v1/requests/{request_id}", headers=w.as_("vol-a")))
    assert shown == {
        "request_id": request_id,
        "status": "assigned",
        "elder_id": w.ids["elder-a"],
        "elder_name": "王*英",
        "area": "南京市鼓****",
        "address": "南京市鼓楼区湖南路12号",
        "window_start": request["window_start"],
        "window_end": request["window_end"],
        "minutes": 60,
        "notes": None,
        "service_code": "meal",
        "service_name_zh": "助餐",
        "service_name_en": "Meals",
        "timezone": "Asia/Shanghai",
    }
    assert "王秀英" not in str(shown) and "13800002222" not in str(shown)
    # the same access record the visit page appends: the volunteer, the address, this visit
    reason = f"assigned visit {request_id}"
    api_read = (w.ids["vol-a-user"], "volunteer", ["address"], reason)
    assert access_records(w) == [api_read]
    page = as_browser(w, "vol-a").get(f"/volunteer/visit/{request_id}")
    assert page.status_code == 200 and "南京市鼓楼区湖南路12号" in page.text
    assert access_records(w) == [api_read, api_read]


def test_everyone_else_finds_no_such_request(world: World) -> None:  # noqa: F811
    """Another volunteer, another organisation's staff, the elder's own organisation's staff,
    a bank admin, the elder and her family proxy: 404, as for an id that does not exist, and
    nothing recorded; then the assigned volunteer's same call succeeds."""
    w = world
    request_id = claimed(w)
    for who in ("vol-b", "staff-b", "staff-a", "admin-a", "b1-admin", "elder-a", "family-a"):
        body = refused(visit_of(w, who, request_id), 404, "not-found")
        assert request_id in body["detail"], (who, body)
        assert "湖南路" not in str(body), who
    refused(visit_of(w, "vol-a", "0123456789abcdef"), 404, "not-found")
    zh = refused(visit_of(w, "vol-b", request_id, **{"Accept-Language": "zh-CN"}), 404, "not-found")
    assert zh["detail"] == f"没有编号为 {request_id} 的需求"
    assert access_records(w) == []
    assert ok(visit_of(w, "vol-a", request_id))["address"] == "南京市鼓楼区湖南路12号"
    assert len(access_records(w)) == 1


def test_only_while_assigned(world: World) -> None:  # noqa: F811
    """Given back, the request is open to every volunteer again and its visit is no one's
    (404); once its service is confirmed (completed) or it is cancelled, its volunteer is told
    its state (409) and shown nothing. Each time the same call succeeded while it was assigned."""
    w = world
    given_back = claimed(w)
    ok(visit_of(w, "vol-a", given_back))
    ok(w.client.post(f"/v1/requests/{given_back}/withdraw", headers=w.as_("vol-a")))
    refused(visit_of(w, "vol-a", given_back), 404, "not-found")

    served = claimed(w)
    ok(visit_of(w, "vol-a", served))
    record = ok(log_record(w, "vol-a", "elder-a", 2, 1, request_id=served), 201)
    assert ok(visit_of(w, "vol-a", served))["status"] == "assigned"  # waiting for the elder
    ok(w.client.post(f"/v1/records/{record['id']}/confirm", headers=w.as_("elder-a"), json={}))
    done = refused(visit_of(w, "vol-a", served), 409, "wrong-state")
    assert "completed" in done["detail"] and "湖南路" not in str(done)

    cancelled = claimed(w)
    ok(visit_of(w, "vol-a", cancelled))
    ok(
        w.client.post(
            f"/v1/requests/{cancelled}/cancel",
            headers=w.as_("elder-a"),
            json={"reason": "my daughter came"},
        )
    )
    zh = refused(
        visit_of(w, "vol-a", cancelled, **{"Accept-Language": "zh-CN"}), 409, "wrong-state"
    )
    assert "已取消" in zh["detail"], zh
    assert len(access_records(w)) == 4  # the four reads while assigned, none after


def test_no_address_on_file_nothing_recorded(world: World) -> None:  # noqa: F811
    """Nothing revealed, nothing recorded: her area and address are none, her name shown."""
    w = world
    asked = ok(
        w.client.post(
            "/v1/requests",
            headers=w.as_("staff-b"),
            json={
                "elder_id": w.ids["elder-b"],
                "service_code": "meal",
                "window_start": iso(3),
                "window_end": iso(-1),
                "minutes": 60,
            },
        ),
        201,
    )
    refused(visit_of(w, "vol-b", asked["id"]), 404, "not-found")  # open: not hers yet
    ok(w.client.post(f"/v1/requests/{asked['id']}/claim", headers=w.as_("vol-b")))
    shown = ok(visit_of(w, "vol-b", asked["id"]))
    assert (shown["elder_name"], shown["area"], shown["address"]) == ("孙*", None, None)
    records = ok(
        w.client.get(f"/v1/members/{w.ids['elder-b']}/access-records", headers=w.as_("b1-admin"))
    )
    assert records == []
