"""Refusals of bad input in Chinese, without a browser, on both databases: each bad value posted
to the desk's and the console's forms (and given to the signals page) is refused in Chinese
that names the field and the rule, with no English left in it, and so is a conflict (a flag set
twice, an organisation's name taken); an organisation's empty name is the organisation's, not a
person's; the API answers the same refusals in the caller's language
(Accept-Language), and in English by default."""

from __future__ import annotations

import html
import re
import secrets
from typing import Any

import pytest

from tests.accounts_world import World
from tests.test_web_desk import as_browser, form_post, yesterday
from tests.test_workflow import (  # noqa: F401 - the workflow's world, with a catalogue
    donate_and_grant,
    hours_ago,
    serve_an_hour,
    world,
)
from web.i18n import LANGUAGE_COOKIE

ERROR = re.compile(r'<p class="error" id="error" role="alert">(.*?)</p>', re.S)
ENGLISH = re.compile(r"[A-Za-z]{2,}")


def shown_error(answer: Any) -> str:
    """The refusal a form shows, as the reader sees it."""
    assert 400 <= answer.status_code < 500, answer.text
    found = ERROR.search(answer.text)
    assert found, answer.text
    return html.unescape(found.group(1)).strip()


def in_chinese(w: World, who: str) -> Any:
    client = as_browser(w, who)
    client.cookies.set(LANGUAGE_COOKIE, "zh-CN")
    return client


DAY = yesterday().date().isoformat()
# (the form's page, where it posts, the good values, the bad ones, the words the refusal says)
DESK_FORMS = [
    ("new", {"name": ""}, "姓名不能为空"),
    ("new", {"phone": "12ab"}, "手机号须为 11 位数字，以 1 开头"),
    ("new", {"id_number": "!!"}, "身份证号须为 18 位"),
    ("new", {"birth_date": "2999-01-01"}, "出生日期须是 1900 年以后、今天以前的日期"),
    ("request", {"minutes": "200"}, "分钟数须在 1 到 60 之间"),
    ("request", {"start": "10:00", "end": "09:00"}, "结束时间必须晚于开始时间"),
    ("reveal", {"reveal_reason": "看"}, "至少 4 个字"),
]
CONSOLE_FORMS = [
    ("/console/orgs", {"name": ""}, "机构名称不能为空"),
    ("/console/orgs", {"phone": "call us"}, "电话号码须为 3 到 32 个数字"),
    ("/console/partners", {"name": ""}, "合作平台名称不能为空"),
    ("/console/catalogue", {"code": "bad code!"}, "代码须为 1 到 32 个英文字母"),
    ("/console/catalogue", {"weight_permille": "50"}, "权重须在 100‰ 到 5000‰ 之间"),
    ("/console/catalogue", {"weight_permille": "heavy"}, "权重（‰） 须为整数"),
    ("/console/catalogue", {"name_zh": ""}, "中文名称不能为空"),
    ("/console/policy", {"redemption_age": "-1"}, "可兑换时间的起始年龄不能是负数"),
    ("/console/policy", {"redemption_age": "151"}, "可兑换时间的起始年龄 必须在 0 到 150 之间"),
    ("/console/policy", {"record_late_days": "0"}, "服务结束后可补录记录的天数 必须在 1 到 366"),
    ("/console/policy", {"daily_cap_minutes": "many"}, "志愿者每天最多可记录的分钟数 须为整数"),
    ("/console/policy", {"timezone": "Mars/Olympus"}, "未知的时区"),
]


def test_the_desks_forms_refuse_in_chinese(world: World) -> None:  # noqa: F811
    w = world
    elder = f"/desk/people/{w.ids['elder-a']}"
    good = {
        "new": (
            "/desk/people/new",
            "/desk/people/new",
            {"org_id": w.ids["org_a"], "kind": "elder", "name": "钱桂兰"},
        ),
        "request": (
            f"{elder}/request",
            elder,
            {"service_code": "meal", "day": DAY, "start": "09:00", "end": "10:00", "minutes": "60"},
        ),
        "reveal": (f"{elder}/reveal", elder, {"reveal_reason": "安排上门送餐"}),
    }
    for form, bad, words in DESK_FORMS:
        path, page, values = good[form]
        said = shown_error(form_post(in_chinese(w, "staff-a"), path, page, **{**values, **bad}))
        assert words in said and not ENGLISH.search(said), (form, bad, said)
    for path, page, values in good.values():  # the same forms, given good values, are taken
        taken = form_post(in_chinese(w, "staff-a"), path, page, **values)
        assert taken.status_code in (200, 303), taken.text
    flag = (f"{elder}/flags", elder)
    assert form_post(in_chinese(w, "staff-a"), *flag, flag="living_alone").status_code == 303
    again = shown_error(form_post(in_chinese(w, "staff-a"), *flag, flag="living_alone"))
    assert again == "已标记为“独居”"


def test_the_consoles_forms_refuse_in_chinese(world: World) -> None:  # noqa: F811
    w = world
    w.client.cookies.clear()
    policy = w.client.get("/v1/policy", headers=w.as_("b1-admin")).json()
    good = {
        "/console/orgs": {"name": "鼓楼服务站", "kind": "service_station", "phone": "025-1234"},
        "/console/partners": {"name": "养老服务平台", "scope_read_points": "1"},
        "/console/catalogue": {
            "code": "visit",
            "name_zh": "探访",
            "name_en": "Visits",
            "category": "company",
            "weight_permille": "1000",
            "active": "1",
        },
        "/console/policy": {
            **{
                k: str(policy[k])
                for k in ("redemption_age", "stored_cap_minutes", "record_late_days")
            },
            "daily_cap_minutes": str(policy["daily_cap_minutes"] + 30),
            "timezone": policy["timezone"],
            **({"gifts_allowed": "1"} if policy["gifts_allowed"] else {}),
        },
    }
    for path, bad, words in CONSOLE_FORMS:
        said = shown_error(
            form_post(in_chinese(w, "b1-admin"), path, path, **{**good[path], **bad})
        )
        assert words in said and not ENGLISH.search(said), (path, bad, said)
    for path, values in good.items():  # the same forms, given good values, are taken
        taken = form_post(in_chinese(w, "b1-admin"), path, path, **values)
        assert taken.status_code in (201, 303), taken.text
    orgs = ("/console/orgs", "/console/orgs")
    again = shown_error(form_post(in_chinese(w, "b1-admin"), *orgs, **good["/console/orgs"]))
    assert again == "已有名为“鼓楼服务站”的机构"


@pytest.mark.parametrize(
    ("days", "words"),
    [
        ("-5", "回看天数 必须在 1 到 366 之间"),
        ("0", "回看天数 必须在 1 到 366 之间"),
        ("abc", "回看天数 须为整数"),
    ],
)
def test_the_signals_page_says_the_rule_a_number_of_days_breaks(
    world: World,  # noqa: F811
    days: str,
    words: str,
) -> None:
    w = world
    admin = in_chinese(w, "b1-admin")
    assert admin.get("/signals?days=30").status_code == 200
    said = shown_error(admin.get(f"/signals?days={days}"))
    assert said == words


def test_the_api_refuses_in_the_callers_language(world: World) -> None:  # noqa: F811
    w = world
    w.client.cookies.clear()
    unnamed = {"name": " ", "kind": "service_station"}
    for language, detail in (
        ("zh-CN", "机构名称不能为空"),
        ("en", "organisation name must not be empty"),
        (None, "organisation name must not be empty"),
    ):
        headers = {**w.as_("b1-admin"), **({"Accept-Language": language} if language else {})}
        answer = w.client.post("/v1/orgs", headers=headers, json=unnamed)
        assert answer.status_code == 400, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert (answer.json()["detail"], answer.json()["field"]) == (detail, "name")
    named = w.client.post("/v1/orgs", headers=w.as_("b1-admin"), json={**unnamed, "name": "新站"})
    assert named.status_code == 201, named.text
    start = yesterday().replace(hour=9)
    asked = {
        "elder_id": w.ids["elder-a"],
        "service_code": "meal",
        "window_start": start.isoformat(),
        "window_end": start.replace(hour=10).isoformat(),
        "minutes": 200,
    }
    headers = {**w.as_("staff-a"), "Accept-Language": "zh-CN,zh;q=0.9"}
    refused = w.client.post("/v1/requests", headers=headers, json=asked)
    assert refused.status_code == 400, refused.text
    assert refused.json()["detail"] == "分钟数须在 1 到 60 之间（不能超过预约的时间段）"
    english = w.client.post("/v1/requests", headers=w.as_("staff-a"), json=asked)
    assert english.json()["detail"] == "minutes must be 1-60 (the time window)"
    taken = w.client.post("/v1/requests", headers=headers, json={**asked, "minutes": 60})
    assert taken.status_code == 201, taken.text


def api_detail(w: World, language: str, method: str, path: str, who: str, **body: Any) -> Any:
    """The answer to ``who``'s call in ``language``, as a client sees it."""
    headers = {**w.as_(who), "Accept-Language": language, "Idempotency-Key": secrets.token_hex(8)}
    return w.client.request(method, path, headers=headers, json=body or None)


def test_who_may_act_is_said_in_the_callers_language(world: World) -> None:  # noqa: F811
    """A refusal of who may act, and of what does not exist, reads whole in Chinese (the ids it
    names as they are) and in English, next to the same call by someone allowed."""
    w = world
    serve_an_hour(w)  # vol-a has minutes to donate
    w.client.cookies.clear()
    donation = {"from_member_id": w.ids["vol-a"], "minutes": 20}
    for language, detail in (
        ("zh-CN", "只有成员本人或其家属代办人可以捐出时间"),
        ("en", "only the member or their family proxy donates their minutes"),
    ):
        refused = api_detail(w, language, "POST", "/v1/donations", "staff-a", **donation)
        assert (refused.status_code, refused.json()["detail"]) == (403, detail), refused.text
    given = api_detail(w, "zh-CN", "POST", "/v1/donations", "vol-a", **donation)
    assert given.status_code == 201, given.text

    for language, detail in (("zh-CN", "没有编号为 m404 的成员"), ("en", "no member m404")):
        missing = api_detail(w, language, "GET", "/v1/members/m404", "staff-a")
        assert (missing.status_code, missing.json()["detail"]) == (404, detail), missing.text
    found = api_detail(w, "zh-CN", "GET", f"/v1/members/{w.ids['elder-a']}", "staff-a")
    assert found.status_code == 200, found.text

    staff = in_chinese(w, "staff-a")
    link, elder, volunteer = w.ids["link-a"], w.ids["elder-a"], w.ids["vol-a"]
    relatives = "/desk/people/{}/relatives/{}"
    refused_page = form_post(staff, relatives.format(volunteer, link), "/desk", decision="confirm")
    said = shown_error(refused_page)
    assert said == f"没有编号为 {link} 的亲属关系"
    assert not ENGLISH.search(said.replace(link, "")), said
    decided = form_post(staff, relatives.format(elder, link), "/desk", decision="confirm")
    assert decided.status_code == 303, decided.text


@pytest.mark.parametrize("days", ["-5", "0", "367"])
def test_the_api_says_the_rule_a_number_of_days_breaks(world: World, days: str) -> None:  # noqa: F811
    """The API refuses a number of days out of range with the signals page's rule, naming
    ``days``, not with the framework's bounds."""
    w = world
    w.client.cookies.clear()
    for language, detail in (
        ("zh-CN", "回看天数 必须在 1 到 366 之间"),
        ("en", "days must be 1-366"),
    ):
        path = f"/v1/stats/signals?days={days}"
        refused = api_detail(w, language, "GET", path, "b1-admin")
        assert refused.status_code == 400, refused.text
        assert (refused.json()["detail"], refused.json()["field"]) == (detail, "days")
    looked = api_detail(w, "zh-CN", "GET", "/v1/stats/signals?days=366", "b1-admin")
    assert looked.status_code == 200, looked.text


def test_a_choice_not_on_the_list_is_refused_with_the_list_as_the_page_shows_it(
    world: World,  # noqa: F811
) -> None:
    """An organisation's kind and a priority flag outside their lists are refused with the
    choices as the forms label them in Chinese, each with the code the API takes, and with the
    codes in English, and so is a reversal's reason on the console's form (labels only), next
    to the same call with a listed choice taken."""
    w = world
    serve_an_hour(w)
    granted = donate_and_grant(w)
    w.client.cookies.clear()
    flags = f"/v1/members/{w.ids['elder-a']}/flags"
    for who, path, body, good, chinese, english in (
        (
            "b1-admin",
            "/v1/orgs",
            {"name": "西站", "kind": "shop"},
            {"kind": "service_station"},
            "类型须为以下之一：社区服务中心（community_centre）、服务站（service_station）、"
            "社会组织（social_organisation）",
            "kind must be one of: community_centre, service_station, social_organisation",
        ),
        (
            "staff-a",
            flags,
            {"flag": "lonely"},
            {"flag": "living_alone"},
            "重点关爱标记须为以下之一：独居（living_alone）、",
            "flag must be one of: living_alone, ",
        ),
    ):
        said = api_detail(w, "zh-CN", "POST", path, who, **body)
        assert said.status_code == 400, said.text
        detail = said.json()["detail"]
        labels = re.sub(r"（[a-z_]+）", "", detail)
        assert detail.startswith(chinese) and not ENGLISH.search(labels), detail
        assert api_detail(w, "en", "POST", path, who, **body).json()["detail"].startswith(english)
        taken = api_detail(w, "zh-CN", "POST", path, who, **{**body, **good})
        assert taken.status_code == 201, taken.text
    admin = in_chinese(w, "b1-admin")
    reversal = {"seq": str(granted["seq"]), "reason": "重复发放"}
    page = "/console/reversals"
    said = shown_error(form_post(admin, page, page, **reversal, reason_code="typo"))
    assert said.startswith("原因须为以下之一：重复记录、") and not ENGLISH.search(said), said
    taken = form_post(admin, page, page, **reversal, reason_code="duplicate")
    assert taken.status_code == 303, taken.text


def test_a_workflow_refusal_says_its_case_in_the_callers_language(world: World) -> None:  # noqa: F811
    """A check-out refused for lateness says why, with the policy's number of days, in Chinese
    and in English (not only "服务记录提交过晚"), next to a timely record taken."""
    w = world
    w.client.cookies.clear()
    days = w.client.get("/v1/policy", headers=w.as_("b1-admin")).json()["record_late_days"]

    def record(language: str, start_h: float, end_h: float) -> Any:
        body = {
            "elder_id": w.ids["elder-a"],
            "service_code": "meal",
            "check_in": hours_ago(start_h),
            "check_out": hours_ago(end_h),
        }
        headers = {**w.as_("vol-a"), "Accept-Language": language}
        return w.client.post("/v1/records", headers=headers, json=body)

    late = 24 * (days + 2)
    chinese = f"服务结束已超过 {days} 天，请联系服务中心补录"
    english = f"the service ended more than {days} days ago; ask the organisation to record it"
    for language, detail in (("zh-CN", chinese), ("en", english)):
        refused = record(language, late + 1, late)
        assert refused.status_code == 422, refused.text
        problem = refused.json()
        assert (problem["detail"], problem["field"]) == (detail, "check_out")
        assert (problem["detail_zh"], problem["detail_en"]) == (chinese, english)
    assert record("zh-CN", 3, 2).status_code == 201


def test_a_body_value_not_on_the_list_is_refused_without_the_decoders_english(
    world: World,  # noqa: F811
) -> None:
    """A reversal's reason code the API's schema does not list is refused in Chinese naming the
    field and the codes it takes with their labels, without the decoder's "at `$.reason_code`"."""
    w = world
    serve_an_hour(w)
    granted = donate_and_grant(w)
    w.client.cookies.clear()
    body = {"seq": granted["seq"], "reason": "重复发放", "reason_code": "typo"}
    refused = api_detail(w, "zh-CN", "POST", "/v1/reversals", "b1-admin", **body)
    assert refused.status_code == 400, refused.text
    detail = refused.json()["detail"]
    assert detail == (
        "原因须为以下之一：重复记录（duplicate）、时长有误（wrong_minutes）、记错成员（wrong_member）、"
        "服务未发生（not_served）、操作失误（mistake）、其他（other）"
    ), detail
    assert refused.json()["field"] == "reason_code"
    taken = api_detail(
        w, "zh-CN", "POST", "/v1/reversals", "b1-admin", **{**body, "reason_code": "duplicate"}
    )
    assert taken.status_code == 201, taken.text
