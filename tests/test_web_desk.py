"""The organisation's desk without a browser, on both databases: staff land on their desk,
a volunteer gets the API's refusal of the dispatch board next to staff using it, a request
asked for an elder is dispatched, reassigned and cancelled, a record is confirmed for the
elder (``staff_for_elder``, the audit event names her) and verified by another staff member
after a TOTP step-up, and the people pages register, reveal (recorded), flag and approve."""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from accounts import totp
from accounts.errors import Forbidden, NotFound, TokenInvalid
from accounts.model import Role
from care.service import CareService
from tests.accounts_world import PASSWORD, World, person
from tests.test_workflow import (
    give_to_the_elder,
    serve_an_hour,
    world,  # noqa: F401 - the workflow's world, with a catalogue
)
from tests.web_helpers import browser_login, csrf_token, shown_forms
from web.security import SESSION_COOKIE

SHANGHAI = ZoneInfo("Asia/Shanghai")


def yesterday() -> datetime:
    """Yesterday in the bank's time zone: a fixed 09:00-11:00 window never crosses midnight."""
    return (datetime.now(SHANGHAI) - timedelta(days=1)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )


def as_browser(w: World, username: str, password: str = PASSWORD) -> Any:
    w.client.cookies.clear()
    assert browser_login(w.client, username, password).status_code == 303
    return w.client


def form_post(client: Any, path: str, page: str, **data: str) -> Any:
    token = csrf_token(client, page)
    return client.post(path, data={**data, "_csrf_token": token}, follow_redirects=False)


def api(w: World) -> Any:
    w.client.cookies.clear()
    return w.client


def ask_on_page(w: World) -> str:
    """Staff ask for a meal for elder-a, yesterday 09:00-11:00, on her desk page."""
    staff = as_browser(w, "staff-a")
    page = f"/desk/people/{w.ids['elder-a']}"
    asked = form_post(
        staff,
        f"{page}/request",
        page,
        service_code="meal",
        day=yesterday().date().isoformat(),
        start="09:00",
        end="11:00",
        minutes="60",
        notes="湖南路12号",
    )
    assert asked.status_code == 303, asked.text
    match = re.fullmatch(r"/desk/dispatch/(\w+)", asked.headers["location"])
    assert match
    return match.group(1)


def test_a_refused_request_for_an_elder_keeps_what_was_typed(world: World) -> None:  # noqa: F811
    """A desk worker who typed a long address into the notes, chose a service and ticked "pay
    with her stored time" gets the refusal (the visit ends before it starts) with all of it
    still in the form; the same form with the end corrected makes the request."""
    w = world
    staff = as_browser(w, "staff-a")
    page = f"/desk/people/{w.ids['elder-a']}"
    [blank] = shown_forms(staff.get(page).text, f"{page}/request")
    typed = {
        "service_code": "nursing",  # not the first offered
        "day": yesterday().date().isoformat(),
        "start": "14:00",
        "end": "13:30",
        "minutes": "45",
        "notes": "鼓楼区湖南路12号3单元502室，上楼前请先打电话 <不要按门铃>",
        "redeem": "1",
    }
    assert blank["service_code"] != typed["service_code"] and "redeem" not in blank
    refused = form_post(staff, f"{page}/request", page, **typed)
    assert refused.status_code == 400 and 'id="error"' in refused.text
    assert shown_forms(refused.text, f"{page}/request") == [typed]
    assert 'id="end" name="end" type="time" required value="13:30" aria-invalid="true"' in (
        refused.text
    )
    w.client.cookies.clear()  # the API's calls, without the browser's session
    serve_an_hour(w)
    give_to_the_elder(w, 90)  # 45 minutes of nursing cost her 68
    staff = as_browser(w, "staff-a")
    done = form_post(staff, f"{page}/request", page, **{**typed, "end": "15:00"})
    assert done.status_code == 303, done.text
    made = api(w).get(
        done.headers["location"].replace("/desk/dispatch", "/v1/requests"), headers=w.as_("staff-a")
    )
    assert made.status_code == 200, made.text
    assert made.json()["notes"] == typed["notes"] and made.json()["redeem"] is True


def test_a_request_she_cannot_pay_with_her_stored_time_is_refused_at_the_desk(world: World) -> None:  # noqa: F811
    """Ticking "pay with her stored time" for an elder with none says so in Chinese at the
    tick box, how much she has and needs, and no request reaches the board; once she has the
    minutes, the same form makes the request."""
    w = world
    staff = as_browser(w, "staff-a")
    w.client.cookies.set("tb_lang", "zh-CN")
    page = f"/desk/people/{w.ids['elder-a']}"
    typed = {
        "service_code": "meal",
        "day": yesterday().date().isoformat(),
        "start": "09:00",
        "end": "11:00",
        "minutes": "60",
        "redeem": "1",
    }
    refused = form_post(staff, f"{page}/request", page, **typed)
    assert refused.status_code == 422, refused.text
    assert "老人存储的时间只有 0 分钟，这项服务需要 60 分钟" in refused.text
    assert 'name="redeem" value="1" checked aria-invalid="true"' in refused.text
    assert api(w).get("/v1/requests", headers=w.as_("staff-a")).json() == []
    # Asked through the API all the same: refused as well, the same rule (care.model).
    unpaid = api(w).post(
        "/v1/requests",
        headers=w.as_("elder-a"),
        json={
            "elder_id": w.ids["elder-a"],
            "service_code": "meal",
            "minutes": 60,
            "redeem": True,
            "window_start": (yesterday() + timedelta(hours=9)).isoformat(),
            "window_end": (yesterday() + timedelta(hours=11)).isoformat(),
        },
    )
    assert unpaid.status_code == 422 and unpaid.json()["field"] == "redeem", unpaid.text
    w.client.cookies.clear()  # the API's calls, without the browser's session
    serve_an_hour(w)
    give_to_the_elder(w, 60)
    staff = as_browser(w, "staff-a")
    asked = form_post(staff, f"{page}/request", page, **typed)
    assert asked.status_code == 303, asked.text
    # On the board, what she pays with her time is marked; a request she does not pay is not.
    paid = asked.headers["location"].removeprefix("/desk/dispatch/")
    free = ask_on_page(w)
    board = as_browser(w, "staff-a").get("/desk/dispatch").text

    def row(request_id: str) -> str:
        start = board.index(f'id="req-{request_id}"')
        return board[start : board.index("</tr>", start)]

    assert "用她存储的时间支付" in row(paid) and "用她存储的时间支付" not in row(free)


def test_the_desks_other_refused_forms_keep_what_was_typed(world: World) -> None:  # noqa: F811
    """A flag with its note, a relative's relation and a new staff login's name and role come
    back as typed after a refusal (a staff login's password never does), next to the corrected
    form going through."""
    w = world
    staff = as_browser(w, "staff-a")
    registered = form_post(
        staff,
        "/desk/people/new",
        "/desk/people/new",
        org_id=w.ids["org_a"],
        kind="elder",
        name="钱桂兰",
    )
    page = registered.headers["location"].split("?")[0]
    flag = {"flag": "low_income", "note": "低保户，子女在外地，每周六回来一次"}
    assert form_post(staff, f"{page}/flags", page, **flag).status_code == 303
    again = form_post(staff, f"{page}/flags", page, **flag)  # set already
    assert again.status_code == 409 and 'id="error"' in again.text
    assert shown_forms(again.text, f"{page}/flags") == [flag]
    other = form_post(staff, f"{page}/flags", page, **{**flag, "flag": "empty_nest"})
    assert other.status_code == 303
    relative = {"relative_search": "13900000000", "relation": "grandchild"}
    unknown = form_post(staff, f"{page}/relatives", page, **relative)
    assert unknown.status_code == 400 and 'id="error"' in unknown.text
    assert shown_forms(unknown.text, f"{page}/relatives") == [relative]
    found = form_post(
        staff, f"{page}/relatives", page, **{**relative, "relative_search": "13800003333"}
    )
    assert found.status_code == 303
    [link] = w.accounts.list_relatives(w.principal("staff-a"), page.rsplit("/", 1)[1])
    assert link.relation.value == "grandchild"

    admin = as_browser(w, "admin-a")
    path = f"/desk/staff/{w.ids['org_a']}"
    login = {"username": "new admin!", "role": "org_admin", "password": "a chosen passphrase"}
    refused = form_post(admin, path, "/desk/staff", **login)
    assert refused.status_code == 400 and 'id="error"' in refused.text
    assert shown_forms(refused.text, path) == [{**login, "password": ""}]
    assert login["password"] not in refused.text
    made = form_post(admin, path, "/desk/staff", **{**login, "username": "new-admin"})
    assert made.status_code == 200 and 'id="error"' not in made.text
    user = w.accounts.user_by_username("new-admin")
    assert user is not None and w.accounts.principal_for_user(user.id).has(Role.ORG_ADMIN)


def test_staff_land_on_their_desk_and_others_do_not(world: World) -> None:  # noqa: F811
    w = world
    staff = as_browser(w, "staff-a")
    landing = staff.get("/", follow_redirects=False)
    assert (landing.status_code, landing.headers["location"]) == (303, "/desk")
    desk = staff.get("/desk")
    assert desk.status_code == 200
    assert 'href="/desk/dispatch"' in desk.text
    volunteer = as_browser(w, "vol-a")
    assert volunteer.get("/", follow_redirects=False).status_code == 200


def test_a_volunteer_gets_the_apis_answer_on_the_dispatch_board(world: World) -> None:  # noqa: F811
    w = world
    request_id = ask_on_page(w)
    refused_api = api(w).post(
        f"/v1/requests/{request_id}/assign",
        headers={**w.as_("vol-a"), "accept-language": "en"},
        json={"volunteer_id": w.ids["vol-a"]},
    )
    assert refused_api.status_code == 403
    detail = refused_api.json()["detail"]
    volunteer = as_browser(w, "vol-a")
    w.client.cookies.set("tb_lang", "en")
    for path in ("/desk", "/desk/dispatch", f"/desk/dispatch/{request_id}", "/desk/records"):
        refused = volunteer.get(path)
        assert refused.status_code == 403, path
        assert detail in html.unescape(refused.text), path
    posted = form_post(
        volunteer,
        f"/desk/dispatch/{request_id}/assign",
        "/volunteer",
        volunteer_id=w.ids["vol-a"],
    )
    assert posted.status_code == 403
    assert api(w).get(f"/v1/requests/{request_id}", headers=w.as_("staff-a")).json()["status"] == (
        "open"
    )
    # The same board and the same assignment work for the elder's organisation's staff.
    staff = as_browser(w, "staff-a")
    assert staff.get("/desk/dispatch").status_code == 200
    assert form_post(
        staff,
        f"/desk/dispatch/{request_id}/assign",
        "/desk/dispatch",
        volunteer_id=w.ids["vol-a"],
    ).headers["location"] == ("/desk/dispatch?done=assigned")
    # Staff of another organisation do not see the request at all (as the API: 404).
    other = as_browser(w, "staff-b")
    assert other.get(f"/desk/dispatch/{request_id}").status_code == 404
    assert request_id not in other.get("/desk/dispatch").text


def test_dispatch_suggests_reassigns_and_cancels(world: World) -> None:  # noqa: F811
    w = world
    request_id = ask_on_page(w)
    staff = as_browser(w, "staff-a")
    board = staff.get("/desk/dispatch").text
    assert f'id="req-{request_id}"' in board
    assert "王*英" in board and "王秀英" not in board  # the elder's name stays masked
    assert "南京市鼓****" in board  # her area
    page = staff.get(f"/desk/dispatch/{request_id}").text
    for volunteer in ("vol-a", "family-a"):
        assert f'value="{w.ids[volunteer]}"' in page
    assert "0 / 720" in page  # nothing recorded or assigned that day, of a 720-minute cap
    assigned = form_post(
        staff, f"/desk/dispatch/{request_id}/assign", "/desk/dispatch", volunteer_id=""
    )
    assert assigned.status_code == 400
    form_post(
        staff,
        f"/desk/dispatch/{request_id}/assign",
        "/desk/dispatch",
        volunteer_id=w.ids["vol-a"],
    )
    # A second request in the same window: vol-a is busy then, with 60 minutes that day.
    second = ask_on_page(w)
    staff = as_browser(w, "staff-a")
    page = staff.get(f"/desk/dispatch/{second}").text
    vol_a = page.index(f'value="{w.ids["vol-a"]}"')
    family = page.index(f'value="{w.ids["family-a"]}"')
    assert family < vol_a, "the free volunteer comes first"
    assert "60 / 720" in page[vol_a : vol_a + 600]
    reassigned = form_post(
        staff,
        f"/desk/dispatch/{request_id}/assign",
        f"/desk/dispatch/{request_id}",
        volunteer_id=w.ids["family-a"],
    )
    assert reassigned.status_code == 303
    now = api(w).get(f"/v1/requests/{request_id}", headers=w.as_("staff-a")).json()
    assert (now["status"], now["volunteer_id"]) == ("assigned", w.ids["family-a"])
    staff = as_browser(w, "staff-a")
    no_reason = form_post(
        staff, f"/desk/dispatch/{request_id}/cancel", f"/desk/dispatch/{request_id}", reason=""
    )
    assert no_reason.status_code == 400
    assert 'aria-invalid="true"' in no_reason.text
    cancelled = form_post(
        staff,
        f"/desk/dispatch/{request_id}/cancel",
        f"/desk/dispatch/{request_id}",
        reason="老人住院",
    )
    assert cancelled.status_code == 303
    now = api(w).get(f"/v1/requests/{request_id}", headers=w.as_("staff-a")).json()
    assert (now["status"], now["cancel_reason"]) == ("cancelled", "老人住院")


def test_the_load_counts_the_volunteers_minutes_in_the_whole_bank(world: World) -> None:  # noqa: F811
    """The daily cap counts a volunteer's minutes in every organisation, so the board does:
    vol-a's hour for an elder of organisation B (which staff of A cannot list) shows as load
    on A's dispatch page for a request that day, with the cap beside it."""
    w = world
    request_id = ask_on_page(w)
    staff = as_browser(w, "staff-a")
    before = staff.get(f"/desk/dispatch/{request_id}").text
    vol_a = before.index(f'value="{w.ids["vol-a"]}"')
    assert "0 / 720" in before[vol_a : vol_a + 600]
    day = yesterday()
    elsewhere = api(w).post(
        "/v1/records",
        headers=w.as_("vol-a"),
        json={
            "elder_id": w.ids["elder-b"],
            "service_code": "meal",
            "check_in": (day + timedelta(hours=14)).astimezone(UTC).isoformat(),
            "check_out": (day + timedelta(hours=15, minutes=30)).astimezone(UTC).isoformat(),
        },
    )
    assert elsewhere.status_code == 201, elsewhere.text
    staff = as_browser(w, "staff-a")
    assert elsewhere.json()["id"] not in staff.get("/desk/records").text
    after = staff.get(f"/desk/dispatch/{request_id}").text
    vol_a = after.index(f'value="{w.ids["vol-a"]}"')
    family = after.index(f'value="{w.ids["family-a"]}"')
    assert "90 / 720" in after[vol_a : vol_a + 600]
    assert "0 / 720" in after[family : family + 600]
    assert family < vol_a, "equally free, the less loaded volunteer comes first"


def test_the_bank_wide_load_and_an_elders_proxies_are_for_her_staff(world: World) -> None:  # noqa: F811
    """``day_load`` and ``list_proxies`` show other organisations' totals and who acts for an
    elder: the elder's organisation's staff get them, a volunteer, a proxy and another
    organisation's staff do not."""
    w = world
    request_id = ask_on_page(w)
    care: CareService = w.client.app.state.care
    volunteers = [w.ids["vol-a"], w.ids["vol-b"]]
    assert care.day_load(w.principal("staff-a"), request_id, volunteers).logged == {}
    with pytest.raises(Forbidden):
        care.day_load(w.principal("vol-a"), request_id, volunteers)
    with pytest.raises(NotFound):
        care.day_load(w.principal("staff-b"), request_id, volunteers)
    [proxy] = w.accounts.list_proxies(w.principal("staff-a"), w.ids["elder-a"])
    assert (proxy.username, proxy.member_id) == ("family-a", w.ids["family-a"])
    assert w.accounts.list_proxies(w.principal("elder-a"), w.ids["elder-a"]) == [proxy]
    with pytest.raises(Forbidden):
        w.accounts.list_proxies(w.principal("family-a"), w.ids["elder-a"])
    with pytest.raises(NotFound):
        w.accounts.list_proxies(w.principal("staff-b"), w.ids["elder-a"])


def served(w: World, request_id: str, volunteer: str = "vol-a") -> str:
    """The volunteer serves the request and logs the record through the API."""
    day = yesterday()
    logged = api(w).post(
        "/v1/records",
        headers=w.as_(volunteer),
        json={
            "elder_id": w.ids["elder-a"],
            "service_code": "meal",
            "check_in": (day + timedelta(hours=9, minutes=30)).astimezone(UTC).isoformat(),
            "check_out": (day + timedelta(hours=10, minutes=30)).astimezone(UTC).isoformat(),
            "request_id": request_id,
        },
    )
    assert logged.status_code == 201, logged.text
    return str(logged.json()["id"])


def enrol_totp(w: World, who: str) -> tuple[str, int]:
    principal = w.accounts.principal_for_user(w.ids[who])
    secret, _ = w.accounts.begin_totp(principal, w.enrolment_code(who))
    step = int(datetime.now(UTC).timestamp() // 30)
    w.accounts.confirm_totp(principal, totp.code_at(secret, step))
    return secret, step


def test_confirm_for_the_elder_then_another_staff_verifies_after_step_up(world: World) -> None:  # noqa: F811
    w = world
    request_id = ask_on_page(w)
    staff = as_browser(w, "staff-a")
    form_post(
        staff,
        f"/desk/dispatch/{request_id}/assign",
        "/desk/dispatch",
        volunteer_id=w.ids["vol-a"],
    )
    record_id = served(w, request_id)
    staff = as_browser(w, "staff-a")
    records = staff.get("/desk/records").text
    assert f"/desk/records/{record_id}/confirm" in records
    assert "不能" in records and 'id="rule"' in records  # the rule is on the page
    confirmed = form_post(staff, f"/desk/records/{record_id}/confirm", "/desk/records")
    assert confirmed.headers["location"] == "/desk/records?done=confirmed"
    record = api(w).get(f"/v1/records/{record_id}", headers=w.as_("staff-a")).json()
    assert (record["status"], record["confirmed_as"]) == ("confirmed", "staff_for_elder")
    [event] = [
        e
        for e in w.client.app.state.audit.all_events()
        if e.action == "POST /desk/records/{record_id}/confirm"
    ]
    assert (event.objects, event.on_behalf, event.status) == ((record_id,), w.ids["elder-a"], 303)

    # Whoever confirmed cannot verify: the page says so, and the service refuses even with TOTP.
    staff = as_browser(w, "staff-a")
    page = staff.get("/desk/records").text
    assert f"/desk/records/{record_id}/verify" not in page
    w.client.cookies.set(SESSION_COOKIE, w.tokens["staff-a-2fa"])  # a session opened with TOTP
    assert f"/desk/records/{record_id}/verify" not in staff.get("/desk/records").text
    refused = form_post(staff, f"/desk/records/{record_id}/verify", "/desk/records")
    assert refused.status_code == 422
    assert "不能" in refused.text

    # Another staff member: an administrator with no second factor yet is told whom to ask
    # for an enrolment code, not asked for a code they cannot have.
    other = as_browser(w, "admin-a")
    page = other.get("/desk/records").text
    assert "您还没有绑定动态码" in page and "银行管理员" in page
    assert 'action="/desk/step-up"' not in page
    assert f"/desk/records/{record_id}/verify" not in page
    too_soon = form_post(other, f"/desk/records/{record_id}/verify", "/desk/records")
    assert too_soon.status_code == 403
    secret, step = enrol_totp(w, "admin-a")
    # Enrolled, the session still lacks the code: now the page asks for it.
    page = other.get("/desk/records").text
    assert 'action="/desk/step-up"' in page and "您还没有绑定动态码" not in page
    wrong = form_post(other, "/desk/step-up", "/desk/records", password=PASSWORD, totp="000000")
    assert wrong.status_code == 401
    stepped = form_post(
        other,
        "/desk/step-up",
        "/desk/records",
        password=PASSWORD,
        totp=totp.code_at(secret, step + 1),
        next="/desk/records#to-verify",
    )
    assert stepped.status_code == 303, stepped.text
    assert stepped.headers["location"] == "/desk/records#to-verify"
    page = other.get("/desk/records").text
    assert f"/desk/records/{record_id}/verify" in page
    verified = form_post(other, f"/desk/records/{record_id}/verify", "/desk/records")
    assert verified.headers["location"] == "/desk/records?done=verified"
    record = api(w).get(f"/v1/records/{record_id}", headers=w.as_("staff-a")).json()
    assert record["status"] == "verified" and record["deposit_seq"] is not None


def test_a_phone_on_file_says_where_she_is_registered(world: World) -> None:  # noqa: F811
    """Registering a phone already on file tells the desk what to do next: search its own
    member list, or ask the bank's administrator when another organisation has her; a new
    phone registers."""
    w = world
    staff = as_browser(w, "staff-a")
    w.client.cookies.set("tb_lang", "zh-CN")

    def register(phone: str) -> Any:
        return form_post(
            staff,
            "/desk/people/new",
            "/desk/people/new",
            org_id=w.ids["org_a"],
            kind="elder",
            name="吴桂兰",
            phone=phone,
        )

    here = register("13800001111")  # vol-a's, of this organisation
    assert (
        here.status_code == 409 and "本机构已有成员使用这个手机号，请在成员列表中搜索" in here.text
    )
    elsewhere = register("13800004444")  # vol-b's, of organisation B
    assert elsewhere.status_code == 409
    assert "其他机构已有成员使用这个手机号，请联系银行管理员" in elsewhere.text
    assert register("13800012399").status_code == 303


def test_reject_needs_a_reason(world: World) -> None:  # noqa: F811
    w = world
    request_id = ask_on_page(w)
    staff = as_browser(w, "staff-a")
    form_post(
        staff, f"/desk/dispatch/{request_id}/assign", "/desk/dispatch", volunteer_id=w.ids["vol-a"]
    )
    record_id = served(w, request_id)
    staff = as_browser(w, "staff-a")
    empty = form_post(staff, f"/desk/records/{record_id}/reject", "/desk/records", reason="")
    assert empty.status_code == 400
    done = form_post(staff, f"/desk/records/{record_id}/reject", "/desk/records", reason="未上门")
    assert done.headers["location"] == "/desk/records?done=rejected"
    record = api(w).get(f"/v1/records/{record_id}", headers=w.as_("staff-a")).json()
    assert (record["status"], record["rejected_reason"]) == ("rejected", "未上门")


def test_people_register_reveal_flag_approve_and_proxy(world: World) -> None:  # noqa: F811
    w = world
    staff = as_browser(w, "staff-a")
    registered = form_post(
        staff,
        "/desk/people/new",
        "/desk/people/new",
        org_id=w.ids["org_a"],
        kind="elder",
        name="钱桂兰",
        birth_date="1938-05-06",
        address="南京市鼓楼区宁海路5号",
    )
    assert registered.status_code == 303, registered.text
    member_id = registered.headers["location"].split("/")[3].split("?")[0]
    member = api(w).get(f"/v1/members/{member_id}", headers=w.as_("staff-a")).json()
    assert member["status"] == "active" and member["assisted"] and member["is_elder"]
    staff = as_browser(w, "staff-a")
    page = staff.get(f"/desk/people/{member_id}").text
    assert "钱*兰" in page and "宁海路5号" not in page
    short = form_post(
        staff, f"/desk/people/{member_id}/reveal", f"/desk/people/{member_id}", reveal_reason="看"
    )
    assert short.status_code == 400 and "宁海路5号" not in short.text
    shown = form_post(
        staff,
        f"/desk/people/{member_id}/reveal",
        f"/desk/people/{member_id}",
        reveal_reason="安排上门送餐",
    )
    # The reveal redirects to a page a reload only shows again: one reveal, one record.
    assert shown.status_code == 303
    full = shown.headers["location"]
    assert full.startswith(f"/desk/people/{member_id}?revealed=")
    for _ in range(2):
        again = staff.get(full)
        assert again.status_code == 200 and "钱桂兰" in again.text and "宁海路5号" in again.text
    seen = w.accounts.access_records(w.principal("b1-admin"), member_id)
    assert [(r["actor"], r["reason"]) for r in seen] == [(w.ids["staff-a"], "安排上门送餐")]
    assert [
        e.status
        for e in w.client.app.state.audit.all_events()
        if e.action == "POST /desk/people/{member_id}/reveal"
    ] == [400, 303]
    # The address of that page shows nothing to a colleague: they reveal for themselves.
    colleague = as_browser(w, "admin-a").get(full)
    assert colleague.status_code == 200
    assert "钱*兰" in colleague.text and "宁海路5号" not in colleague.text
    staff = as_browser(w, "staff-a")
    flagged = form_post(
        staff,
        f"/desk/people/{member_id}/flags",
        f"/desk/people/{member_id}",
        flag="living_alone",
        note="子女在外地",
    )
    assert flagged.status_code == 303
    assert "living_alone" in {str(f) for f in w.accounts.active_flags(member_id)}
    again = form_post(
        staff,
        f"/desk/people/{member_id}/flags",
        f"/desk/people/{member_id}",
        flag="living_alone",
    )
    assert again.status_code == 409
    # A pending sign-up is approved; a relative link confirmed; a proxy granted.
    assert "陈*" in staff.get("/desk/people").text
    approved = form_post(
        staff, f"/desk/people/{w.ids['pending-a']}/decide", "/desk/people", decision="approve"
    )
    assert approved.headers["location"] == "/desk/people?done=approved"
    assert w.accounts.member(w.ids["pending-a"]).status.value == "active"
    elder_page = f"/desk/people/{w.ids['elder-a']}"
    confirmed = form_post(
        staff, f"{elder_page}/relatives/{w.ids['link-a']}", elder_page, decision="confirm"
    )
    assert confirmed.status_code == 303
    assert w.accounts.are_confirmed_relatives(w.ids["family-a"], w.ids["elder-a"])
    granted = form_post(
        staff,
        f"/desk/people/{member_id}/proxies",
        f"/desk/people/{member_id}",
        username="family-a",
        action="grant",
    )
    assert granted.status_code == 303
    assert member_id in w.accounts.principal_for_user(w.ids["family-a-user"]).proxied_members()
    revoked = form_post(
        staff,
        f"/desk/people/{member_id}/proxies",
        f"/desk/people/{member_id}",
        username="family-a",
        action="revoke",
    )
    assert revoked.status_code == 303
    # Another organisation's staff cannot open her page (as the API: 404).
    assert as_browser(w, "staff-b").get(f"/desk/people/{member_id}").status_code == 404


def test_relatives_declared_and_proxies_listed_granted_and_revoked(world: World) -> None:  # noqa: F811
    """From an elder's desk page: declare a relative found by phone (pending until confirmed),
    confirm it, make the confirmed relative her proxy in one step, see the proxy listed and
    end it; every post recorded in the audit trail. A volunteer posting the same is refused."""
    w = world
    staff = as_browser(w, "staff-a")
    registered = form_post(
        staff,
        "/desk/people/new",
        "/desk/people/new",
        org_id=w.ids["org_a"],
        kind="elder",
        name="钱桂兰",
        phone="13800012345",
    )
    elder = registered.headers["location"].split("/")[3].split("?")[0]
    page = f"/desk/people/{elder}"
    assert "family-a" not in staff.get(page).text  # nobody acts for her, nobody to propose
    refused = as_browser(w, "vol-a")
    assert (
        form_post(
            refused, f"{page}/relatives", "/volunteer", relative_search="13800003333"
        ).status_code
        == 403
    )
    staff = as_browser(w, "staff-a")
    unknown = form_post(staff, f"{page}/relatives", page, relative_search="13900000000")
    assert unknown.status_code == 400 and 'aria-invalid="true"' in unknown.text
    w.client.cookies.set("tb_lang", "zh-CN")
    herself = form_post(
        staff, f"{page}/relatives", page, relative_search="13800012345", relation="child"
    )
    assert herself.status_code == 400 and "成员不能是自己的亲属" in herself.text
    declared = form_post(
        staff, f"{page}/relatives", page, relative_search="13800003333", relation="child"
    )
    assert declared.headers["location"] == f"{page}?done=relative-declared"
    again = form_post(
        staff, f"{page}/relatives", page, relative_search="13800003333", relation="child"
    )
    assert again.status_code == 409
    [link] = w.accounts.list_relatives(w.principal("staff-a"), elder)
    assert (link.member_id, link.relative_id, link.status.value) == (
        elder,
        w.ids["family-a"],
        "pending",
    )
    assert 'value="family-a"' not in staff.get(page).text  # not confirmed yet: no proposal
    form_post(staff, f"{page}/relatives/{link.id}", page, decision="confirm")
    proposed = staff.get(page).text
    assert '<option value="family-a">' in proposed and "王*国" in proposed
    granted = form_post(staff, f"{page}/proxies", page, username="family-a", action="grant")
    assert granted.headers["location"] == f"{page}?done=proxy-granted"
    assert elder in w.accounts.principal_for_user(w.ids["family-a-user"]).proxied_members()
    listed = staff.get(page).text
    assert '<input type="hidden" name="username" value="family-a">' in listed
    assert '<option value="family-a">' not in listed  # acts for her already
    revoked = form_post(staff, f"{page}/proxies", page, username="family-a", action="revoke")
    assert revoked.headers["location"] == f"{page}?done=proxy-revoked"
    assert elder not in w.accounts.principal_for_user(w.ids["family-a-user"]).proxied_members()
    assert '<input type="hidden" name="username" value="family-a">' not in staff.get(page).text
    assert w.accounts.list_proxies(w.principal("staff-a"), elder) == []
    assert [
        (e.action, e.status)
        for e in w.client.app.state.audit.all_events()
        if e.action.startswith("POST /desk/people/{member_id}/")
        and e.action != "POST /desk/people/{member_id}/relatives/{link_id}"
    ] == [
        ("POST /desk/people/{member_id}/relatives", 403),
        ("POST /desk/people/{member_id}/relatives", 400),
        ("POST /desk/people/{member_id}/relatives", 400),
        ("POST /desk/people/{member_id}/relatives", 303),
        ("POST /desk/people/{member_id}/relatives", 409),
        ("POST /desk/people/{member_id}/proxies", 303),
        ("POST /desk/people/{member_id}/proxies", 303),
    ]


def test_volunteers_masked_alike_are_told_apart_by_phone_tail_and_area(world: World) -> None:  # noqa: F811
    """Two volunteers both shown as 郭*: each choice carries the last digits of her phone and
    her area (what a member page shows unrevealed), never the whole number."""
    w = world
    request_id = ask_on_page(w)
    staff_a = w.principal("staff-a")
    for name, phone, address in (
        ("郭敏", "13900001357", "玄武区北京东路5号3单元"),
        ("郭芳", "13900002468", "秦淮区中华路8号2单元"),
    ):
        volunteer = w.accounts.register_member(
            staff_a,
            w.ids["org_a"],
            person(name, phone, address=address),
            volunteer=True,
            elder=False,
        )
        w.ids[name] = volunteer.member.id
    page = as_browser(w, "staff-a").get(f"/desk/dispatch/{request_id}").text

    def label(name: str) -> str:
        start = page.index(f'<label for="v-{w.ids[name]}">')
        return page[start : page.index("</label>", start)]

    assert "郭*" in label("郭敏") and "郭*" in label("郭芳")
    assert "1357" in label("郭敏") and "玄武区北****" in label("郭敏")
    assert "2468" in label("郭芳") and "秦淮区****" in label("郭芳")
    assert "13900001357" not in page and "北京东路" not in page


def test_a_stranger_from_another_organisation_is_not_made_her_proxy(world: World) -> None:  # noqa: F811
    """Typing the username of another organisation's volunteer (no relation to the elder) is
    refused on her page, in Chinese, at the field, and he gets no access to her; a member of
    her own organisation typed in the same field becomes her proxy."""
    w = world
    staff = as_browser(w, "staff-a")
    w.client.cookies.set("tb_lang", "zh-CN")
    elder = w.ids["elder-a"]
    page = f"/desk/people/{elder}"
    refused = form_post(staff, f"{page}/proxies", page, username="vol-b", action="grant")
    assert refused.status_code == 400, refused.text
    assert "已确认的亲属" in refused.text
    assert 'id="proxy-username" name="username"' in refused.text
    assert 'value="vol-b" aria-invalid="true"' in refused.text
    assert elder not in w.accounts.principal_for_user(w.ids["vol-b-user"]).proxied_members()
    granted = form_post(staff, f"{page}/proxies", page, username="vol-a", action="grant")
    assert granted.headers["location"] == f"{page}?done=proxy-granted"
    assert elder in w.accounts.principal_for_user(w.ids["vol-a-user"]).proxied_members()


def test_the_slip_and_the_statement_on_paper(world: World) -> None:  # noqa: F811
    w = world
    request_id = ask_on_page(w)
    staff = as_browser(w, "staff-a")
    form_post(
        staff, f"/desk/dispatch/{request_id}/assign", "/desk/dispatch", volunteer_id=w.ids["vol-a"]
    )
    slip = staff.get(f"/desk/requests/{request_id}/slip")
    assert slip.status_code == 200
    for text in ("服务单", "王*英", "助餐", "李*强", "湖南路12号", "<svg"):
        assert text in slip.text, text
    assert as_browser(w, "staff-b").get(f"/desk/requests/{request_id}/slip").status_code == 404
    assert as_browser(w, "vol-a").get(f"/desk/requests/{request_id}/slip").status_code == 403
    # The elder paid for a meal with stored time? Here: a volunteer's month, with deposits.
    record_id = served(w, request_id)
    api(w).post(f"/v1/records/{record_id}/confirm", headers=w.as_("elder-a"), json={})
    verified = api(w).post(f"/v1/records/{record_id}/verify", headers=w.as_("staff-a-2fa"))
    assert verified.status_code == 200, verified.text
    staff = as_browser(w, "staff-a")
    month = yesterday().strftime("%Y-%m")
    page = staff.get(f"/desk/people/{w.ids['vol-a']}/statement?month={month}")
    assert page.status_code == 200
    assert "1:00" in page.text and "<svg" in page.text
    assert staff.get(f"/desk/people/{w.ids['vol-a']}/statement?month=2026-13").status_code == 400


def test_staff_logins_and_enrolling_totp(world: World) -> None:  # noqa: F811
    w = world
    admin = as_browser(w, "admin-a")
    org = w.ids["org_a"]
    assert 'action="/desk/staff/' in admin.get("/desk/staff").text
    created = form_post(
        admin, f"/desk/staff/{org}", "/desk/staff", username="new-staff", role="org_staff"
    )
    assert created.status_code == 200
    one_time = re.search(r'id="one-time">([^<]+)<', created.text)
    assert one_time, created.text
    user = w.accounts.user_by_username("new-staff")
    assert user is not None
    taken = form_post(
        admin, f"/desk/staff/{org}", "/desk/staff", username="new-staff", role="org_staff"
    )
    assert taken.status_code == 409
    # Plain staff see the list but cannot add or revoke (the service refuses, as the API).
    staff = as_browser(w, "staff-a")
    assert f'action="/desk/staff/{org}"' not in staff.get("/desk/staff").text
    refused = form_post(staff, f"/desk/staff/{org}/{user.id}/revoke", "/desk/staff")
    assert refused.status_code == 403
    admin = as_browser(w, "admin-a")
    w.client.cookies.set("tb_lang", "zh-CN")
    listed = admin.get("/desk/staff").text
    revoke_form = listed.index(f'action="/desk/staff/{org}/{user.id}/revoke"')
    assert listed.rfind("<details>", 0, revoke_form) > listed.rfind("</details>", 0, revoke_form)
    assert "确认吊销 new-staff" in listed[revoke_form : listed.index("</form>", revoke_form)]
    revoked = form_post(admin, f"/desk/staff/{org}/{user.id}/revoke", "/desk/staff")
    assert revoked.headers["location"] == "/desk/staff?done=revoked"
    assert not w.accounts.principal_for_user(user.id).orgs()
    # Its one-time password now meets the revocation, not a password form leading nowhere.
    w.client.cookies.clear()
    w.client.cookies.set("tb_lang", "zh-CN")
    revoked_login = browser_login(w.client, "new-staff", one_time.group(1))
    assert revoked_login.status_code == 403 and "此账号已被吊销" in revoked_login.text
    assert SESSION_COOKIE not in revoked_login.cookies
    wrong = browser_login(w.client, "new-staff", "not the password")
    assert wrong.status_code == 401 and "此账号已被吊销" not in wrong.text
    admin = as_browser(w, "admin-a")
    # A password alone does not enrol a second factor: the form asks for an enrolment code.
    page = admin.get("/desk/totp").text
    assert 'name="enrolment_code"' in page
    refused = form_post(admin, "/desk/totp", "/desk/totp", enrolment_code="tbe_guessed")
    assert refused.status_code == 403 and 'id="totp-secret"' not in refused.text
    # Plain staff cannot issue one; the organisation's admin can (staff-a had a second factor:
    # it is removed and staff-a's sessions end, as for a lost phone).
    staff = as_browser(w, "staff-a")
    denied = form_post(staff, f"/desk/staff/{org}/{w.ids['admin-a']}/totp-reset", "/desk/staff")
    assert denied.status_code == 403 and 'id="enrolment-code"' not in denied.text
    admin = as_browser(w, "admin-a")
    issued = form_post(admin, f"/desk/staff/{org}/{w.ids['staff-a']}/totp-reset", "/desk/staff")
    assert issued.status_code == 200, issued.text
    code = re.search(r'id="enrolment-code">([^<]+)<', issued.text)
    assert code, issued.text
    with pytest.raises(TokenInvalid):  # the sessions opened with the lost phone ended
        w.accounts.authenticate(w.tokens["staff-a-2fa"])
    # Enrolling one's own second factor with the code, then the QR code's key.
    staff = as_browser(w, "staff-a")
    started = form_post(staff, "/desk/totp", "/desk/totp", enrolment_code=code.group(1))
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', started.text)
    assert secret and "<svg" in started.text
    wrong = form_post(staff, "/desk/totp/confirm", "/desk/totp", code="000000")
    assert wrong.status_code == 400
    step = int(datetime.now(UTC).timestamp() // 30)
    done = form_post(
        staff, "/desk/totp/confirm", "/desk/totp", code=totp.code_at(secret.group(1), step)
    )
    assert done.headers["location"] == "/desk/totp?done=enrolled"
    user_a = w.accounts.user_by_username("staff-a")
    assert user_a is not None and user_a.totp_enabled
    # The code is used up: the admin cannot enrol with it.
    admin = as_browser(w, "admin-a")
    reused = form_post(admin, "/desk/totp", "/desk/totp", enrolment_code=code.group(1))
    assert reused.status_code == 403


def test_a_whole_day_window_reads_as_any_time_that_day() -> None:
    """An elder's "any time that day" is midnight to midnight: the desk and the volunteer's
    lists said "00:00–00:00", a window of no length."""
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from web.desk import window_text
    from web.volunteer import _when

    def asking(language: str) -> Any:
        return SimpleNamespace(cookies={"tb_lang": language}, headers={})

    start = datetime(2026, 12, 6, 16, 0, tzinfo=UTC)  # 7 Dec 00:00 in Shanghai
    end = datetime(2026, 12, 7, 16, 0, tzinfo=UTC)
    zone = "Asia/Shanghai"
    assert window_text(asking("zh-CN"), start, end, zone) == "2026年12月7日 · 当天什么时间都可以"
    assert window_text(asking("en"), start, end, zone) == "07 Dec 2026 · Any time that day"
    assert _when(asking("zh-CN"), start, end, zone) == "12月7日 · 当天什么时间都可以"
    morning = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)  # 09:00 there
    assert window_text(asking("en"), start, morning, zone) == "07 Dec 2026 00:00–09:00"


def test_the_records_export_says_status_and_confirmation_in_the_readers_language(
    world: World,  # noqa: F811
) -> None:
    """A Chinese reader's records file says 已审核 and 老人 under its Chinese headers; an English
    one keeps the values the API writes (verified, elder)."""
    w = world
    served = serve_an_hour(w)
    check_in = datetime.fromisoformat(served.record["check_in"].replace("Z", "+00:00"))
    month = check_in.astimezone(SHANGHAI).strftime("%Y-%m")
    path = f"/v1/exports/records.csv?month={month}"
    chinese = api(w).get(path, headers={**w.as_("staff-a"), "Accept-Language": "zh-CN"})
    english = api(w).get(path, headers=w.as_("staff-a"))
    for answer in (chinese, english):
        assert answer.status_code == 200, answer.text
    [header, *rows] = list(csv.reader(io.StringIO(chinese.content.decode("utf-8-sig"))))
    [row] = [r for r in rows if r[0] == served.record["id"]]
    said = dict(zip(header, row, strict=True))
    assert (said["状态"], said["确认方式"]) == ("已审核", "老人")
    [header, *rows] = list(csv.reader(io.StringIO(english.content.decode("utf-8-sig"))))
    [row] = [r for r in rows if r[0] == served.record["id"]]
    said = dict(zip(header, row, strict=True))
    assert (said["status"], said["confirmed as"]) == ("verified", "elder")


def test_an_empty_reason_is_shown_at_its_own_field_in_chinese(world: World) -> None:  # noqa: F811
    """Rejecting a record or cancelling a request without a reason: 原因不能为空 right at that
    form (the reject form open, the cancel form's anchor the page lands on), the field marked
    invalid; a weak password for a new staff login marks the password field."""
    w = world
    request_id = ask_on_page(w)
    staff = as_browser(w, "staff-a")
    form_post(
        staff, f"/desk/dispatch/{request_id}/assign", "/desk/dispatch", volunteer_id=w.ids["vol-a"]
    )
    record_id = served(w, request_id)
    staff = as_browser(w, "staff-a")
    assert (
        f'action="/desk/records/{record_id}/reject#rec-{record_id}"'
        in staff.get("/desk/records").text
    )
    empty = form_post(staff, f"/desk/records/{record_id}/reject", "/desk/records", reason="")
    assert empty.status_code == 400
    card = empty.text[empty.text.index(f'id="rec-{record_id}"') :]
    said = re.search(r'<p class="error" id="error" role="alert">(.*?)</p>', card, re.S)
    assert said and html.unescape(said.group(1)).strip() == "原因不能为空"
    assert "<details open>" in card
    assert (
        f'id="reason-{record_id}" name="reason" required maxlength="500" aria-invalid="true"'
        in card
    )

    other = ask_on_page(w)
    staff = as_browser(w, "staff-a")
    page = staff.get(f"/desk/dispatch/{other}").text
    assert f'action="/desk/dispatch/{other}/cancel#cancel"' in page
    no_reason = form_post(staff, f"/desk/dispatch/{other}/cancel", f"/desk/dispatch/{other}")
    assert no_reason.status_code == 400
    text = no_reason.text
    assert text.count('id="error"') == 1
    assert text.index('id="cancel"') < text.index('id="error"') < text.index('id="cancel-reason"')
    assert "原因不能为空" in text
    cancelled = form_post(
        staff, f"/desk/dispatch/{other}/cancel", f"/desk/dispatch/{other}", reason="老人住院"
    )
    assert cancelled.status_code == 303

    admin = as_browser(w, "admin-a")
    org = w.ids["org_a"]
    weak = form_post(
        admin,
        f"/desk/staff/{org}",
        "/desk/staff",
        username="weak-staff",
        role="org_staff",
        password="123",
    )
    assert weak.status_code == 400
    assert re.search(r'name="password" type="password"[^>]*aria-invalid="true"', weak.text)
    assert not re.search(r'name="username"[^>]*aria-invalid', weak.text)


def test_a_refused_search_or_flag_marks_its_field(world: World) -> None:  # noqa: F811
    """A search by name (neither phone nor ID number) and a flag set twice mark the field the
    error is about; a good search and the first flag do not."""
    w = world
    staff = as_browser(w, "staff-a")
    by_name = staff.get("/desk/people", params={"search": "王秀英"})
    assert by_name.status_code == 400
    assert re.search(r'id="search"[^>]*aria-invalid="true"', by_name.text)
    by_phone = staff.get("/desk/people", params={"search": "13800002222"})
    assert by_phone.status_code == 200 and "aria-invalid" not in by_phone.text
    page = f"/desk/people/{w.ids['elder-a']}"
    first = form_post(staff, f"{page}/flags", page, flag="living_alone")
    assert first.status_code == 303
    again = form_post(staff, f"{page}/flags", page, flag="living_alone")
    assert again.status_code == 409
    assert re.search(r'<select id="flag"[^>]*aria-invalid="true"', again.text)
