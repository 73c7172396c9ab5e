"""Every path that names an object inside another (a record of elder ``{m}``, a relation or
flag of member ``{m}``, a staff login of organisation ``{o}``, a receipt of member ``{m}``) acts
only on an inner object that belongs to the outer one. One the caller may otherwise reach, put
under the wrong outer id, answers exactly as an id that does not exist: no oracle, nothing
done under the wrong name. Each case is next to the same call with the right outer id
succeeding, on the pages (through the HTTP client, as a browser) and through the API."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.accounts_world import World
from tests.test_web_elder_pages import api_post, ask, requests_of
from tests.test_web_volunteer_pages import as_browser, form_post
from tests.test_workflow import (
    log_record,
    ok,
    serve_an_hour,
    world,  # noqa: F401 - the workflow's world, with a catalogue
)

UNKNOWN = "0" * 16


@dataclass(frozen=True)
class Nested:
    """``path`` with ``{outer}`` and ``{inner}``: ``wrong`` is an outer id the inner object does
    not belong to, ``right`` the one it does; ``call`` makes the request."""

    path: str
    inner: str
    wrong: str
    right: str
    call: Callable[[str], Any]
    done: int
    unknown: str = UNKNOWN

    def at(self, outer: str, inner: str) -> str:
        return self.path.format(outer=outer, inner=inner)


def assert_no_oracle(case: Nested) -> None:
    mismatched = case.call(case.at(case.wrong, case.inner))
    unknown = case.call(case.at(case.wrong, case.unknown))
    assert (mismatched.status_code, unknown.status_code) == (404, 404), case.path
    inner = re.compile(rf"\b{re.escape(case.inner)}\b")
    assert inner.sub(case.unknown, mismatched.text) == unknown.text, case.path
    allowed = case.call(case.at(case.right, case.inner))
    assert allowed.status_code == case.done, (case.path, allowed.text)


def family_of_two_elders(w: World) -> None:
    """family-a acts for elder-a and, from now on, for young-elder too."""
    granted = api_post(
        w, f"/v1/members/{w.ids['young-elder']}/proxies", "staff-a", {"username": "family-a"}
    )
    assert granted.status_code == 204, granted.text


def test_the_elder_pages_act_only_on_the_elder_of_the_path(world: World) -> None:  # noqa: F811
    w = world
    family_of_two_elders(w)
    record = ok(log_record(w, "vol-a", "young-elder", 3, 2), 201)["id"]
    page = as_browser(w, "family-a")
    assert ask(w, "family-a", "young-elder", confirmed="1").status_code == 303
    [asked] = requests_of(w, "young-elder")
    elder, young = w.ids["elder-a"], w.ids["young-elder"]

    def confirm(path: str) -> Any:
        return form_post(page, path, "/elder", once=secrets.token_hex(16))

    def cancel_page(path: str) -> Any:
        return page.get(path)

    def cancel(path: str) -> Any:
        return form_post(page, path, "/elder", reason="time", once=secrets.token_hex(16))

    for case in (
        Nested("/elder/{outer}/records/{inner}/confirm", record, elder, young, confirm, 303),
        Nested(
            "/elder/{outer}/requests/{inner}/cancel", asked["id"], elder, young, cancel_page, 200
        ),
        Nested("/elder/{outer}/requests/{inner}/cancel", asked["id"], elder, young, cancel, 303),
    ):
        assert_no_oracle(case)
    after = ok(w.client.get(f"/v1/records/{record}", headers=w.as_("staff-a")))
    assert (after["status"], after["confirmed_as"]) == ("confirmed", "family")
    confirmed = [
        e
        for e in w.client.app.state.audit.all_events()
        if e.action == "POST /elder/{member_id}/records/{record_id}/confirm" and e.status == 303
    ]
    assert [e.on_behalf for e in confirmed] == [young]
    assert requests_of(w, "young-elder")[0]["status"] == "cancelled"


def test_the_desk_acts_only_on_the_person_or_organisation_of_the_path(world: World) -> None:  # noqa: F811
    w = world
    staff = as_browser(w, "staff-a")
    person = "/desk/people/{outer}"
    elder, volunteer = w.ids["elder-a"], w.ids["vol-a"]

    def posted(page: Any, **form: str) -> Callable[[str], Any]:
        return lambda path: form_post(page, path, "/desk", **form)

    for case in (
        Nested(
            f"{person}/relatives/{{inner}}",
            w.ids["link-a"],
            volunteer,
            elder,
            posted(staff, decision="confirm"),
            303,
        ),
        Nested(
            f"{person}/flags/{{inner}}/clear", w.ids["flag-a"], volunteer, elder, posted(staff), 303
        ),
    ):
        assert_no_oracle(case)
    assert w.accounts.are_confirmed_relatives(w.ids["family-a"], elder)
    admin = as_browser(w, "b1-admin")
    org_a, org_b = w.ids["org_a"], w.ids["org_b"]
    for case in (
        Nested(
            "/desk/staff/{outer}/{inner}/totp-reset",
            w.ids["staff-a"],
            org_b,
            org_a,
            posted(admin),
            200,
        ),
        Nested(
            "/desk/staff/{outer}/{inner}/revoke", w.ids["staff-a"], org_b, org_a, posted(admin), 303
        ),
    ):
        assert_no_oracle(case)
    assert not w.accounts.principal_for_user(w.ids["staff-a"]).orgs()


def test_the_api_acts_only_on_the_member_or_organisation_of_the_path(world: World) -> None:  # noqa: F811
    w = world
    w.client.cookies.clear()

    def as_admin(path: str) -> Any:
        return w.client.post(path, headers=w.as_("b1-admin"))

    seq = str(serve_an_hour(w).verified["deposit_seq"])  # an entry of vol-a only

    def read(path: str) -> Any:
        return w.client.get(path, headers=w.as_("b1-admin"))

    elder_a, elder_b = w.ids["elder-a"], w.ids["elder-b"]
    for case in (
        Nested(
            "/v1/members/{outer}/flags/{inner}/clear",
            w.ids["flag-a"],
            elder_b,
            elder_a,
            as_admin,
            200,
        ),
        Nested(
            "/v1/orgs/{outer}/staff/{inner}/revoke",
            w.ids["staff-b"],
            w.ids["org_a"],
            w.ids["org_b"],
            as_admin,
            204,
        ),
        Nested(
            "/v1/members/{outer}/receipts/{inner}",
            seq,
            w.ids["vol-b"],
            w.ids["vol-a"],
            read,
            200,
            "999999999",
        ),
    ):
        assert_no_oracle(case)
