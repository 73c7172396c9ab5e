"""The elder's and her family's forms without a browser, on both databases: asking with a check
step (the stored time afterwards shown first), one-button confirmation by a proxy named in the
audit event's ``on_behalf``, a code to read out, cancelling with a reason from the list, the
switcher between two elders, and each refusal next to the same thing done by someone allowed."""

from __future__ import annotations

import re
import secrets
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from tests.accounts_world import World
from tests.test_web_volunteer_pages import as_browser, form_post
from tests.test_workflow import (
    log_record,
    ok,
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
    found = re.search(r'id="code"[^>]*>([\d ]+)<', shown.text)
    assert found
    digits = found.group(1).replace(" ", "")
    assert len(digits) == 6 and digits.isdigit()
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
