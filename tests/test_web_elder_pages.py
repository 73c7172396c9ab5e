"""The elder's and her family's forms without a browser, on both databases: asking with a check
step (the stored time afterwards shown first), one-button confirmation by a proxy named in the
audit event's ``on_behalf``, a code to read out, cancelling with a reason from the list, the
switcher between two elders, and each refusal next to the same thing done by someone allowed."""

from __future__ import annotations

import html
import re
import secrets
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tests.accounts_world import PASSWORD, World, person
from tests.test_web_volunteer_pages import as_browser, form_post
from tests.test_workflow import (
    _pool_seed,
    give_to_the_elder,
    hours_ago,
    keyed,
    log_record,
    ok,
    serve_an_hour,
    world,  # noqa: F401 - the workflow's world, with a catalogue
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
ONCE = "0" * 32  # a form's one-time key; the page makes a fresh one each time it renders
ONCE_INPUT = re.compile(r'name="once" value="(\w+)"')


def today() -> str:
    return datetime.now(SHANGHAI).date().isoformat()


def api_post(w: World, path: str, who: str, body: dict[str, Any] | None = None) -> Any:
    """A call through the JSON API with a bearer token, without the page's cookies."""
    saved = dict(w.client.cookies)
    w.client.cookies.clear()
    try:
        return w.client.post(path, headers=w.as_(who), json=body or {})
    finally:
        w.client.cookies.update(saved)


def requests_of(w: World, elder: str) -> list[dict[str, Any]]:
    return [
        r
        for r in ok(w.client.get("/v1/requests", headers=w.as_("staff-a")))
        if r["elder_id"] == w.ids[elder]
    ]


def ask(w: World, who: str, elder: str, **fields: str) -> Any:
    """The ask form; its check step (``confirmed``) carries the one-time key the page made."""
    form = {"day": today(), "part": "any", "minutes": "60", "pay": "no", **fields}
    if fields.get("confirmed") == "1":
        form.setdefault("once", secrets.token_hex(16))
    base = f"/elder/{w.ids[elder]}"
    return form_post(w.client, f"{base}/ask/meal", f"{base}/ask/meal", **form)


def test_an_elder_asks_and_sees_the_stored_time_afterwards_before_confirming(world: World) -> None:  # noqa: F811
    w = world
    page = as_browser(w, "elder-a")
    landing = page.get("/elder", follow_redirects=False)
    assert landing.headers["location"] == f"/elder/{w.ids['elder-a']}"
    menu = page.get(f"/elder/{w.ids['elder-a']}/ask")
    assert "助餐" in menu.text and "/static/services.svg#meals" in menu.text
    refused = ask(w, "elder-a", "elder-a", part="midnight")
    assert refused.status_code == 400
    assert 'role="alert"' in refused.text
    assert requests_of(w, "elder-a") == []
    chosen = ask(w, "elder-a", "elder-a", pay="yes")
    assert chosen.status_code == 303, chosen.text  # the check step is a page of its own
    check = page.get(chosen.headers["location"])
    assert check.status_code == 200, check.text
    assert "请核对" in check.text and 'id="after"' in check.text
    assert requests_of(w, "elder-a") == []  # nothing asked before the second step
    # Her stored time (none) does not cover it: the check step's button is disabled, and
    # posting it all the same is refused with what she has and needs.
    short = ask(w, "elder-a", "elder-a", pay="yes", confirmed="1")
    assert short.status_code == 422, short.text
    assert "老人存储的时间只有 0 分钟，这项服务需要 60 分钟" in short.text
    assert requests_of(w, "elder-a") == []
    w.log.append(_pool_seed(60))  # the pool grants her an hour (she is flagged 高龄)
    saved = dict(w.client.cookies)
    w.client.cookies.clear()
    granted = w.client.post(
        "/v1/grants",
        headers=keyed(w.as_("b1-admin")),
        json={"elder_id": w.ids["elder-a"], "minutes": 60, "reason": "winter care"},
    )
    assert granted.status_code == 201, granted.text
    w.client.cookies.update(saved)
    done = ask(w, "elder-a", "elder-a", pay="yes", confirmed="1")
    assert done.status_code == 303, done.text
    [asked] = requests_of(w, "elder-a")
    assert asked["redeem"] is True and asked["minutes"] == 60 and not asked["acting_for"]
    start = datetime.fromisoformat(asked["window_start"]).astimezone(SHANGHAI)
    assert (start.date().isoformat(), start.hour) == (today(), 0)  # the bank's day, all of it
    listed = page.get(done.headers["location"])
    assert "等待志愿者接单" in listed.text


def test_a_proxy_acts_for_her_elder_and_is_refused_for_another(world: World) -> None:  # noqa: F811
    w = world
    page = as_browser(w, "family-a")
    assert page.get(f"/elder/{w.ids['elder-a']}").status_code == 200
    assert page.get(f"/elder/{w.ids['elder-b']}").status_code == 404
    assert ask(w, "family-a", "elder-b", confirmed="1").status_code == 404
    assert requests_of(w, "elder-b") == []
    assert ask(w, "family-a", "elder-a", confirmed="1").status_code == 303
    [asked] = requests_of(w, "elder-a")
    assert asked["acting_for"] is True
    events = [
        e for e in w.client.app.state.audit.all_events() if e.action.startswith("POST /elder/")
    ]
    assert [(e.status, e.on_behalf) for e in events] == [
        (404, w.ids["elder-b"]),
        (303, w.ids["elder-a"]),
    ]


def test_one_button_confirms_and_the_audit_event_names_the_elder(world: World) -> None:  # noqa: F811
    w = world
    mine = ok(log_record(w, "vol-a", "elder-a", 3, 2), 201)
    other = ok(log_record(w, "vol-b", "elder-b", 3, 2), 201)
    own = ok(log_record(w, "vol-a", "elder-a", 5, 4), 201)
    page = as_browser(w, "family-a")
    base = f"/elder/{w.ids['elder-a']}"
    waiting = page.get(f"{base}/confirm")
    assert f"{base}/records/{mine['id']}/confirm" in waiting.text
    assert other["id"] not in waiting.text
    refused = form_post(page, f"{base}/records/{other['id']}/confirm", f"{base}/confirm", once=ONCE)
    assert refused.status_code == 404
    confirmed = form_post(
        page, f"{base}/records/{mine['id']}/confirm", f"{base}/confirm", once=ONCE
    )
    assert confirmed.status_code == 303, confirmed.text
    record = ok(w.client.get(f"/v1/records/{mine['id']}", headers=w.as_("staff-a")))
    assert record["status"] == "confirmed" and record["confirmed_as"] == "family"
    assert ok(w.client.get(f"/v1/records/{other['id']}", headers=w.as_("staff-b")))["status"] == (
        "logged"
    )
    [event] = [
        e
        for e in w.client.app.state.audit.all_events()
        if e.action == "POST /elder/{member_id}/records/{record_id}/confirm" and e.status == 303
    ]
    assert event.on_behalf == w.ids["elder-a"]
    assert mine["id"] in event.objects
    # The elder herself confirming is not "on behalf" of anyone.
    page = as_browser(w, "elder-a")
    assert form_post(
        page, f"{base}/records/{own['id']}/confirm", f"{base}/confirm", once=ONCE
    ).is_redirect
    last = [e for e in w.client.app.state.audit.all_events() if own["id"] in e.objects]
    assert last[-1].on_behalf is None


def test_a_form_posted_twice_asks_and_confirms_once(world: World) -> None:  # noqa: F811
    """A double tap or a resent page: the second post of the same form (the same one-time key
    the page made) answers with the first post's page and changes nothing; a new render of the
    form gets a new key and asks again."""
    w = world
    record = ok(log_record(w, "vol-a", "elder-a", 3, 2), 201)
    page = as_browser(w, "elder-a")
    check = page.get(ask(w, "elder-a", "elder-a").headers["location"])
    match = ONCE_INPUT.search(check.text)
    assert match
    first = ask(w, "elder-a", "elder-a", confirmed="1", once=match.group(1))
    second = ask(w, "elder-a", "elder-a", confirmed="1", once=match.group(1))
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]
    assert len(requests_of(w, "elder-a")) == 1
    changed = ask(w, "elder-a", "elder-a", confirmed="1", once=match.group(1), minutes="120")
    assert changed.status_code == 409  # the key came back with other answers
    missing = ask(w, "elder-a", "elder-a", confirmed="1", once="")
    assert missing.status_code == 400
    again = ONCE_INPUT.search(page.get(ask(w, "elder-a", "elder-a").headers["location"]).text)
    assert again and again.group(1) != match.group(1)
    assert ask(w, "elder-a", "elder-a", confirmed="1", once=again.group(1)).status_code == 303
    assert len(requests_of(w, "elder-a")) == 2
    # "Yes, the volunteer came", twice: one confirmation, the same thank-you page both times.
    base = f"/elder/{w.ids['elder-a']}"
    waiting = page.get(f"{base}/confirm").text
    key = ONCE_INPUT.search(waiting)
    assert key
    path = f"{base}/records/{record['id']}/confirm"
    tapped = [form_post(page, path, f"{base}/confirm", once=key.group(1)) for _ in range(2)]
    assert [t.headers.get("location") for t in tapped] == [f"{base}/confirm?done=1"] * 2
    after = ok(w.client.get(f"/v1/records/{record['id']}", headers=w.as_("staff-a")))
    assert (after["status"], after["confirmed_as"]) == ("confirmed", "elder")
    # Without the key the second tap would be refused: the record is no longer waiting.
    refused = form_post(page, path, f"{base}/confirm", once=secrets.token_hex(16))
    assert refused.status_code == 409


def test_a_code_from_the_page_confirms_the_volunteers_record(world: World) -> None:  # noqa: F811
    w = world
    record = ok(log_record(w, "vol-a", "elder-a", 3, 2), 201)
    page = as_browser(w, "elder-a")
    base = f"/elder/{w.ids['elder-a']}"
    made = form_post(page, f"{base}/code", f"{base}/confirm")
    assert made.headers["location"] == f"{base}/code", made.text
    shown = page.get(made.headers["location"])
    assert shown.status_code == 200, shown.text
    # A screen reader reads the code digit by digit, not as two numbers (251 662), and the
    # paragraph carries no aria-label (not allowed on a <p>; axe's aria-prohibited-attr).
    code = re.search(r'<p class="code" id="code">(.*?)</p>', shown.text)
    assert code and "aria-label" not in code.group(0)
    spoken = re.search(r'<span class="sr-only" id="code-spoken">([\d ]+)</span>', code.group(1))
    assert spoken and re.fullmatch(r"\d( \d){5}", spoken.group(1))
    assert 'aria-hidden="true">' + spoken.group(1).replace(" ", "")[:3] in code.group(1)
    digits = spoken.group(1).replace(" ", "")
    volunteer = as_browser(w, "vol-a")
    entered = form_post(
        volunteer, f"/volunteer/records/{record['id']}/code", "/volunteer", confirmation_code=digits
    )
    assert entered.status_code == 303
    after = ok(w.client.get(f"/v1/records/{record['id']}", headers=w.as_("staff-a")))
    assert after["status"] == "confirmed" and after["confirmed_as"] == "code"


def test_cancelling_takes_a_reason_from_the_list(world: World) -> None:  # noqa: F811
    w = world
    as_browser(w, "elder-a")
    ask(w, "elder-a", "elder-a", confirmed="1")
    [asked] = requests_of(w, "elder-a")
    base = f"/elder/{w.ids['elder-a']}"
    path = f"{base}/requests/{asked['id']}/cancel"
    assert "时间不合适" in w.client.get(path).text
    no_reason = form_post(w.client, path, path, reason="because", once=secrets.token_hex(16))
    assert no_reason.status_code == 400
    stranger = as_browser(w, "vol-b")
    assert form_post(stranger, path, "/account", reason="time").status_code == 404
    page = as_browser(w, "elder-a")
    key = ONCE_INPUT.search(page.get(path).text)
    assert key
    # "Yes, cancel it", tapped twice: one cancellation, the same page both times.
    tapped = [form_post(page, path, path, reason="time", once=key.group(1)) for _ in range(2)]
    assert [t.status_code for t in tapped] == [303, 303]
    assert tapped[0].headers["location"] == tapped[1].headers["location"]
    [cancelled] = requests_of(w, "elder-a")
    assert (cancelled["status"], cancelled["cancel_reason"]) == ("cancelled", "时间不合适")
    assert "已取消" in page.get(f"{base}/requests").text
    # Without the key the second tap would be refused: the request is cancelled already.
    again = form_post(page, path, "/account", reason="time", once=secrets.token_hex(16))
    assert again.status_code == 409


def test_a_family_with_two_elders_switches_between_them(world: World) -> None:  # noqa: F811
    w = world
    granted = api_post(
        w, f"/v1/members/{w.ids['young-elder']}/proxies", "staff-a", {"username": "family-a"}
    )
    assert granted.status_code == 204, granted.text
    page = as_browser(w, "family-a")
    chooser = page.get("/elder")
    assert chooser.status_code == 200
    for elder in ("elder-a", "young-elder"):
        assert f'href="/elder/{w.ids[elder]}"' in chooser.text
        own = page.get(f"/elder/{w.ids[elder]}")
        assert own.status_code == 200 and 'href="/elder"' in own.text  # the switch
    assert ask(w, "family-a", "young-elder", confirmed="1").status_code == 303
    assert ask(w, "family-a", "elder-a", confirmed="1").status_code == 303
    assert len(requests_of(w, "young-elder")) == len(requests_of(w, "elder-a")) == 1
    lone = as_browser(w, "elder-a")
    assert lone.get("/elder", follow_redirects=False).status_code == 303
    assert as_browser(w, "vol-a").get("/elder").status_code == 403


def test_the_form_expired_answers_follow_the_page_language(world: World) -> None:  # noqa: F811
    w = world
    page = as_browser(w, "elder-a")
    base = f"/elder/{w.ids['elder-a']}"
    for lang, words in (("zh-CN", "页面已过期"), ("en", "The form has expired")):
        page.cookies.set("tb_lang", lang)
        stale = page.post(
            f"{base}/code",
            data={"_csrf_token": "not-the-token"},
            headers={"accept": "text/html"},
            follow_redirects=False,
        )
        assert stale.status_code == 403
        assert words in stale.text and f'lang="{lang}"' in stale.text
        # The page's own calls to /v1 with the cookie and a stale token: a problem, translated.
        called = page.post(
            f"/v1/members/{w.ids['elder-a']}/confirmation-codes",
            headers={"X-CSRFToken": "stale"},
        )
        assert called.status_code == 403
        assert called.json()["title"] == words
    fresh = form_post(page, f"{base}/code", f"{base}/confirm")
    assert fresh.headers["location"] == f"{base}/code"


def test_a_family_cancels_only_their_elders_requests_and_learns_nothing_of_others(
    world: World,  # noqa: F811
) -> None:
    """Another elder's request (open, so family-a sees it as a volunteer) answers as a request
    that does not exist, on the page and through the API; their own elder's is cancelled."""
    w = world
    others = ok(
        api_post(
            w,
            "/v1/requests",
            "staff-b",
            {
                "elder_id": w.ids["elder-b"],
                "service_code": "meal",
                "minutes": 30,
                "window_start": f"{today()}T10:00:00+08:00",
                "window_end": f"{today()}T11:00:00+08:00",
            },
        ),
        201,
    )["id"]
    unknown = "0" * 16
    base = f"/elder/{w.ids['elder-a']}/requests"
    page = as_browser(w, "family-a")
    shown = [page.get(f"{base}/{id_}/cancel") for id_ in (others, unknown)]
    tapped = [
        form_post(page, f"{base}/{id_}/cancel", "/account", reason="time")
        for id_ in (others, unknown)
    ]
    for answers in (shown, tapped):
        assert [a.status_code for a in answers] == [404, 404]
        assert answers[0].text.replace(others, unknown) == answers[1].text
    api = [
        api_post(w, f"/v1/requests/{id_}/cancel", "family-a", {"reason": "not mine"})
        for id_ in (others, unknown)
    ]
    assert [a.status_code for a in api] == [404, 404]
    assert api[0].text.replace(others, unknown) == api[1].text
    assert ok(w.client.get(f"/v1/requests/{others}", headers=w.as_("staff-b")))["status"] == "open"
    ask(w, "family-a", "elder-a", confirmed="1")
    [own] = requests_of(w, "elder-a")
    key = ONCE_INPUT.search(page.get(f"{base}/{own['id']}/cancel").text)
    assert key
    done = form_post(
        page, f"{base}/{own['id']}/cancel", "/account", reason="time", once=key.group(1)
    )
    assert done.status_code == 303
    assert requests_of(w, "elder-a")[0]["status"] == "cancelled"
    ask(w, "family-a", "elder-a", confirmed="1")
    [again] = [r for r in requests_of(w, "elder-a") if r["status"] == "open"]
    assert (
        api_post(w, f"/v1/requests/{again['id']}/cancel", "family-a", {"reason": "x"}).status_code
        == 200
    )


def at_three_in_the_afternoon(w: World) -> None:
    """The service's clock at 15:00 today in the bank's time zone: the morning is over."""
    afternoon = datetime.combine(datetime.now(SHANGHAI).date(), time(15), SHANGHAI)
    w.client.app.state.care.clock = lambda: afternoon


def checked(page: str, name: str) -> str:
    [value] = re.findall(rf'name="{name}" value="([^"]+)"[^>]* checked', page)
    return value


def test_a_part_of_today_that_is_over_is_neither_offered_first_nor_taken(world: World) -> None:  # noqa: F811
    w = world
    at_three_in_the_afternoon(w)
    page = as_browser(w, "elder-a")
    form = page.get(f"/elder/{w.ids['elder-a']}/ask/meal")
    assert checked(form.text, "part") == "afternoon"  # not the morning, over at 12:00
    assert re.search(r'value="morning"[^>]* data-over-today', form.text)
    assert "（今天已过）" in form.text
    for step in ("0", "1"):
        refused = ask(w, "elder-a", "elder-a", part="morning", confirmed=step)
        assert refused.status_code == 400
        assert "这一段时间今天已经过了" in refused.text
        assert re.search(r'value="morning"[^>]* aria-invalid="true"', refused.text)
        assert requests_of(w, "elder-a") == []
    tomorrow = (datetime.now(SHANGHAI).date() + timedelta(days=1)).isoformat()
    assert ask(w, "elder-a", "elder-a", day=tomorrow, part="morning").status_code == 303
    assert ask(w, "elder-a", "elder-a", part="evening", confirmed="1").status_code == 303
    [asked] = requests_of(w, "elder-a")
    assert datetime.fromisoformat(asked["window_start"]).astimezone(SHANGHAI).hour == 18


def test_change_it_and_the_header_buttons_come_back_to_her_choices(world: World) -> None:  # noqa: F811
    w = world
    page = as_browser(w, "elder-a")
    tomorrow = (datetime.now(SHANGHAI).date() + timedelta(days=1)).isoformat()
    choices = {"day": tomorrow, "part": "evening", "minutes": "120", "pay": "yes"}
    chosen = ask(w, "elder-a", "elder-a", **choices)
    assert chosen.status_code == 303
    check = page.get(chosen.headers["location"])
    assert check.status_code == 200 and "请核对" in check.text
    [change] = re.findall(r'<a class="big" href="([^"]+)">不对，改一下', check.text)
    form = page.get(html.unescape(change))
    assert {k: checked(form.text, k) for k in choices} == choices
    # The text size button on the form comes back to the form as she filled it.
    [header] = re.findall(r'name="next" value="([^"]+)"', form.text)
    sized = form_post(
        page, "/prefs", f"/elder/{w.ids['elder-a']}", size="3", next=html.unescape(header)
    )
    again = page.get(sized.headers["location"])
    assert {k: checked(again.text, k) for k in choices} == choices


def test_a_refused_day_marks_the_day_question(world: World) -> None:  # noqa: F811
    w = world
    as_browser(w, "elder-a")
    refused = ask(w, "elder-a", "elder-a", day="2020-01-01")
    assert refused.status_code == 400 and "请选择哪一天" in refused.text
    assert re.search(r'name="day"[^>]* aria-invalid="true"', refused.text)
    assert not re.search(r'name="part"[^>]* aria-invalid', refused.text)


def test_a_recorded_visit_is_hers_to_confirm_not_cancel_and_its_rejection_reads_in_words(
    world: World,  # noqa: F811
) -> None:
    w = world
    visited, waiting = (
        ok(
            api_post(
                w,
                "/v1/requests",
                "elder-a",
                {
                    "elder_id": w.ids["elder-a"],
                    "service_code": "meal",
                    "minutes": 60,
                    "window_start": hours_ago(start),
                    "window_end": hours_ago(start - 3),
                },
            ),
            201,
        )
        for start in (4, -20)
    )
    assign = {"volunteer_id": w.ids["vol-a"]}
    ok(api_post(w, f"/v1/requests/{visited['id']}/assign", "staff-a", assign))
    record = ok(log_record(w, "vol-a", "elder-a", 3, 2, request_id=visited["id"]), 201)
    page = as_browser(w, "elder-a")
    base = f"/elder/{w.ids['elder-a']}"
    listed = page.get(f"{base}/requests").text
    assert f"/requests/{visited['id']}/cancel" not in listed  # her visit waits for her "yes"
    assert f"/requests/{waiting['id']}/cancel" in listed  # one not yet served is hers to cancel
    path = f"{base}/requests/{visited['id']}/cancel"
    shown = page.get(path).text
    assert "志愿者已经登记了这次服务" in shown and 'name="reason"' not in shown
    refused = form_post(page, path, path, reason="time", once=secrets.token_hex(16))
    assert refused.status_code == 409
    assert "志愿者已经登记了这次服务" in refused.text and "工作人员驳回" not in refused.text
    assert {r["id"]: r["status"] for r in requests_of(w, "elder-a")}[visited["id"]] == "assigned"
    # The centre confirms for her meanwhile: her tap on the page she had open says so.
    ok(api_post(w, f"/v1/records/{record['id']}/confirm", "staff-a"))
    confirm = f"{base}/records/{record['id']}/confirm"
    late = form_post(page, confirm, f"{base}/confirm", once=secrets.token_hex(16))
    assert late.status_code == 409 and "这次服务已经确认过了" in late.text
    # Staff reject the record: the request reads cancelled, and why, in her language.
    ok(api_post(w, f"/v1/records/{record['id']}/reject", "staff-a", {"reason": "没来"}))
    listed = page.get(f"{base}/requests").text
    assert "服务中心核实后，驳回了这次服务的记录。" in listed
    assert "service record rejected" not in listed


def test_a_proxy_reads_whose_time_and_requests_these_are(world: World) -> None:  # noqa: F811
    w = world
    base = f"/elder/{w.ids['elder-a']}"
    for who, mine in (("elder-a", True), ("family-a", False)):
        page = as_browser(w, who)
        home, form = page.get(base).text, page.get(f"{base}/ask/meal").text
        requests = page.get(f"{base}/requests").text
        for text, words in (
            (home, "我的需求和进度"),
            (home, "我的存储时间和用途"),
            (form, "用，扣我的存储时间"),
            (requests, "<h1>我的需求和进度</h1>"),
        ):
            assert (words in text) is mine, (who, words)
        if not mine:  # her masked name instead of "my"
            assert re.search(r"<span>\S+的需求和进度</span>", home)
            assert re.search(r"用，扣\S+的存储时间", form)


def test_her_history_says_what_a_hold_holds_and_what_is_short(world: World) -> None:  # noqa: F811
    w = world
    serve_an_hour(w)
    give_to_the_elder(w, 80)
    page = as_browser(w, "elder-a")
    base = f"/elder/{w.ids['elder-a']}"
    assert "<strong>+1 小时 20 分钟</strong>" in page.get(f"{base}/time").text  # the gift
    assert ask(w, "elder-a", "elder-a", pay="yes", confirmed="1").status_code == 303
    [asked] = [r for r in requests_of(w, "elder-a") if r["status"] == "open"]
    assign = {"volunteer_id": w.ids["vol-a"]}
    ok(api_post(w, f"/v1/requests/{asked['id']}/assign", "staff-a", assign))  # holds her hour
    held = page.get(f"{base}/time").text
    assert "<strong>1 小时 0 分钟</strong> · 为需求冻结" in held
    assert "0 小时 0 分钟" not in held
    path = f"{base}/requests/{asked['id']}/cancel"
    assert form_post(page, path, path, reason="time", once=secrets.token_hex(16)).is_redirect
    assert "<strong>1 小时 0 分钟</strong> · 预留退回" in page.get(f"{base}/time").text
    # Two hours of meals (120 minutes) with 80 stored: what is missing, not "-0 h 40 min".
    asked_short = ask(w, "elder-a", "elder-a", pay="yes", minutes="120")
    assert asked_short.status_code == 303
    short = page.get(asked_short.headers["location"])
    assert re.findall(r'id="after">([^<]+)<', short.text) == ["不够，还差 40 分钟"]


def test_on_an_elders_pages_the_call_bar_dials_the_centre_serving_her(world: World) -> None:  # noqa: F811
    """A son in one centre acts for his mother served by another: on her pages (home, asking,
    her statement) "call the centre" dials hers, on his own pages his."""
    w = world
    admin = w.accounts.principal_for_user(w.ids["b1-admin"])
    his = w.accounts.create_org(admin, "鼓楼服务中心", "community_centre", "025-8321 0000")
    hers = w.accounts.create_org(admin, "安康养老服务站", "service_station", "025-8321 0001")
    son = w.accounts.register_member(
        admin,
        his.id,
        person("钱大伟", "13800002020"),
        volunteer=True,
        elder=False,
        username="son-x",
        password=PASSWORD,
    )
    mother = w.accounts.register_member(
        admin, hers.id, person("钱老太", "13800003030"), volunteer=False, elder=True
    ).member.id
    # Her son, of another organisation, acts for her once he is her confirmed relative.
    link = w.accounts.declare_relative(admin, son.member.id, mother, "parent")
    w.accounts.decide_relative(admin, link.id, True)
    w.accounts.grant_proxy(admin, mother, "son-x")
    page = as_browser(w, "son-x")
    for path in (f"/elder/{mother}", f"/elder/{mother}/ask", f"/documents/{mother}/statement"):
        shown = page.get(path)
        assert shown.status_code == 200, path
        assert 'href="tel:025-83210001"' in shown.text and "83210000" not in shown.text, path
    own = page.get("/account")
    assert own.status_code == 200
    assert 'href="tel:025-83210000"' in own.text
