"""An id given in a request's body that names nothing the caller may see is a 404 naming that
field, in the caller's language, and the same answer whether the object does not exist or
exists out of the caller's sight (no oracle). Each next to the same call with an id the caller
may use getting past the look-up."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.accounts_world import World
from tests.test_workflow import give_to_the_elder, hours_ago, keyed, ok, serve_an_hour
from tests.test_workflow import world as world

__all__ = ["world"]

UNKNOWN = "no-such-id-0000"


@dataclass(frozen=True)
class BodyId:
    """A route whose body names an object by ``field``: ``hidden`` exists out of the caller's
    sight, ``allowed`` is one they may use, and the call naming it answers one of ``works``
    (past the look-up)."""

    who: str
    path: str
    body: dict[str, Any]
    field: str
    hidden: str
    allowed: str
    works: tuple[int, ...] = (200, 201, 202, 204)


def _request(w: World, elder: str, who: str) -> dict[str, Any]:
    body = {
        "elder_id": w.ids[elder],
        "service_code": "meal",
        "minutes": 30,
        "window_start": hours_ago(3),
        "window_end": hours_ago(1),
    }
    return dict(ok(w.client.post("/v1/requests", headers=w.as_(who), json=body), 201))


def _record(w: World, start_h: float, end_h: float) -> dict[str, Any]:
    return {
        "elder_id": w.ids["elder-a"],
        "service_code": "meal",
        "check_in": hours_ago(start_h),
        "check_out": hours_ago(end_h),
    }


def _cases(w: World) -> list[BodyId]:
    serve_an_hour(w)  # vol-a has 90 minutes, 3 to 2 hours ago
    give_to_the_elder(w, 30)  # elder-a is vol-a's confirmed relative
    open_a = _request(w, "elder-a", "elder-a")["id"]
    w.ids["mine-a"] = _request(w, "elder-a", "elder-a")["id"]
    ok(w.client.post(f"/v1/requests/{w.ids['mine-a']}/claim", headers=w.as_("vol-a")))
    w.ids["taken-b"] = _request(w, "elder-b", "staff-b")["id"]
    ok(w.client.post(f"/v1/requests/{w.ids['taken-b']}/claim", headers=w.as_("vol-b")))
    link = ok(
        w.client.post(
            "/v1/partner/link-requests", headers=w.as_("partner"), json={"scopes": ["read_points"]}
        ),
        201,
    )
    asked = {"service_code": "meal", "minutes": 30}
    asked |= {"window_start": hours_ago(3), "window_end": hours_ago(1)}
    draft = {**_record(w, 1.9, 1.7), "request_id": w.ids["mine-a"]}
    elder = {"personal": {"name": "新长辈", "phone": "13700004321"}, "is_elder": True}
    signup = {"bank_id": "b1", "username": "new-one", "password": "a long enough password"}
    signup |= {"personal": {"name": "新人", "phone": "13700001234"}}
    i = w.ids
    return [
        BodyId("family-a", "/v1/requests", asked, "elder_id", i["elder-b"], i["elder-a"]),
        BodyId("vol-a", "/v1/records/draft", draft, "elder_id", i["elder-c"], i["elder-a"]),
        BodyId("vol-a", "/v1/records/draft", draft, "request_id", i["taken-b"], i["mine-a"]),
        BodyId(
            "vol-a", "/v1/records", _record(w, 1.9, 1.7), "elder_id", i["elder-c"], i["elder-a"]
        ),
        BodyId(
            "vol-a", "/v1/records", _record(w, 1.5, 1.3), "request_id", i["taken-b"], i["mine-a"]
        ),
        BodyId(
            "vol-a",
            "/v1/gifts",
            {"to_member_id": i["elder-a"], "minutes": 1},
            "from_member_id",
            i["elder-b"],
            i["vol-a"],
        ),
        BodyId(
            "vol-a",
            "/v1/gifts",
            {"from_member_id": i["vol-a"], "minutes": 1},
            "to_member_id",
            i["elder-c"],
            i["elder-a"],
        ),
        BodyId(
            "vol-a", "/v1/donations", {"minutes": 1}, "from_member_id", i["elder-b"], i["vol-a"]
        ),
        BodyId(
            "b1-admin",
            "/v1/grants",
            {"minutes": 1, "reason": "a priority elder"},
            "elder_id",
            i["elder-c"],
            i["elder-a"],
        ),
        BodyId(
            "staff-a", f"/v1/requests/{open_a}/assign", {}, "volunteer_id", i["vol-c"], i["vol-a"]
        ),
        BodyId(
            "family-a",
            f"/v1/links/{link['id']}/approve",
            {},
            "member_id",
            i["elder-b"],
            i["elder-a"],
        ),
        BodyId(  # no peer bank here: past the member, the peer is refused
            "vol-a",
            "/v1/peer-transfers",
            {"peer": "district-2", "to_member_id": "m-there", "minutes": 1},
            "from_member_id",
            i["elder-b"],
            i["vol-a"],
            works=(422,),
        ),
        BodyId(
            "vol-a",
            f"/v1/members/{i['vol-a']}/relatives",
            {"relation": "sibling"},
            "relative_id",
            i["elder-c"],
            i["vol-b"],
            works=(201,),
        ),
        BodyId(
            "staff-a",
            f"/v1/members/{i['elder-a']}/proxies",
            {},
            "username",
            "b2-admin",
            "vol-a",
        ),
        BodyId(
            "staff-a",
            f"/v1/members/{i['elder-a']}/proxies/revoke",
            {},
            "username",
            "vol-b",
            "family-a",
        ),
        BodyId("b1-admin", "/v1/members", elder, "org_id", i["org_c"], i["org_a"]),
        BodyId("vol-a", "/v1/register", signup, "org_id", i["org_c"], i["org_a"]),
    ]


def _answers(w: World, case: BodyId) -> list[str]:
    """What went wrong with ``case``: nothing when its refusals and its success are right."""
    misses = []
    answers = []
    for named, language in ((UNKNOWN, "en"), (case.hidden, "en"), (UNKNOWN, "zh-CN")):
        response = w.client.post(
            case.path,
            headers={**keyed(w.as_(case.who)), "Accept-Language": language},
            json={**case.body, case.field: named},
        )
        body = response.json()
        if response.status_code != 404 or body.get("field") != case.field:
            misses.append(f"{named} in {language}: {response.status_code} {body}")
        answers.append({**body, "detail": str(body.get("detail")).replace(named, "<id>")})
    if answers[0] != answers[1]:  # something would tell the hidden one exists
        misses.append(f"unknown and hidden differ: {answers[0]} / {answers[1]}")
    if answers[2].get("title") != "未找到" or "no " in answers[2]["detail"]:
        misses.append(f"not in Chinese: {answers[2]}")
    allowed = w.client.post(
        case.path,
        headers=keyed(w.as_(case.who)),
        json={**case.body, case.field: case.allowed},
    )
    if allowed.status_code not in case.works:
        misses.append(f"{case.allowed} refused: {allowed.status_code} {allowed.text}")
    return [f"POST {case.path} {case.field}: {miss}" for miss in misses]


def test_an_unknown_or_hidden_id_in_a_body_is_a_404_naming_its_field(world: World) -> None:
    misses = [miss for case in _cases(world) for miss in _answers(world, case)]
    assert not misses, "\n".join(misses)
