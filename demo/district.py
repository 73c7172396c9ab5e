"""The second district of the two-district demo (``make run-federation``, demo.federation): a
small 秦淮 bank where the 鼓楼 demo's people have family, or move to.

鼓楼 is the ordinary demo bank (``timebank seed --demo``); this one is seeded through the same
services (accounts, the catalogue's policy entries in the log), with members only: its ledger
starts empty but for the catalogue, so that every minute a member of 秦淮 holds came from 鼓楼.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from accounts.model import OrgKind, Relation, Role
from accounts.service import AccountsService, PersonalInput
from care.service import CareService
from demo.seed import CATALOGUE

DISTRICT_BANK = "qinhuai"
DISTRICT_BANK_NAME = "秦淮区养老时间银行 (demo)"


@dataclass(frozen=True)
class DistrictLogin:
    username: str
    password: str
    what: str


# Published like the 鼓楼 demo's logins (demo.bank.DEMO_LOGINS); the same usernames name the
# same people in both districts where they are members of both.
DISTRICT_LOGINS = (
    DistrictLogin("admin", "demo-admin-2026", "bank administrator of 秦淮"),
    DistrictLogin("mother", "demo-mother-2026", "陈桂兰, 78: the 鼓楼 volunteer 李志强's mother"),
    DistrictLogin("elder", "demo-elder-2026", "王秀英: the 鼓楼 elder, a member here too"),
    DistrictLogin("son", "demo-son-2026", "李志强's member record in 秦淮, his mother's proxy"),
)


class DistrictExists(RuntimeError):
    pass


def seed_district_bank(accounts: AccountsService, care: CareService) -> dict[str, str]:
    """The 秦淮 bank: its administrator, a centre, the catalogue, and the members the 鼓楼
    demo's people have here; returns their member ids by login name."""
    if accounts.user_by_username("admin") is not None:
        raise DistrictExists("the district bank exists already")
    logins = {d.username: d.password for d in DISTRICT_LOGINS}
    accounts.create_bank(DISTRICT_BANK, DISTRICT_BANK_NAME)
    admin_user = accounts.create_user(
        DISTRICT_BANK, "admin", Role.BANK_ADMIN, None, logins["admin"]
    )
    admin = accounts.principal_for_user(admin_user.user.id)
    centre = accounts.create_org(
        admin, "秦淮社区服务中心", str(OrgKind.COMMUNITY_CENTRE), phone="025-8452 0000"
    )
    for code, zh, en, category, weight in CATALOGUE:
        care.upsert_service_type(admin, code, zh, en, category, weight)
    mother = accounts.register_member(
        admin,
        centre.id,
        PersonalInput(
            "陈桂兰",
            "13700004321",
            address="南京市秦淮区大光路8号2单元",
            birth_date=date(1948, 6, 1),
        ),
        volunteer=False,
        elder=True,
        username="mother",
        password=logins["mother"],
    )
    elder = accounts.register_member(
        admin,
        centre.id,
        PersonalInput(
            "王秀英",
            "13700009876",
            id_number="320106194403150027",  # as in 鼓楼: one person in both banks
            address="南京市秦淮区大光路8号1单元",
            birth_date=date(1944, 3, 15),
        ),
        volunteer=False,
        elder=True,
        username="elder",
        password=logins["elder"],
    )
    son = accounts.register_member(
        admin,
        centre.id,
        PersonalInput("李志强", "13800001234", birth_date=date(1985, 4, 2)),
        volunteer=True,
        elder=False,
        username="son",
        password=logins["son"],
    )
    accounts.grant_proxy(admin, mother.member.id, "son")
    link = accounts.declare_relative(admin, son.member.id, mother.member.id, str(Relation.PARENT))
    accounts.decide_relative(admin, link.id, confirm=True)
    return {"mother": mother.member.id, "elder": elder.member.id, "son": son.member.id}


def district_login_help() -> str:
    lines = [f"Demo logins (bank '{DISTRICT_BANK}', {DISTRICT_BANK_NAME}):"]
    lines += [f"  {d.username:<13} {d.password:<24} {d.what}" for d in DISTRICT_LOGINS]
    return "\n".join(lines)
