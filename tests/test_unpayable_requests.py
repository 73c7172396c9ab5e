"""A request paid with the elder's stored time that she cannot pay, over HTTP on both databases:
asking for it is refused whoever asks (she, her family proxy, staff; the API and the pages), with
what she has and what it needs, in the caller's language; one that she could pay when it was asked
but no longer can (another redemption took her minutes) is not offered to volunteers (API list,
volunteer page), and the desk and her family see why it waits and can cancel it. Each refusal
sits next to the same call succeeding once she can pay; nothing is held for a request nobody took,
and nobody is served without her minutes held."""

from __future__ import annotations

import re
from typing import Any

from care.holds import hold_discrepancies
from tests.accounts_world import World
from tests.test_web_elder_pages import ask
from tests.test_web_volunteer_pages import as_browser, form_post
from tests.test_workflow import (
    balance,
    give_to_the_elder,
    hours_ago,
    log_record,
    ok,
    refused,
    serve_an_hour,
    world,  # noqa: F401 - the workflow's world, with a catalogue
)

ZH = {"Accept-Language": "zh-CN"}


def meal(w: World, who: str, minutes: int = 30, **headers: str) -> Any:
    """``who`` asks the API for a meal for elder-a tomorrow-ish, paid with her stored time."""
    w.client.cookies.clear()
    return w.client.post(
        "/v1/requests",
        headers={**w.as_(who), **headers},
        json={
            "elder_id": w.ids["elder-a"],
            "service_code": "meal",
            "minutes": minutes,
            "redeem": True,
            "window_start": hours_ago(-1),
            "window_end": hours_ago(-3),
        },
    )


def open_ids(w: World, who: str) -> set[str]:
    w.client.cookies.clear()
    listed = ok(w.client.get("/v1/requests?status=open", headers=w.as_(who)))
    return {r["id"] for r in listed}


def one(w: World, request_id: str, who: str = "staff-a") -> dict[str, Any]:
    w.client.cookies.clear()
    return dict(ok(w.client.get(f"/v1/requests/{request_id}", headers=w.as_(who))))


def offered_on_the_page(w: World, who: str) -> set[str]:
    """The requests the volunteer page offers to take (its claim forms)."""
    page = as_browser(w, who).get("/volunteer")
    assert page.status_code == 200, page.text
    return set(re.findall(r'action="/volunteer/requests/(\w+)/claim"', page.text))


def no_stuck_holds(w: World) -> None:
    assert hold_discrepancies(w.accounts.store, w.log.balances) == []


def test_the_api_refuses_a_redemption_she_cannot_pay_whoever_asks(world: World) -> None:  # noqa: F811
    """She, her family proxy and staff each get 422 at ``redeem`` saying her 0 minutes and the
    30 the meal needs, in Chinese when asked in Chinese; nothing is created. Once her stored
    time covers it, the same call makes the request, payable."""
    w = world
    before = len(ok(w.client.get("/v1/requests", headers=w.as_("staff-a"))))
    for who in ("elder-a", "family-a", "staff-a"):
        body = refused(meal(w, who), 422, "insufficient-balance")
        assert body["field"] == "redeem", body
        assert body["detail"] == "the elder has 0 minutes of stored time; this service needs 30"
    chinese = refused(meal(w, "family-a", **ZH), 422, "insufficient-balance")
    assert chinese["detail"] == "老人存储的时间只有 0 分钟，这项服务需要 30 分钟", chinese
    assert chinese["field"] == "redeem"
    assert len(ok(w.client.get("/v1/requests", headers=w.as_("staff-a")))) == before
    serve_an_hour(w)
    give_to_the_elder(w, 30)
    for who in ("elder-a", "family-a", "staff-a"):
        asked = ok(meal(w, who), 201)
        assert asked["status"] == "open" and asked["payable"] is True, asked
    # Weighted: 20 minutes of nursing (1.5×) need 30; 21 need 32.
    w.client.cookies.clear()
    nursing = {
        "elder_id": w.ids["elder-a"],
        "service_code": "nursing",
        "redeem": True,
        "window_start": hours_ago(-1),
        "window_end": hours_ago(-3),
    }
    body = refused(
        w.client.post("/v1/requests", headers=w.as_("elder-a"), json={**nursing, "minutes": 21}),
        422,
        "insufficient-balance",
    )
    assert body["detail"] == "the elder has 30 minutes of stored time; this service needs 32"
    ok(
        w.client.post("/v1/requests", headers=w.as_("elder-a"), json={**nursing, "minutes": 20}),
        201,
    )
    no_stuck_holds(w)


def test_the_elder_pages_refuse_it_for_her_family_as_the_api_does(world: World) -> None:  # noqa: F811
    """Her son confirming "pay with her stored time" on the ask page (the button is disabled
    on the check step; a post all the same) is refused with her minutes and the price; the
    same post without paying asks for it."""
    w = world
    as_browser(w, "family-a")
    w.client.cookies.set("tb_lang", "zh-CN")
    paid = ask(w, "family-a", "elder-a", pay="yes", confirmed="1")
    assert paid.status_code == 422, paid.text
    assert "老人存储的时间只有 0 分钟，这项服务需要 60 分钟" in paid.text
    unpaid = ask(w, "family-a", "elder-a", pay="no", confirmed="1")
    assert unpaid.status_code == 303, unpaid.text


def two_meals_then_one_taken(w: World) -> tuple[str, str]:
    """She has 45 minutes and asks for two 30-minute meals, each payable alone; staff send the
    first to vol-a, which holds 30: the second is no longer covered (15 left)."""
    serve_an_hour(w)
    give_to_the_elder(w, 45)
    first, second = ok(meal(w, "elder-a"), 201)["id"], ok(meal(w, "elder-a"), 201)["id"]
    assert {first, second} <= open_ids(w, "vol-b")
    assert {first, second} <= offered_on_the_page(w, "vol-b")
    w.client.cookies.clear()
    ok(
        w.client.post(
            f"/v1/requests/{first}/assign",
            headers=w.as_("staff-a"),
            json={"volunteer_id": w.ids["vol-a"]},
        )
    )
    assert balance(w, "elder-a") == (15, 30)
    return first, second


def test_a_request_she_can_no_longer_pay_leaves_the_volunteers_open_lists(world: World) -> None:  # noqa: F811
    """Not in the API's open list nor on the volunteer page; taking it all the same is refused
    with her 15 minutes and the 30 it needs, and holds nothing; nobody can log a visit for it.
    When her minutes come back (the first meal is cancelled), it is offered again and taken."""
    w = world
    first, second = two_meals_then_one_taken(w)
    assert second not in open_ids(w, "vol-b")
    assert second not in offered_on_the_page(w, "vol-b")
    assert one(w, second)["payable"] is False and one(w, first)["payable"] is True
    w.client.cookies.clear()
    taken = refused(
        w.client.post(f"/v1/requests/{second}/claim", headers={**w.as_("vol-b"), **ZH}),
        422,
        "insufficient-balance",
    )
    assert taken["field"] == "redeem"
    assert taken["detail"] == "老人存储的时间只有 15 分钟，这项服务需要 30 分钟", taken
    assert taken["detail_en"] == "the elder has 15 minutes of stored time; this service needs 30"
    assert one(w, second)["status"] == "open" and balance(w, "elder-a") == (15, 30)
    # Served without her minutes held: a visit logged for it is refused.
    assert log_record(w, "vol-b", "elder-a", 0.5, 0.1, request_id=second).status_code >= 400
    no_stuck_holds(w)
    w.client.cookies.clear()
    ok(
        w.client.post(
            f"/v1/requests/{first}/cancel",
            headers=w.as_("elder-a"),
            json={"reason": "not needed"},
        )
    )
    assert balance(w, "elder-a") == (45, 0)
    assert one(w, second)["payable"] is True
    assert second in open_ids(w, "vol-b") and second in offered_on_the_page(w, "vol-b")
    w.client.cookies.clear()
    claimed = ok(w.client.post(f"/v1/requests/{second}/claim", headers=w.as_("vol-b")))
    assert claimed["status"] == "assigned" and claimed["hold_minutes"] == 30
    assert balance(w, "elder-a") == (15, 30)
    no_stuck_holds(w)


def test_the_desk_shows_why_it_waits_and_cancels_it(world: World) -> None:  # noqa: F811
    """The dispatch board and the request's page say her stored time and the price instead
    of offering volunteers; assigning it all the same is refused saying so; cancelling it
    works and releases nothing (nothing was held). The payable request's page offers
    volunteers as before."""
    w = world
    first, second = two_meals_then_one_taken(w)
    staff = as_browser(w, "staff-a")
    w.client.cookies.set("tb_lang", "zh-CN")
    board = staff.get("/desk/dispatch")
    row = board.text[board.text.index(f'id="req-{second}"') :]
    row = row[: row.index("</tr>")]
    assert "无法支付：她存储的时间只有 15 分钟，这项服务需要 30 分钟" in row, row
    page = staff.get(f"/desk/dispatch/{second}")
    assert "她存储的时间不够支付这项服务" in page.text
    assert f'action="/desk/dispatch/{second}/assign"' not in page.text
    assert f'action="/desk/dispatch/{second}/cancel#cancel"' in page.text
    payable = staff.get(f"/desk/dispatch/{first}")
    assert f'action="/desk/dispatch/{first}/assign"' in payable.text
    assert "她存储的时间不够支付这项服务" not in payable.text
    dispatch = f"/desk/dispatch/{second}"
    sent = form_post(staff, f"{dispatch}/assign", dispatch, volunteer_id=w.ids["vol-b"])
    assert sent.status_code == 422, sent.text
    assert "老人存储的时间只有 15 分钟，这项服务需要 30 分钟" in sent.text
    assert balance(w, "elder-a") == (15, 30)
    staff = as_browser(w, "staff-a")
    cancelled = form_post(staff, f"{dispatch}/cancel", dispatch, reason="她的时间不够")
    assert cancelled.status_code == 303, cancelled.text
    assert one(w, second)["status"] == "cancelled"
    assert balance(w, "elder-a") == (15, 30)
    no_stuck_holds(w)


def test_her_family_sees_why_it_waits_and_cancels_it(world: World) -> None:  # noqa: F811
    """On her requests page the waiting one says her stored time and the price and keeps its
    cancel button; the one a volunteer took says nothing of the kind."""
    w = world
    first, second = two_meals_then_one_taken(w)
    page = as_browser(w, "family-a")
    w.client.cookies.set("tb_lang", "zh-CN")
    listed = page.get(f"/elder/{w.ids['elder-a']}/requests").text
    cards = {m.group(1): m.group(0) for m in re.finditer(r"requests/(\w+)/cancel", listed)}
    assert second in cards and first in cards
    stuck = listed[: listed.index(f"requests/{second}/cancel")]
    stuck = stuck[stuck.rindex('<li class="card">') :]
    assert "存储的时间不够：现有 15 分钟，需要 30 分钟" in stuck, stuck
    taken = listed[: listed.index(f"requests/{first}/cancel")]
    taken = taken[taken.rindex('<li class="card">') :]
    assert "存储的时间不够" not in taken
