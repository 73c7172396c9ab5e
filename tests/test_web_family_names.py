"""A family acting for elders whose masked names read the same (王*英 and 王*英) tells them
apart on every page that names them (the switcher, the banner of her pages, statements and
transfers) by what a proxy already reads of each, masked: the year she was born and the
organisation serving her, then the masked phone; never her full name, phone or birth date."""

from __future__ import annotations

import re
from datetime import date

from accounts.service import PersonalInput
from tests.accounts_world import World
from tests.test_web_volunteer_pages import as_browser
from tests.test_workflow import world  # noqa: F401 - the workflow's world, with a catalogue

SWITCHER = re.compile(r'<a class="big" href="/elder/(\w+)">([^<]+)</a>')


def add_elder(w: World, name: str, phone: str, born: date) -> str:
    staff = w.accounts.principal_for_user(w.ids["staff-a"])
    made = w.accounts.register_member(
        staff,
        w.ids["org_a"],
        PersonalInput(name, phone, birth_date=born),
        volunteer=False,
        elder=True,
    )
    w.accounts.grant_proxy(staff, made.member.id, "family-a")
    return made.member.id


def test_a_family_tells_apart_two_elders_with_the_same_masked_name(world: World) -> None:  # noqa: F811
    w = world
    page = as_browser(w, "family-a")
    alone = page.get("/documents").text
    assert "王*英" in alone and "年生" not in alone  # a name nobody shares is shown alone
    younger = add_elder(w, "王丽英", "13900004444", date(1950, 6, 1))
    twin = add_elder(w, "王美英", "13900003333", date(1944, 8, 8))
    page = as_browser(w, "family-a")  # the new proxies hold from the next login
    switcher = dict(SWITCHER.findall(page.get("/elder").text))
    assert switcher == {
        w.ids["elder-a"]: "王*英（1944年生 · Org A · 138****2222）",
        younger: "王*英（1950年生 · Org A）",
        twin: "王*英（1944年生 · Org A · 139****3333）",
    }
    banner = page.get(f"/elder/{younger}").text
    assert "王*英（1950年生 · Org A）" in banner  # "for 王*英（…）" atop each of her pages
    for path in ("/documents", "/transfers"):
        shown = page.get(path).text
        assert all(label in shown for label in switcher.values()), path
    page.cookies.set("tb_lang", "en")
    assert "王*英 (born 1950 · Org A)" in page.get("/elder").text
    page.cookies.set("tb_lang", "zh-CN")
    for text in (page.get("/elder").text, page.get("/documents").text, banner):
        for secret in ("王秀英", "王丽英", "王美英", "13900004444", "1944-03-15", "1950-06-01"):
            assert secret not in text
    # Staff of her organisation see the same elders masked at the desk, as before.
    desk = as_browser(w, "staff-a")
    assert desk.get(f"/desk/people/{younger}").status_code == 200
