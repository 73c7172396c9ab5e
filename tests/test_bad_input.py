"""Bad input is a 4xx problem naming the field, never a 500: bodies over the limit (refused
before they are held in memory), JSON nested too deep, times at the edge of the calendar, and
records that stray from their request or come too late. Each next to the same call succeeding."""

from __future__ import annotations

from typing import Any

from audit.trail import AuditTrail
from ledger.entry import EntryRequest, Posting
from tests.accounts_world import World
from tests.test_workflow import hours_ago, log_record, ok, refused
from tests.test_workflow import world as world

__all__ = ["world"]

REGISTER = {
    "bank_id": "b1",
    "username": "someone-new",
    "password": "a long enough password",
    "personal": {"name": "新人", "phone": "13700001234"},
}


def _register(w: World, **body: Any) -> Any:
    return w.client.post("/v1/register", json={**REGISTER, "org_id": w.ids["org_a"], **body})


def _events(w: World, action: str) -> list[Any]:
    trail: AuditTrail = w.client.app.state.audit
    return [e for e in trail.events(bank_id=None, limit=1000) if e.action == action]


def test_json_nested_too_deep_is_a_400_with_an_audit_event(world: World) -> None:
    w = world
    deep = "[" * 1100 + "]" * 1100
    response = w.client.post(
        "/v1/register", content=deep, headers={"content-type": "application/json"}
    )
    body = refused(response, 400, "invalid-parameter")
    assert body["field"] == "body"
    assert [e.status for e in _events(w, "POST /v1/register")] == [400]
    # strings full of brackets are not nesting
    assert _register(w, username="brackets", personal={"name": "[" * 40, "phone": "13700001235"})
    ok(_register(w), 202)


def test_a_body_over_the_limit_is_refused_before_it_is_read(world: World) -> None:
    w = world
    app = w.client.app
    chunk = b" " * 4096
    handed_out = 0

    async def receive() -> dict[str, Any]:
        nonlocal handed_out
        handed_out += 1
        return {"type": "http.request", "body": chunk, "more_body": handed_out < 100_000}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/register",
        "raw_path": b"/v1/register",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"host", b"testserver")],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
        "state": {},
    }
    w.client.blocking_portal.call(app, scope, receive, send)  # a 400 MB body, streamed
    assert sent[0]["status"] == 413
    assert handed_out <= 64 * 1024 // len(chunk) + 2  # stopped at the limit, not at the end
    # declared too large: refused without reading a byte
    response = w.client.post(
        "/v1/register",
        content=b"{}",
        headers={"content-type": "application/json", "content-length": str(10**9)},
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert [e.status for e in _events(w, "POST /v1/register")] == [413, 413]
    ok(_register(w), 202)


def _request(w: World, start: str, end: str) -> Any:
    return w.client.post(
        "/v1/requests",
        headers=w.as_("elder-a"),
        json={
            "elder_id": w.ids["elder-a"],
            "service_code": "meal",
            "minutes": 30,
            "window_start": start,
            "window_end": end,
        },
    )


def test_times_at_the_edge_of_the_calendar_are_400s(world: World) -> None:
    w = world
    for start, end, field in (
        ("0001-01-01T00:00:00+14:00", "0001-01-01T02:00:00+14:00", "window_start"),
        (hours_ago(1), "9999-12-31T23:00:00-12:00", "window_end"),
        ("1900-01-01T00:00:00+08:00", hours_ago(1), "window_start"),
    ):
        body = refused(_request(w, start, end), 400, "invalid-input")
        assert body["field"] == field
    ok(_request(w, hours_ago(3), hours_ago(1)), 201)
    for check_in, check_out in (
        ("0001-01-01T00:00:00+14:00", hours_ago(1)),
        (hours_ago(2), "9999-12-31T23:00:00-12:00"),
    ):
        response = w.client.post(
            "/v1/records",
            headers=w.as_("vol-a"),
            json={
                "elder_id": w.ids["elder-a"],
                "service_code": "meal",
                "check_in": check_in,
                "check_out": check_out,
            },
        )
        assert response.status_code == 400, response.text


def test_a_record_keeps_to_its_request_and_is_not_logged_late(world: World) -> None:
    w = world
    request = ok(_request(w, hours_ago(6), hours_ago(5)), 201)  # 30 minutes, 6-5 h ago
    ok(w.client.post(f"/v1/requests/{request['id']}/claim", headers=w.as_("vol-a")))
    # nearly five hours within the (widened) window, for a 30-minute request
    body = refused(
        log_record(w, "vol-a", "elder-a", 7.9, 3.1, request_id=request["id"]),
        422,
        "outside-request",
    )
    assert body["field"] == "minutes"
    # an hour of service a day before the window
    body = refused(
        log_record(w, "vol-a", "elder-a", 30, 29, request_id=request["id"]),
        422,
        "outside-request",
    )
    assert body["field"] == "check_in"
    # 20 days and 25 years back
    body = refused(log_record(w, "vol-a", "elder-a", 20 * 24, 20 * 24 - 1), 422, "late-record")
    assert body["field"] == "check_out"
    refused(log_record(w, "vol-a", "elder-a", 25 * 365 * 24, 25 * 365 * 24 - 1), 422, "late-record")
    # within the window and a little over its minutes: accepted
    ok(log_record(w, "vol-a", "elder-a", 6.2, 5.4, request_id=request["id"]), 201)
    # six days back is within the default week
    ok(log_record(w, "vol-a", "elder-a", 6 * 24, 6 * 24 - 1), 201)
    # the bank can widen the window: a policy value
    policy = ok(
        w.client.post("/v1/policy", headers=w.as_("b1-admin"), json={"record_late_days": 30})
    )
    assert policy["record_late_days"] == 30
    ok(log_record(w, "vol-a", "elder-a", 20 * 24, 20 * 24 - 1), 201)
    refused(
        w.client.post("/v1/policy", headers=w.as_("b1-admin"), json={"record_late_days": 0}),
        400,
        "invalid-input",
    )


def test_moving_minutes_needs_an_idempotency_key(world: World) -> None:
    w = world
    w.log.append(
        EntryRequest(
            "deposit",
            "fund-vol-a",
            (Posting("b1:issuance", -100), Posting(w.ids["vol-a-account"], 100)),
            {"record": "funding for the test", "minutes": 100, "weight": 1000},
        )
    )
    donation = {"from_member_id": w.ids["vol-a"], "minutes": 5}
    body = refused(
        w.client.post(
            "/v1/donations", headers={**w.as_("vol-a"), "Accept-Language": "zh-CN"}, json=donation
        ),
        428,
        "idempotency-key-required",
    )
    assert body["field"] == "Idempotency-Key" and "Idempotency-Key" in body["detail_zh"]
    keyed = {**w.as_("vol-a"), "Idempotency-Key": "donate-5-once"}
    first = ok(w.client.post("/v1/donations", headers=keyed, json=donation), 201)
    again = w.client.post("/v1/donations", headers=keyed, json=donation)
    assert again.status_code == 201 and again.json()["seq"] == first["seq"]
    assert again.headers["idempotent-replayed"] == "true"
    for path, payload, who in (
        ("/v1/gifts", {**donation, "to_member_id": w.ids["vol-b"]}, "vol-a"),
        ("/v1/grants", {"elder_id": w.ids["elder-a"], "minutes": 5, "reason": "x"}, "b1-admin"),
    ):
        refused(
            w.client.post(path, headers=w.as_(who), json=payload), 428, "idempotency-key-required"
        )


def _fund(w: World, minutes: int) -> None:
    w.log.append(
        EntryRequest(
            "deposit",
            f"fund-vol-a-{minutes}",
            (Posting("b1:issuance", -minutes), Posting(w.ids["vol-a-account"], minutes)),
            {"record": "funding for the test", "minutes": minutes, "weight": 1000},
        )
    )


def test_a_lone_surrogate_anywhere_in_a_body_is_a_400_naming_its_field(world: World) -> None:
    """JSON may escape half of a UTF-16 pair, and a client may send one as raw bytes: the
    decoder passes it on as a string that nothing can encode (a 500 before). Refused before
    anything reads it, with an audit event; the same donation with valid text succeeds."""
    w = world
    _fund(w, 100)
    key = {**w.as_("vol-a"), "content-type": "application/json"}
    vol_a = w.ids["vol-a"]
    cases = [
        (b'{"from_member_id": "%s", "minutes": "\\ud800"}' % vol_a.encode(), "minutes"),
        (b'{"from_member_id": "\\udc00abc", "minutes": 1}', "from_member_id"),
        (b'{"from_member_id": "%s", "minutes": 1, "x": "\xed\xb3\xbf"}' % vol_a.encode(), "x"),
        (b'{"from_member_id": "%s", "minutes": 1, "\\ud800": 1}' % vol_a.encode(), "body"),
    ]
    before = len(_events(w, "POST /v1/donations"))
    for number, (body, field) in enumerate(cases):
        headers = {**key, "Idempotency-Key": f"surrogate-{number}"}
        problem = refused(
            w.client.post("/v1/donations", headers=headers, content=body), 400, "invalid-parameter"
        )
        assert problem["field"] == field, problem
        assert "lone surrogate" in problem["detail"]
    chinese = {**key, "Idempotency-Key": "surrogate-zh", "Accept-Language": "zh-CN"}
    problem = refused(
        w.client.post("/v1/donations", headers=chinese, content=cases[0][0]),
        400,
        "invalid-parameter",
    )
    assert problem["title"] == "参数无效" and "代理码位" in problem["detail"]
    statuses = [e.status for e in _events(w, "POST /v1/donations")[before:]]
    assert statuses == [400] * (len(cases) + 1)
    # a pair (an emoji, escaped) and a backslash before "ud800" are text like any other
    listed = refused(
        w.client.post(
            "/v1/requests", headers=key, content=b'{"notes": "\\ud83d\\ude00 \\\\ud800"}'
        ),
        400,
        "invalid-parameter",
    )
    assert listed["field"] == "elder_id"  # the next thing wrong with it, not its text
    login = w.client.post(
        "/v1/auth/login",
        headers={"content-type": "application/json"},
        content=b'{"username": "\\ud800", "password": "a long password"}',
    )
    assert refused(login, 400, "invalid-parameter")["field"] == "username"
    valid = b'{"from_member_id": "%s", "minutes": 1}' % vol_a.encode()
    done = w.client.post(
        "/v1/donations", headers={**key, "Idempotency-Key": "surrogate-0"}, content=valid
    )
    ok(done, 201)  # the key of a refused body was never claimed


def test_the_middlewares_refusals_speak_the_callers_language(world: World) -> None:
    w = world
    _fund(w, 100)
    donation = {"from_member_id": w.ids["vol-a"], "minutes": 2}
    zh = {**w.as_("vol-a"), "Accept-Language": "zh-CN"}
    first = {**zh, "Idempotency-Key": "zh-reused"}
    ok(w.client.post("/v1/donations", headers=first, json=donation), 201)
    reused = w.client.post("/v1/donations", headers=first, json={**donation, "minutes": 3})
    body = refused(reused, 422, "idempotency-key-reused")
    assert body["title"] == "幂等键已被使用" and "Idempotency-Key" in body["detail"]
    english = w.client.post(
        "/v1/donations",
        headers={**w.as_("vol-a"), "Idempotency-Key": "zh-reused"},
        json={**donation, "minutes": 3},
    )
    assert refused(english, 422, "idempotency-key-reused")["title"] == "Idempotency key reused"
    long_key = {**zh, "Idempotency-Key": "k" * 201}
    body = refused(
        w.client.post("/v1/donations", headers=long_key, json=donation), 400, "invalid-parameter"
    )
    assert (
        body["field"] == "Idempotency-Key" and body["detail"] == "Idempotency-Key 超过 200 个字符"
    )
    deep = "[" * 40 + "]" * 40
    body = refused(
        w.client.post(
            "/v1/register", headers={**zh, "content-type": "application/json"}, content=deep
        ),
        400,
        "invalid-parameter",
    )
    assert body["title"] == "参数无效" and "32" in body["detail"] and "嵌套" in body["detail"]
    big = {**zh, "content-type": "application/json"}
    body = refused(
        w.client.post("/v1/register", headers=big, content=b" " * 70_000), 413, "http-413"
    )
    assert body["title"] == "请求内容过大" and body["field"] == "body"
    malformed = refused(
        w.client.post(
            "/v1/register", headers={**zh, "content-type": "application/json"}, content=b"{"
        ),
        400,
        "invalid-parameter",
    )
    assert malformed["detail"] == "参数 body 无效（请求内容不是有效的 JSON）"


def test_policy_numbers_out_of_range_are_bad_input(world: World) -> None:
    """A number past any sensible minutes, days or age was refused by the ledger (a 422
    naming ``body.daily_cap_minutes``) or, for an age, accepted: now a 400 naming the field."""
    w = world
    admin = w.as_("b1-admin")
    for change, field in (
        ({"daily_cap_minutes": 2**63}, "daily_cap_minutes"),
        ({"stored_cap_minutes": 10**9 + 1}, "stored_cap_minutes"),
        ({"redemption_age": 100_000}, "redemption_age"),
        ({"redemption_age": 151}, "redemption_age"),
    ):
        problem = refused(
            w.client.post("/v1/policy", headers=admin, json=change), 400, "invalid-input"
        )
        assert problem["field"] == field
    assert ok(w.client.post("/v1/policy", headers=admin, json={"redemption_age": 150}))
    policy = ok(
        w.client.post(
            "/v1/policy", headers=admin, json={"redemption_age": 60, "daily_cap_minutes": 10**9}
        )
    )
    assert (policy["redemption_age"], policy["daily_cap_minutes"]) == (60, 10**9)


def test_a_request_window_nobody_could_serve_or_log_is_bad_input(world: World) -> None:
    """A desk could book a visit in 2020 (open for volunteers to take) or in 2099: a window
    past the last day to log a record, or over a year ahead, is refused naming its field."""
    w = world
    staff = w.as_("staff-a")
    ask = {"elder_id": w.ids["elder-a"], "service_code": "meal", "minutes": 60}
    for start, end, field in (
        ("2020-01-01T09:00:00+08:00", "2020-01-01T11:00:00+08:00", "window_end"),
        (hours_ago(8 * 24 + 3), hours_ago(8 * 24), "window_end"),  # policy: 7 days to log
        (hours_ago(-367 * 24), hours_ago(-367 * 24 - 2), "window_start"),
        ("2099-01-01T09:00:00+08:00", "2099-01-01T11:00:00+08:00", "window_start"),
    ):
        window = {"window_start": start, "window_end": end}
        problem = refused(
            w.client.post("/v1/requests", headers=staff, json={**ask, **window}),
            400,
            "invalid-input",
        )
        assert problem["field"] == field, (start, problem)
    for start, end in (
        (hours_ago(6 * 24 + 3), hours_ago(6 * 24)),  # a visit made six days ago
        (hours_ago(-360 * 24), hours_ago(-360 * 24 - 2)),  # booked almost a year ahead
    ):
        window = {"window_start": start, "window_end": end}
        ok(w.client.post("/v1/requests", headers=staff, json={**ask, **window}), 201)


def test_an_audit_time_filter_that_is_not_a_time_is_said_so(world: World) -> None:
    """Times are compared as text: "2026/12/07" matched no event and read as "no events" on
    the page, and as [] from the API. Now a 400 naming the field, and an error next to it."""
    from tests.accounts_world import PASSWORD
    from tests.web_helpers import browser_login

    w = world
    auditor = w.as_("auditor")
    for query, field in (("since=2026/12/07", "since"), ("until=yesterday", "until")):
        problem = refused(
            w.client.get(f"/v1/audit/events?{query}", headers=auditor), 400, "invalid-input"
        )
        assert problem["field"] == field
    for good in ("since=2026-12-01", "until=2099-01-01T08:00:00Z", "since=2026-12-01T08:00:00.5Z"):
        assert w.client.get(f"/v1/audit/events?{good}", headers=auditor).status_code == 200
    from audit.trail import time_bound

    # compared with the events' times as text: written as they are, to the microsecond
    assert time_bound("2026-12-01") == "2026-12-01T00:00:00.000000Z"
    assert time_bound("2026-12-01T08:00Z") == "2026-12-01T08:00:00.000000Z"
    assert time_bound("2026-12-01T08:00:00.5Z") == "2026-12-01T08:00:00.500000Z"
    assert time_bound("2026-02-30") is None and time_bound("2026-12-01T25:00Z") is None
    w.client.cookies.clear()
    assert browser_login(w.client, "auditor", PASSWORD).status_code == 303
    export = w.client.get("/audit/events.jsonl?since=2026/12/07")
    assert export.status_code == 400
    page = w.client.get("/audit?since=2026/12/07")
    assert page.status_code == 400 and 'id="since"' in page.text
    assert 'aria-invalid="true"' in page.text and 'role="alert"' in page.text
    assert w.client.get("/audit?since=2026-12-01").status_code == 200


def test_an_address_edited_by_hand_gets_a_page_not_json(world: World) -> None:
    """A browser on /volunteer/hours/-1 read a problem+json; the API keeps answering
    problems to the same bad value."""
    from tests.accounts_world import PASSWORD
    from tests.web_helpers import browser_login

    w = world
    w.client.cookies.clear()
    assert browser_login(w.client, "vol-a", PASSWORD).status_code == 303
    html = {"accept": "text/html,application/xhtml+xml"}
    for path in (
        "/volunteer/hours/-1",
        "/volunteer/hours/abc",
        "/volunteer/hours/99999999999999999999",
    ):
        page = w.client.get(path, headers=html)
        assert page.status_code == 404, (path, page.status_code)
        assert page.headers["content-type"].startswith("text/html"), path
    api = w.client.get(f"/v1/members/{w.ids['vol-a']}/receipts/-1", headers=w.as_("vol-a"))
    assert api.status_code in (400, 404) and api.headers["content-type"].startswith(
        "application/problem+json"
    )
