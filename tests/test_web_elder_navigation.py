"""Coming back to a real page, on both databases: logging in again after a session ended under
a form, and the header's text-size, language and 长辈版 buttons on the answer to a post, lead to
a page that answers GET (the page the form was on), never to a form's post-only address and its
405; such an address opened as a page gets the app's own page in the reader's language."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.accounts_world import PASSWORD, World
from tests.test_web_elder_pages import ONCE_INPUT, requests_of, today
from tests.test_web_volunteer_pages import as_browser, form_post
from tests.test_workflow import (
    log_record,
    ok,
    world,  # noqa: F401 - the workflow's world, with a catalogue
)
from tests.web_helpers import browser_login, csrf_token

ORIGIN = "http://testserver.local"
HEADER_NEXT = re.compile(r'action="/prefs">.*?name="next" value="([^"]*)"', re.S)


def record_status(w: World, record_id: str, staff: str = "staff-a") -> str:
    status: str = ok(w.client.get(f"/v1/records/{record_id}", headers=w.as_(staff)))["status"]
    return status


def header_next(page: Any) -> str:
    """Where the header's buttons (text size, language, 长辈版) lead after choosing."""
    found = HEADER_NEXT.search(page.text)
    assert found, "no header buttons on the page"
    return found.group(1).replace("&amp;", "&")


def test_a_confirmation_lost_to_an_ended_session_is_redone_from_the_confirm_page(
    world: World,  # noqa: F811
) -> None:
    w = world
    record = ok(log_record(w, "vol-a", "elder-a", 3, 2), 201)
    page = as_browser(w, "elder-a")
    base = f"/elder/{w.ids['elder-a']}"
    waiting = page.get(f"{base}/confirm")
    key = ONCE_INPUT.search(waiting.text)
    assert key
    token = csrf_token(page, f"{base}/confirm")
    # The session ends while the page is open (12 hours, or "log out everywhere" on a phone).
    w.accounts.logout_everywhere(w.accounts.principal_for_user(w.ids["elder-a-user"]))
    tapped = page.post(
        f"{base}/records/{record['id']}/confirm",
        data={"once": key.group(1), "_csrf_token": token},
        headers={"referer": f"{ORIGIN}{base}/confirm"},
        follow_redirects=False,
    )
    assert tapped.status_code == 303
    login_at = urlsplit(tapped.headers["location"])
    assert login_at.path == "/login"
    [target] = parse_qs(login_at.query)["next"]
    assert target == f"{base}/confirm"  # the page she was on, not the form's address
    assert record_status(w, record["id"]) == "logged"
    login_page = page.get(tapped.headers["location"])
    assert f'name="next" value="{base}/confirm"' in login_page.text
    logged_in = form_post(
        page,
        "/login",
        tapped.headers["location"],
        username="elder-a",
        password=PASSWORD,
        next=target,
    )
    assert logged_in.headers["location"] == f"{base}/confirm"
    again = page.get(logged_in.headers["location"])
    assert again.status_code == 200
    key = ONCE_INPUT.search(again.text)
    assert key and f"{base}/records/{record['id']}/confirm" in again.text
    done = form_post(
        page, f"{base}/records/{record['id']}/confirm", f"{base}/confirm", once=key.group(1)
    )
    assert done.headers["location"] == f"{base}/confirm?done=1"
    assert record_status(w, record["id"]) == "confirmed"


def test_header_buttons_on_a_refusal_lead_to_the_page_the_form_was_on(world: World) -> None:  # noqa: F811
    w = world
    other = ok(log_record(w, "vol-b", "elder-b", 3, 2), 201)
    page = as_browser(w, "family-a")
    base = f"/elder/{w.ids['elder-a']}"
    asked = page.get(f"{base}/requests?asked=1")
    assert header_next(asked) == f"{base}/requests?asked=1"  # a page got: itself, as it was
    token = csrf_token(page, f"{base}/confirm")
    refused = page.post(
        f"{base}/records/{other['id']}/confirm",
        data={"once": "0" * 32, "_csrf_token": token},
        headers={"referer": f"{ORIGIN}{base}/confirm"},
        follow_redirects=False,
    )
    assert refused.status_code == 404  # another elder's record, shown on this elder's page
    assert header_next(refused) == f"{base}/confirm"
    bigger = page.post(
        "/prefs",
        data={"size": "3", "next": header_next(refused), "_csrf_token": token},
        follow_redirects=False,
    )
    assert bigger.headers["location"] == f"{base}/confirm"
    assert page.get(bigger.headers["location"]).status_code == 200
    # Without a Referer (a browser that sends none) the start, never the form's own address.
    unsent = page.post(
        f"{base}/records/{other['id']}/confirm",
        data={"once": "0" * 32, "_csrf_token": token},
        follow_redirects=False,
    )
    assert header_next(unsent) == "/"
    # A `next` naming a post-only address, sent by hand, leads to the start as well.
    for chosen in (f"{base}/records/{other['id']}/confirm", f"{base}/confirm"):
        landed = page.post(
            "/prefs",
            data={"lang": "en", "next": chosen, "_csrf_token": token},
            follow_redirects=False,
        )
        assert landed.headers["location"] == ("/" if "records" in chosen else chosen)
    page.cookies.clear()
    login = form_post(
        page,
        "/login",
        "/login",
        username="family-a",
        password=PASSWORD,
        next=f"{base}/records/{other['id']}/confirm",
    )
    assert login.headers["location"] == "/"
    assert record_status(w, other["id"], "staff-b") == "logged"


def test_a_forms_address_opened_as_a_page_is_the_apps_page_in_her_language(world: World) -> None:  # noqa: F811
    w = world
    record = ok(log_record(w, "vol-a", "elder-a", 3, 2), 201)
    page = as_browser(w, "elder-a")
    path = f"/elder/{w.ids['elder-a']}/records/{record['id']}/confirm"
    for language, words in (
        ("zh-CN", "这个页面不能直接打开"),
        ("en", "This page cannot be opened here"),
    ):
        opened = page.get(path, headers={"accept": "text/html", "accept-language": language})
        assert opened.status_code == 405
        assert opened.headers["content-type"].startswith("text/html")
        assert words in opened.text and "Method Not Allowed" not in opened.text
        assert header_next(opened) == "/"
    assert record_status(w, record["id"]) == "logged"


CODE_SHOWN = re.compile(r'id="code-spoken">([\d ]+)<')


def test_the_code_is_a_page_of_its_own_that_back_and_reload_show_again(world: World) -> None:  # noqa: F811
    w = world
    record = ok(log_record(w, "vol-a", "elder-a", 3, 2), 201)
    page = as_browser(w, "elder-a")
    base = f"/elder/{w.ids['elder-a']}"
    opened = page.get(f"{base}/code")  # before any code: the button to make one, not a 405
    assert opened.status_code == 200 and CODE_SHOWN.search(opened.text) is None
    assert f'action="{base}/code"' in opened.text
    made = form_post(page, f"{base}/code", f"{base}/confirm")
    assert (made.status_code, made.headers["location"]) == (303, f"{base}/code")
    shown = [page.get(made.headers["location"]) for _ in range(2)]  # shown, then reloaded
    codes = {CODE_SHOWN.search(s.text).group(1) for s in shown}  # type: ignore[union-attr]
    assert len(codes) == 1
    assert header_next(shown[1]) == f"{base}/code"  # a bigger text size keeps the code
    # Another login on this phone does not see her code: the page is hers.
    assert browser_login(page, "vol-a", PASSWORD).status_code == 303
    assert page.cookies.get("tb_code") is not None
    assert page.get(f"{base}/code").status_code == 404
    volunteer = as_browser(w, "vol-a")
    entered = form_post(
        volunteer,
        f"/volunteer/records/{record['id']}/code",
        "/volunteer",
        confirmation_code=codes.pop().replace(" ", ""),
    )
    assert entered.status_code == 303
    assert record_status(w, record["id"]) == "confirmed"


def test_the_check_step_is_a_page_so_back_after_asking_shows_it_again(world: World) -> None:  # noqa: F811
    w = world
    page = as_browser(w, "family-a")
    base = f"/elder/{w.ids['elder-a']}"
    chosen = form_post(
        page,
        f"{base}/ask/meal",
        f"{base}/ask/meal",
        day=today(),
        part="any",
        minutes="60",
        pay="no",
    )
    assert chosen.status_code == 303
    check_at = chosen.headers["location"]
    assert urlsplit(check_at).path == f"{base}/ask/meal/check"
    check = page.get(check_at)
    assert check.status_code == 200 and "请核对" in check.text
    assert header_next(check) == check_at  # a header button comes back to her choices
    key = ONCE_INPUT.search(check.text)
    assert key
    asked = form_post(
        page,
        f"{base}/ask/meal",
        check_at,
        day=today(),
        part="any",
        minutes="60",
        pay="no",
        confirmed="1",
        once=key.group(1),
    )
    assert asked.headers["location"] == f"{base}/requests?asked=1"
    back = page.get(check_at)  # Back from her requests: the check step again, not a resent form
    assert back.status_code == 200 and "请核对" in back.text
    assert len(requests_of(w, "elder-a")) == 1
    # Choices sent by hand are checked again on the page: nothing is asked for a stale day.
    stale = page.get(f"{base}/ask/meal/check?day=2020-01-01&part=any&minutes=60&pay=no")
    assert stale.status_code == 400 and 'role="alert"' in stale.text


def test_a_form_whose_token_cookie_is_gone_is_opened_again_with_her_choices(
    world: World,  # noqa: F811
) -> None:
    w = world
    first = w.client.get("/login")
    csrf_cookie = next(c for c in first.headers.get_list("set-cookie") if c.startswith("tb_csrf="))
    assert "Max-Age=31536000" in csrf_cookie  # outlives the 12-hour session, not the browser
    page = as_browser(w, "elder-a")
    base = f"/elder/{w.ids['elder-a']}"
    tomorrow = (
        date.fromisoformat(today()) + timedelta(days=1)
    ).isoformat()  # this evening may be over
    choices = {"day": tomorrow, "part": "evening", "minutes": "120", "pay": "no"}
    check_at = form_post(page, f"{base}/ask/meal", f"{base}/ask/meal", **choices).headers[
        "location"
    ]
    check = page.get(check_at)
    key = ONCE_INPUT.search(check.text)
    token = csrf_token(page, check_at)
    assert key
    page.cookies.delete("tb_csrf")  # the browser dropped it (cleared, or an old session cookie)
    expired = page.post(
        f"{base}/ask/meal",
        data={**choices, "confirmed": "1", "once": key.group(1), "_csrf_token": token},
        headers={"referer": f"{ORIGIN}{check_at}", "accept": "text/html"},
        follow_redirects=False,
    )
    assert expired.status_code == 403 and "页面已过期" in expired.text
    assert requests_of(w, "elder-a") == []
    again = re.search(
        r'<a class="button primary" href="([^"]+)">重新打开这个页面</a>', expired.text
    )
    assert again and again.group(1).replace("&amp;", "&") == check_at
    reopened = page.get(check_at)
    assert 'name="part" value="evening"' in reopened.text
    assert 'name="minutes" value="120"' in reopened.text
    key = ONCE_INPUT.search(reopened.text)
    assert key
    asked = form_post(
        page, f"{base}/ask/meal", check_at, **choices, confirmed="1", once=key.group(1)
    )
    assert asked.headers["location"] == f"{base}/requests?asked=1"
    [made] = requests_of(w, "elder-a")
    assert made["minutes"] == 120
