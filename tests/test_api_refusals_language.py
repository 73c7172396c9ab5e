"""The API's refusals in the caller's language (Accept-Language), each next to the same call
taken: the framework's own answers (no such route, a method the address does not take, a body
that is not JSON or is over the limit) are problems like the app's others; a code not on a
field's list is refused with the list; the ledger's refusals say their case with its values."""

from __future__ import annotations

import re
import secrets
from typing import Any

from tests.accounts_world import World
from tests.test_workflow import donate_and_grant, ok, refused, serve_an_hour
from tests.test_workflow import world as world

__all__ = ["world"]

ENGLISH = re.compile(r"[A-Za-z]{2,}")
PROBLEM_MEMBERS = {"type", "title", "status", "detail"}


def call(w: World, language: str, method: str, path: str, who: str = "b1-admin", **kw: Any) -> Any:
    headers = {**w.as_(who), "Accept-Language": language, "Idempotency-Key": secrets.token_hex(8)}
    return w.client.request(method, path, headers={**headers, **kw.pop("headers", {})}, **kw)


def no_english(text: str, *allowed: str) -> bool:
    """``text`` holds no English words beyond the codes ``allowed`` (and HTTP's methods)."""
    for word in (*allowed, "GET", "HEAD", "POST", "OPTIONS", "DELETE", "PATCH", "PUT"):
        text = text.replace(word, "")
    return not ENGLISH.search(text)


def test_a_method_the_address_does_not_take_is_a_405_in_the_callers_language(
    world: World,
) -> None:
    w = world
    ok(call(w, "zh-CN", "GET", "/v1/orgs"))
    zh = refused(call(w, "zh-CN", "PATCH", "/v1/orgs"), 405, "http-405")
    assert set(zh) == PROBLEM_MEMBERS, zh
    assert zh["title"] == "不支持此请求方法", zh
    assert zh["detail"].startswith("此地址不接受 PATCH 请求，可用："), zh
    assert no_english(zh["title"] + zh["detail"]), zh
    en = call(w, "en", "PATCH", "/v1/orgs")
    body = refused(en, 405, "http-405")
    assert body["title"] == "Method Not Allowed"
    assert body["detail"].startswith("PATCH is not allowed here; this address takes "), body
    allow = {m.strip() for m in en.headers["allow"].split(",")}
    assert {"GET", "POST"} <= allow and "PATCH" not in allow, en.headers
    assert all(m in body["detail"] for m in allow)


def test_an_unknown_route_is_a_404_in_the_callers_language(world: World) -> None:
    w = world
    ok(call(w, "zh-CN", "GET", "/v1/orgs"))
    for language, title in (("zh-CN", "未找到"), ("en", "Not Found")):
        body = refused(call(w, language, "GET", "/v1/no-such-route"), 404, "not-found")
        assert set(body) == PROBLEM_MEMBERS and body["title"] == title, body
        assert body["detail"] and (language == "en" or no_english(body["detail"])), body


def test_bodies_the_decoder_refuses_are_said_in_the_callers_language(world: World) -> None:
    w = world
    org = {"name": "西站", "kind": "service_station"}
    json_type = {"content-type": "application/json"}
    for language, malformed, large in (
        ("zh-CN", "参数 body 无效（请求内容不是有效的 JSON）", "请求内容过大"),
        ("en", "body: ", "Request Entity Too Large"),
    ):
        bad = call(w, language, "POST", "/v1/orgs", headers=json_type, content=b'{"name": ')
        body = refused(bad, 400, "invalid-parameter")
        assert body["detail"].startswith(malformed) and body["field"] == "body", body
        big = call(w, language, "POST", "/v1/orgs", headers=json_type, content=b" " * 70_000)
        body = refused(big, 413, "http-413")
        assert body["title"] == large and body["field"] == "body", body
    org["name"] = "西站二"
    ok(call(w, "zh-CN", "POST", "/v1/orgs", json=org), 201)


def test_a_schema_enum_refusal_lists_the_choices(world: World) -> None:
    """A grant's ``reason_code`` outside its list names the field and lists the codes, with
    their labels in Chinese, next to the same grant with a listed code taken."""
    w = world
    serve_an_hour(w)
    donate_and_grant(w)
    grant = {"elder_id": w.ids["elder-a"], "minutes": 1, "reason": "节日慰问"}
    codes = ("regular_support", "emergency_support", "festival_care", "bank_decision", "other")
    zh = refused(
        call(w, "zh-CN", "POST", "/v1/grants", json={**grant, "reason_code": "nope"}),
        400,
        "invalid-parameter",
    )
    assert zh["field"] == "reason_code"
    assert zh["detail"].startswith("原因须为以下之一：定期补贴（regular_support）、"), zh
    assert all(code in zh["detail"] for code in codes) and no_english(zh["detail"], *codes)
    en = refused(
        call(w, "en", "POST", "/v1/grants", json={**grant, "reason_code": "nope"}),
        400,
        "invalid-parameter",
    )
    assert en["detail"] == "reason_code must be one of: " + ", ".join(codes), en
    taken = call(w, "zh-CN", "POST", "/v1/grants", json={**grant, "reason_code": "festival_care"})
    ok(taken, 201)


def test_a_status_filter_not_on_the_list_lists_the_states(world: World) -> None:
    w = world
    for path, codes in (
        ("/v1/requests", ("open", "assigned", "completed", "cancelled")),
        ("/v1/records", ("logged", "confirmed", "verified", "rejected")),
    ):
        zh = refused(call(w, "zh-CN", "GET", f"{path}?status=nope"), 400, "invalid-input")
        assert zh["field"] == "status" and zh["detail"].startswith("状态须为以下之一："), zh
        assert all(f"（{code}）" in zh["detail"] for code in codes), zh
        assert no_english(zh["detail"], *codes), zh
        en = refused(call(w, "en", "GET", f"{path}?status=nope"), 400, "invalid-input")
        assert en["detail"] == "status must be one of: " + ", ".join(codes), en
        ok(call(w, "zh-CN", "GET", f"{path}?status={codes[0]}"))
    zh = refused(
        call(w, "zh-CN", "POST", "/v1/orgs", json={"name": "西站", "kind": "shop"}),
        400,
        "invalid-input",
    )
    assert zh["detail"] == (
        "类型须为以下之一：社区服务中心（community_centre）、服务站（service_station）、"
        "社会组织（social_organisation）"
    ), zh
    ok(call(w, "zh-CN", "POST", "/v1/orgs", json={"name": "西站", "kind": "service_station"}), 201)


def test_the_ledgers_refusals_say_their_case_in_the_callers_language(world: World) -> None:
    """A proof's parameters the ledger refuses say why, with their numbers, in Chinese and in
    English, next to the same call taken."""
    w = world
    size = ok(call(w, "en", "GET", "/healthz"))["tree_size"]
    for language, detail in (
        ("zh-CN", f"start {size} 超出了树的范围（大小 {size}）"),
        ("en", f"start {size} is beyond the tree (size {size})"),
    ):
        body = refused(
            call(w, language, "GET", f"/v1/log/leaves?start={size}&end={size + 1}"),
            400,
            "invalid-parameter",
        )
        assert (body["detail"], body["field"]) == (detail, "start"), body
    for language, detail in (
        ("zh-CN", "end 须大于 start"),
        ("en", "end must be greater than start"),
    ):
        body = refused(
            call(w, language, "GET", "/v1/log/leaves?start=1&end=1"), 400, "invalid-parameter"
        )
        assert body["detail"] == detail, body
    assert ok(call(w, "zh-CN", "GET", f"/v1/log/leaves?start=0&end={size}"))
