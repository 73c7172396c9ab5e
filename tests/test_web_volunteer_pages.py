"""The volunteer's forms without a browser, on both databases: claiming (a pending sign-up
refused next to an approved volunteer), the no-JavaScript check-out (an unsigned record), the
elder's code entered on the page, and the pages refusing other people's requests."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from accounts.service import PersonalInput
from tests.accounts_world import PASSWORD, World
from tests.test_workflow import (
    serve_an_hour,
    world,  # noqa: F401 - the workflow's world, with a catalogue
)
from tests.web_helpers import browser_login, csrf_token
from web.security import SESSION_COOKIE


def iso(hours_ago: float) -> str:
    return (datetime.now(UTC) - timedelta(hours=hours_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def open_request(w: World, start_h: float = 3, end_h: float = -1) -> str:
    asked = w.client.post(
        "/v1/requests",
        headers=w.as_("elder-a"),
        json={
            "elder_id": w.ids["elder-a"],
            "service_code": "meal",
            "window_start": iso(start_h),
            "window_end": iso(end_h),
            "minutes": 60,
        },
    )
    assert asked.status_code == 201, asked.text
    return str(asked.json()["id"])


def as_browser(w: World, username: str, password: str = PASSWORD) -> Any:
    w.client.cookies.clear()
    assert browser_login(w.client, username, password).status_code == 303
    return w.client


def form_post(client: Any, path: str, page: str, **data: str) -> Any:
    token = csrf_token(client, page)
    return client.post(path, data={**data, "_csrf_token": token}, follow_redirects=False)


def test_claim_refused_to_a_pending_sign_up_and_done_by_a_volunteer(world: World) -> None:  # noqa: F811
    w = world
    request_id = open_request(w)
    w.accounts.self_register(
        "b1", w.ids["org_a"], "pending-web", PASSWORD, PersonalInput("新人", "13700001234")
    )
    w.client.cookies.clear()
    assert browser_login(w.client, "pending-web", PASSWORD).status_code == 401  # not yet
    # A session opened another way (an operator's token) is refused on every page all the same.
    pending = w.client
    pending.cookies.set(SESSION_COOKIE, w.accounts.issue_token("pending-web").token)
    refused = form_post(pending, f"/volunteer/requests/{request_id}/claim", "/account")
    assert refused.status_code == 403
    assert "等待审核" in refused.text
    volunteer = as_browser(w, "vol-a")
    assert 'action="/volunteer/requests/' in volunteer.get("/volunteer").text
    claimed = form_post(volunteer, f"/volunteer/requests/{request_id}/claim", "/volunteer")
    assert claimed.status_code == 303
    assert claimed.headers["location"] == f"/volunteer/visit/{request_id}"
    mine = w.client.get(f"/v1/requests/{request_id}", headers=w.as_("vol-a")).json()
    assert mine["status"] == "assigned"
    assert mine["volunteer_id"] == w.ids["vol-a"]


def test_check_out_without_javascript_logs_an_unsigned_record(world: World) -> None:  # noqa: F811
    w = world
    request_id = open_request(w)
    volunteer = as_browser(w, "vol-a")
    form_post(volunteer, f"/volunteer/requests/{request_id}/claim", "/volunteer")
    page = volunteer.get(f"/volunteer/visit/{request_id}")
    assert 'id="check-in-form"' in page.text
    checked_in = form_post(
        volunteer, f"/volunteer/visit/{request_id}/check-in", f"/volunteer/visit/{request_id}"
    )
    assert 'name="check_in" value="20' in checked_in.text
    too_soon = form_post(
        volunteer,
        f"/volunteer/visit/{request_id}/record",
        f"/volunteer/visit/{request_id}",
        check_in=iso(0),
    )
    assert too_soon.status_code == 422  # no time between check-in and check-out
    assert 'role="alert"' in too_soon.text
    logged = form_post(
        volunteer,
        f"/volunteer/visit/{request_id}/record",
        f"/volunteer/visit/{request_id}",
        check_in=iso(0.75),
    )
    assert logged.status_code == 303, logged.text
    records = w.client.get("/v1/records", headers=w.as_("staff-a")).json()
    [record] = [r for r in records if r["request_id"] == request_id]
    assert record["signed_by_device"] is None
    assert record["status"] == "logged"


def test_the_elders_code_entered_on_the_page_confirms(world: World) -> None:  # noqa: F811
    w = world
    request_id = open_request(w)
    volunteer = as_browser(w, "vol-a")
    form_post(volunteer, f"/volunteer/requests/{request_id}/claim", "/volunteer")
    form_post(
        volunteer,
        f"/volunteer/visit/{request_id}/record",
        f"/volunteer/visit/{request_id}",
        check_in=iso(0.5),
    )
    [record] = [
        r
        for r in w.client.get("/v1/records", headers=w.as_("vol-a")).json()
        if r["request_id"] == request_id
    ]
    wrong = form_post(
        volunteer,
        f"/volunteer/records/{record['id']}/code",
        "/volunteer",
        confirmation_code="000000",
    )
    assert wrong.status_code == 422
    assert "确认码不对、已用过或已过期" in wrong.text
    session = dict(w.client.cookies)
    w.client.cookies.clear()  # the elder's phone: a bearer client without the page's cookie
    made = w.client.post(
        f"/v1/members/{w.ids['elder-a']}/confirmation-codes", headers=w.as_("elder-a")
    )
    w.client.cookies.update(session)
    assert made.status_code == 201, made.text
    code = made.json()["code"]
    right = form_post(
        volunteer, f"/volunteer/records/{record['id']}/code", "/volunteer", confirmation_code=code
    )
    assert right.status_code == 303
    after = w.client.get(f"/v1/records/{record['id']}", headers=w.as_("vol-a")).json()
    assert after["status"] == "confirmed"


def test_a_visit_page_of_someone_elses_request_is_refused(world: World) -> None:  # noqa: F811
    w = world
    request_id = open_request(w)
    mine = as_browser(w, "vol-a")
    form_post(mine, f"/volunteer/requests/{request_id}/claim", "/volunteer")
    assert mine.get(f"/volunteer/visit/{request_id}").status_code == 200
    other = as_browser(w, "vol-b")
    page = other.get(f"/volunteer/visit/{request_id}")
    assert page.status_code == 404


def test_the_assigned_volunteer_sees_whom_and_where_and_the_read_is_recorded(world: World) -> None:  # noqa: F811
    """Before taking a request a volunteer sees its area and length; the one it is assigned to
    sees the elder's masked name and the full address to find her door, each read recorded
    for her to see; another volunteer still sees only the area."""
    w = world
    request_id = open_request(w)
    volunteer = as_browser(w, "vol-a")
    browsing = volunteer.get("/volunteer").text
    assert "南京市鼓****" in browsing
    assert "60 分钟" in browsing
    assert "王*英" not in browsing and "湖南路12号" not in browsing
    form_post(volunteer, f"/volunteer/requests/{request_id}/claim", "/volunteer")
    assigned = volunteer.get("/volunteer").text
    assert "王*英" in assigned and "湖南路12号" not in assigned  # the list shows the area
    page = volunteer.get(f"/volunteer/visit/{request_id}").text
    assert "王*英" in page
    assert "南京市鼓楼区湖南路12号" in page
    assert "王秀英" not in page and "13800002222" not in page
    records = w.client.get(
        f"/v1/members/{w.ids['elder-a']}/access-records", headers=w.as_("elder-a")
    ).json()
    assert [(r["role"], r["fields"]) for r in records] == [("volunteer", ["address"])]
    assert request_id in records[0]["reason"]
    other = as_browser(w, "vol-b").get(f"/volunteer/visit/{request_id}")
    assert other.status_code == 404
    assert "湖南路12号" not in other.text


def beijing(moment: datetime) -> str:
    return f"{moment.astimezone(ZoneInfo('Asia/Shanghai')):%Y-%m-%d %H:%M}"


def test_the_volunteers_pages_tell_time_on_the_banks_clock(world: World) -> None:  # noqa: F811
    """Check-in, records waiting, my hours and the certificate read Beijing time, like every
    other page, not UTC."""
    w = world
    serve_an_hour(w)
    request_id = open_request(w)
    volunteer = as_browser(w, "vol-a")
    form_post(volunteer, f"/volunteer/requests/{request_id}/claim", "/volunteer")
    before = datetime.now(UTC)
    checked_in = form_post(
        volunteer, f"/volunteer/visit/{request_id}/check-in", f"/volunteer/visit/{request_id}"
    ).text
    hours = volunteer.get("/volunteer/hours").text
    certificate = volunteer.get("/volunteer/certificate").text
    after = datetime.now(UTC)
    arrived = iso(0.75)
    form_post(
        volunteer,
        f"/volunteer/visit/{request_id}/record",
        f"/volunteer/visit/{request_id}",
        check_in=arrived,
    )
    tasks = volunteer.get("/volunteer").text
    assert beijing(datetime.fromisoformat(arrived)) in tasks
    for page in (checked_in, hours, certificate):
        assert beijing(before) in page or beijing(after) in page
    for page in (checked_in, hours, certificate, tasks):  # the signed certificate names its offset
        assert not re.search(r"UTC(?!\+08:00\))", page)


def test_after_check_out_the_task_waits_for_the_elder_and_offers_nothing_more(world: World) -> None:  # noqa: F811
    """A request with a logged record stays assigned until the elder confirms, but the
    volunteer is told it is recorded: no visit to start again, nothing to give back."""
    w = world
    request_id = open_request(w)
    volunteer = as_browser(w, "vol-a")
    form_post(volunteer, f"/volunteer/requests/{request_id}/claim", "/volunteer")
    before = volunteer.get("/volunteer").text
    assert f'action="/volunteer/requests/{request_id}/withdraw"' in before
    assert f'href="/volunteer/visit/{request_id}"' in before
    assert "已记录，等待老人确认" not in before
    logged = form_post(
        volunteer,
        f"/volunteer/visit/{request_id}/record",
        f"/volunteer/visit/{request_id}",
        check_in=iso(0.5),
    )
    assert logged.status_code == 303, logged.text
    after = volunteer.get("/volunteer").text
    assert "已记录，等待老人确认" in after
    assert f'action="/volunteer/requests/{request_id}/withdraw"' not in after
    assert f'href="/volunteer/visit/{request_id}"' not in after
    visit = volunteer.get(f"/volunteer/visit/{request_id}").text
    assert "已记录，等待老人确认" in visit
    assert 'id="check-in-form"' not in visit and 'id="check-out-form"' not in visit
