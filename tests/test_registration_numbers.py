"""The numbers a registration holds: a member's phone is a mainland mobile (11 digits, 1 then 3
to 9), taken as people type it and stored as its 11 digits; an ID number is a resident ID
(GB 11643: 18 characters, a date of birth inside, a check character) whose date of birth is
the one typed beside it. On every path that registers a member (the API's staff, family and
self sign-up routes, the desk's form, the sign-up page), each refusal is shown next to the same
call with good numbers going through, and a form with several problems is answered once,
naming all of them, in the caller's language."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accounts.errors import InvalidInput
from accounts.protection import (
    id_birth_date,
    id_check_character,
    normalise_id_number,
    normalise_phone,
)
from ledger.config import Settings
from ledger.log import Log
from tests.accounts_world import World, build_world
from tests.test_web_desk import as_browser, csrf_token, form_post
from tests.test_web_refusals_zh import shown_error
from web.i18n import LANGUAGE_COOKIE


@pytest.fixture
def world(settings: Settings, log: Log) -> Iterator[World]:
    yield from build_world(settings, log)


# ---------------------------------------------------------------- the rules, as properties

DIGITS = "0123456789"
mobiles = st.builds(
    lambda second, rest: "1" + second + rest,
    st.sampled_from("3456789"),
    st.text(DIGITS, min_size=9, max_size=9),
)


@st.composite
def typed(draw: st.DrawFn, number: str) -> str:
    """``number`` as someone might type it: a country prefix, spaces or dashes between digits."""
    prefix = draw(st.sampled_from(("", "+86", "+86 ", "86", "0086 ", "(+86) ", "＋86")))
    out = []
    for digit in number:
        out.append(draw(st.sampled_from(("", "", " ", "-"))) if out else "")
        out.append(digit)
    return prefix + "".join(out)


@given(mobiles.flatmap(lambda m: st.tuples(st.just(m), typed(m))))
def test_a_mobile_as_typed_is_stored_as_its_11_digits(case: tuple[str, str]) -> None:
    mobile, as_typed = case
    assert normalise_phone(as_typed) == mobile
    assert normalise_phone(mobile) == mobile  # stored values normalise to themselves


def _is_mobile(digits: str) -> bool:
    return len(digits) == 11 and digits[0] == "1" and digits[1] in "3456789"


@given(
    st.one_of(
        st.text(DIGITS, min_size=1, max_size=16),
        st.text(DIGITS, min_size=9, max_size=13).map(lambda d: "1" + d),
        st.tuples(st.sampled_from(("86", "0086")), mobiles).map("".join),
    )
)
def test_only_11_digits_a_1_then_3_to_9_are_a_mobile(digits: str) -> None:
    """A digit string is a mobile, or 86 or 0086 and a mobile; nothing else is taken."""
    mobile = _is_mobile(digits)
    prefixed = any(digits[: len(p)] == p and _is_mobile(digits[len(p) :]) for p in ("86", "0086"))
    if mobile or prefixed:
        assert normalise_phone(digits) == digits[-11:]
    else:
        with pytest.raises(InvalidInput) as refusal:
            normalise_phone(digits)
        assert refusal.value.field == "phone"


def test_a_landline_or_a_short_number_is_not_a_mobile() -> None:
    for number in ("1380000123", "025-8452 0000", "02584520000", "12800001234", "+1 415 555 0100"):
        with pytest.raises(InvalidInput, match="11 digits"):
            normalise_phone(number)


@st.composite
def id_numbers(draw: st.DrawFn) -> str:
    born = draw(st.dates(min_value=date(1900, 1, 1), max_value=date(2025, 12, 31)))
    first17 = draw(st.text(DIGITS, min_size=6, max_size=6)) + f"{born:%Y%m%d}"
    first17 += draw(st.text(DIGITS, min_size=3, max_size=3))
    return first17 + id_check_character(first17)


def test_the_check_character_is_gb_11643s() -> None:
    """The standard's own example, and two more worked by hand."""
    assert id_check_character("11010519491231002") == "X"
    assert id_check_character("44052418800101001") == "4"
    assert id_check_character("32010619440315002") == "7"


@given(id_numbers())
def test_an_id_number_with_its_check_character_is_taken(number: str) -> None:
    assert normalise_id_number(number) == number
    as_typed = number[:6] + " " + number[6:14] + "-" + number[14:].lower()
    assert normalise_id_number(as_typed) == number
    assert id_birth_date(number) == date(int(number[6:10]), int(number[10:12]), int(number[12:14]))


@given(id_numbers(), st.integers(0, 17), st.sampled_from("0123456789X"))
def test_one_mistyped_character_is_refused(number: str, at: int, typed: str) -> None:
    wrong = number[:at] + typed + number[at + 1 :]
    if wrong == number:
        return
    with pytest.raises(InvalidInput) as refusal:
        normalise_id_number(wrong)
    assert refusal.value.field == "id_number"


@given(id_numbers(), st.integers(0, 15))
def test_two_neighbouring_digits_swapped_are_refused(number: str, at: int) -> None:
    wrong = number[:at] + number[at + 1] + number[at] + number[at + 2 :]
    if wrong == number:
        return
    with pytest.raises(InvalidInput):
        normalise_id_number(wrong)


# ---------------------------------------------------------------- the API

ZH = {"Accept-Language": "zh-CN"}
GOOD_ID = "11010519491231002X"  # GB 11643's example: born 1949-12-31


def _staff_registers(w: World, personal: dict[str, Any], language: str = "zh-CN") -> Any:
    body = {"org_id": w.ids["org_a"], "is_elder": True, "personal": personal}
    headers = {**w.as_("staff-a"), "Accept-Language": language}
    return w.client.post("/v1/members", headers=headers, json=body)


def _members(w: World) -> int:
    return len(w.client.get("/v1/members?limit=200", headers=w.as_("b1-admin")).json())


def test_staff_registering_an_elder_with_a_ten_digit_phone_are_refused(world: World) -> None:
    w = world
    before = _members(w)
    refused = _staff_registers(w, {"name": "钱桂兰", "phone": "1390000123"})
    assert refused.status_code == 400, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    body = refused.json()
    assert body["field"] == "phone" and "fields" not in body
    assert body["detail"].startswith("手机号须为 11 位数字，以 1 开头")
    english = _staff_registers(w, {"name": "钱桂兰", "phone": "1390000123"}, "en").json()
    assert english["detail"].startswith("phone must be a mobile number: 11 digits")
    assert _members(w) == before  # nothing half-written
    # The same elder, her mobile typed as people do: registered, stored as the 11 digits.
    taken = _staff_registers(w, {"name": "钱桂兰", "phone": "+86 139-0000-1234"})
    assert taken.status_code == 201, taken.text
    assert taken.json()["member"]["personal"]["phone"] == "139****1234"
    found = w.client.get("/v1/members?search=13900001234", headers=w.as_("staff-a")).json()
    assert [m["id"] for m in found] == [taken.json()["member"]["id"]]
    assert _members(w) == before + 1


def test_an_id_number_whose_birth_date_is_not_the_one_typed_is_refused(world: World) -> None:
    w = world
    elder = {"name": "钱桂兰", "id_number": GOOD_ID, "birth_date": "1949-12-30"}
    refused = _staff_registers(w, elder)
    assert refused.status_code == 400, refused.text
    body = refused.json()
    assert body["field"] == "id_number" and body["fields"] == ["id_number", "birth_date"]
    assert body["detail"] == (
        "身份证号中的出生日期是 1949-12-31，但填写的出生日期是 1949-12-30：请改正填错的一项"
    )
    english = _staff_registers(w, elder, "en").json()["detail"]
    assert "1949-12-31" in english and "birth date is 1949-12-30" in english
    taken = _staff_registers(w, {**elder, "birth_date": "1949-12-31"})
    assert taken.status_code == 201, taken.text
    assert taken.json()["member"]["personal"]["birth_year"] == 1949


def test_an_id_number_with_a_wrong_check_character_is_refused(world: World) -> None:
    refused = _staff_registers(world, {"name": "钱桂兰", "id_number": "110105194912310021"})
    assert refused.status_code == 400 and refused.json()["field"] == "id_number"
    assert refused.json()["detail"] == "身份证号校验位不符，请检查是否有输错的数字"
    short = _staff_registers(world, {"name": "钱桂兰", "id_number": "AB123456"})
    assert short.json()["detail"] == "身份证号须为 18 位：前 17 位是数字，最后一位是数字或 X"
    taken = _staff_registers(world, {"name": "钱桂兰", "id_number": GOOD_ID})
    assert taken.status_code == 201, taken.text


def test_every_problem_of_a_registration_is_named_in_one_answer(world: World) -> None:
    w = world
    before = _members(w)
    bad = {
        "name": " ",
        "phone": "1390000123",
        "id_number": "110105194912310021",
        "birth_date": "1949-12-31",
    }
    refused = _staff_registers(w, bad)
    assert refused.status_code == 400, refused.text
    body = refused.json()
    assert body["field"] == "name" and body["fields"] == ["name", "phone", "id_number"]
    parts = body["detail"].split("；")
    assert len(parts) == 3, body["detail"]
    assert parts[0] == "姓名不能为空"
    assert parts[1].startswith("手机号须为 11 位数字") and parts[2].startswith("身份证号校验位")
    english = _staff_registers(w, bad, "en").json()["detail"].split("; ")
    assert [p.split(" ")[0] for p in english] == ["name", "phone", "id_number:"]
    assert _members(w) == before
    fixed = {**bad, "name": "钱桂兰", "phone": "13900001234", "id_number": GOOD_ID}
    assert _staff_registers(w, fixed).status_code == 201


def test_a_family_member_and_a_volunteer_signing_up_meet_the_same_rules(world: World) -> None:
    w = world
    body = {"org_id": w.ids["org_a"], "is_elder": True, "personal": {"name": "母亲"}}
    for phone, status in (("139 0000 123", 400), ("139 0000 1235", 201)):
        body["personal"]["phone"] = phone
        family = w.client.post("/v1/members", headers={**w.as_("vol-a"), **ZH}, json=body)
        assert family.status_code == status, family.text
    sign_up = {
        "bank_id": "b1",
        "org_id": w.ids["org_a"],
        "username": "new-vol",
        "password": "a fine long password",
        "personal": {"name": "新志愿者", "phone": "8613900001"},
    }
    refused = w.client.post("/v1/register", json=sign_up, headers=ZH)
    assert refused.status_code == 400 and refused.json()["field"] == "phone"
    assert refused.json()["detail"].startswith("手机号须为 11 位数字，以 1 开头")
    assert w.accounts.user_by_username("new-vol") is None
    sign_up["personal"]["phone"] = "86 139 0000 1236"
    assert w.client.post("/v1/register", json=sign_up, headers=ZH).status_code == 202
    # A username already taken meets the same refusal, so it tells nothing.
    taken = {**sign_up, "username": "vol-a", "personal": {"name": "新", "phone": "123"}}
    again = w.client.post("/v1/register", json=taken, headers=ZH)
    assert (again.status_code, again.json()["field"]) == (400, "phone")


# ---------------------------------------------------------------- the pages


def _desk(w: World) -> Any:
    client = as_browser(w, "staff-a")
    client.cookies.set(LANGUAGE_COOKIE, "zh-CN")
    return client


def _invalid(page: str) -> list[str]:
    return sorted(re.findall(r'<input id="(\w+)"[^>]*aria-invalid="true"', page))


def test_the_desk_form_refuses_a_ten_digit_mobile_and_a_contradicting_id(world: World) -> None:
    w = world
    form = {"org_id": w.ids["org_a"], "kind": "elder", "name": "钱桂兰"}
    path = "/desk/people/new"
    short = form_post(_desk(w), path, path, **form, phone="139 0000 123")
    assert "手机号须为 11 位数字，以 1 开头" in shown_error(short)
    assert _invalid(short.text) == ["phone"]
    both = form_post(
        _desk(w), path, path, **form, id_number=GOOD_ID.lower(), birth_date="1950-12-31"
    )
    said = shown_error(both)
    assert "身份证号中的出生日期是 1949-12-31" in said and "出生日期是 1950-12-31" in said
    assert _invalid(both.text) == ["birth_date", "id_number"]
    done = form_post(
        _desk(w),
        path,
        path,
        **form,
        phone="139-0000-1234",
        id_number=GOOD_ID.lower(),
        birth_date="1949-12-31",
    )
    assert done.status_code == 303 and done.headers["location"].startswith("/desk/people/")


def test_the_sign_up_page_refuses_a_ten_digit_mobile(world: World) -> None:
    w = world
    w.client.cookies.clear()
    w.client.cookies.set(LANGUAGE_COOKIE, "zh-CN")
    org = f"b1/{w.ids['org_a']}"

    def sign_up(phone: str) -> Any:
        token = csrf_token(w.client, "/register")
        data = {
            "organisation": org,
            "name": "新志愿者",
            "phone": phone,
            "username": "newcomer",
            "password": "a long enough password",
            "_csrf_token": token,
        }
        return w.client.post("/register", data=data, follow_redirects=False)

    refused = sign_up("1390000999")
    assert "手机号须为 11 位数字，以 1 开头" in shown_error(refused)
    assert _invalid(refused.text) == ["phone"]
    assert w.accounts.user_by_username("newcomer") is None
    done = sign_up("139 0000 9999")
    assert done.status_code == 200 and "已收到报名" in done.text


def test_a_birth_date_in_the_future_and_the_id_are_both_named(world: World) -> None:
    """A birth date that is wrong itself is named as such, not compared with the ID's."""
    future = (date.today() + timedelta(days=2)).isoformat()
    body = _staff_registers(world, {"name": "钱", "id_number": GOOD_ID, "birth_date": future})
    assert body.status_code == 400 and body.json()["field"] == "birth_date"
    assert "fields" not in body.json()
