"""A small world of two banks, their organisations and people, for the accounts tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from litestar.testing import TestClient

from accounts.model import Principal, Relation, Role
from accounts.service import AccountsService, PersonalInput
from api.app import create_app
from ledger.config import Settings
from ledger.log import Log

PASSWORD = "correct horse battery"


@dataclass
class World:
    client: TestClient[Any]
    accounts: AccountsService
    log: Log
    ids: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)

    def as_(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def principal(self, who: str) -> Principal:
        return self.accounts.authenticate(self.tokens[who])

    def enrolment_code(self, who: str) -> str:
        """The TOTP enrolment code bank b1's admin issues for ``who``."""
        admin = self.accounts.principal_for_user(self.ids["b1-admin"])
        user = self.accounts.user_by_username(who)
        assert user is not None, who
        code, _ = self.accounts.issue_enrolment_code(admin, user.id)
        return code


def person(name: str, phone: str, **kw: Any) -> PersonalInput:
    return PersonalInput(name=name, phone=phone, **kw)


def build_world(settings: Settings, log: Log) -> Iterator[World]:
    app = create_app(settings, log=log)
    with TestClient(app) as client:
        accounts: AccountsService = app.state.accounts
        w = World(client, accounts, log)
        for bank in ("b1", "b2"):
            accounts.create_bank(bank, f"Bank {bank}")
            admin = accounts.create_user(bank, f"{bank}-admin", Role.BANK_ADMIN, None, PASSWORD)
            w.ids[f"{bank}-admin"] = admin.user.id
        admin1 = accounts.principal_for_user(w.ids["b1-admin"])
        admin2 = accounts.principal_for_user(w.ids["b2-admin"])
        org_a = accounts.create_org(admin1, "Org A", "community_centre")
        org_b = accounts.create_org(admin1, "Org B", "service_station")
        org_c = accounts.create_org(admin2, "Org C", "community_centre")
        w.ids.update(org_a=org_a.id, org_b=org_b.id, org_c=org_c.id)
        for name, role, org in (
            ("staff-a", Role.ORG_STAFF, org_a.id),
            ("admin-a", Role.ORG_ADMIN, org_a.id),
            ("staff-b", Role.ORG_STAFF, org_b.id),
            ("auditor", Role.AUDITOR, None),
        ):
            w.ids[name] = accounts.create_user("b1", name, role, org, PASSWORD).user.id
        staff_a = accounts.principal_for_user(w.ids["staff-a"])
        staff_b = accounts.principal_for_user(w.ids["staff-b"])

        def member(
            key: str, staff: Principal, org: str, personal: PersonalInput, **kw: Any
        ) -> None:
            new = accounts.register_member(staff, org, personal, **kw)
            w.ids[key] = new.member.id
            w.ids[f"{key}-account"] = new.member.ledger_account
            if new.user is not None:
                w.ids[f"{key}-user"] = new.user.id

        member(
            "vol-a",
            staff_a,
            org_a.id,
            person(
                "李志强",
                "13800001111",
                id_number="320106198504020019",
                address="南京市鼓楼区湖南路1号",
            ),
            volunteer=True,
            elder=False,
            username="vol-a",
            password=PASSWORD,
        )
        member(
            "elder-a",
            staff_a,
            org_a.id,
            person(
                "王秀英",
                "13800002222",
                birth_date=date(1944, 3, 15),
                id_number="320106194403150027",
                address="南京市鼓楼区湖南路12号",
                health_notes="高血压",
            ),
            volunteer=False,
            elder=True,
            username="elder-a",
            password=PASSWORD,
        )
        member(
            "family-a",
            staff_a,
            org_a.id,
            person("王建国", "13800003333"),
            volunteer=True,
            elder=False,
            username="family-a",
            password=PASSWORD,
        )
        member(
            "vol-b",
            staff_b,
            org_b.id,
            person("赵敏", "13800004444"),
            volunteer=True,
            elder=False,
            username="vol-b",
            password=PASSWORD,
        )
        member(
            "elder-b", staff_b, org_b.id, person("孙立", "13800005555"), volunteer=False, elder=True
        )
        member(
            "vol-c", admin2, org_c.id, person("周平", "13800006666"), volunteer=True, elder=False
        )
        member(
            "elder-c", admin2, org_c.id, person("吴静", "13800009999"), volunteer=False, elder=True
        )
        w.ids["link-c"] = accounts.declare_relative(
            admin2, w.ids["vol-c"], w.ids["elder-c"], "child"
        ).id
        w.ids["flag-c"] = accounts.set_flag(admin2, w.ids["elder-c"], "disabled", None).id
        w.ids["pending-c"] = accounts.self_register(
            "b2", org_c.id, "pending-c", PASSWORD, person("郑新", "13800001010")
        ).member.id
        accounts.grant_proxy(staff_a, w.ids["elder-a"], "family-a")
        pending = accounts.self_register(
            "b1", org_a.id, "pending-a", PASSWORD, person("陈新", "13800007777")
        )
        w.ids["pending-a"] = pending.member.id
        pending_b = accounts.self_register(
            "b1", org_b.id, "pending-b", PASSWORD, person("何新", "13800008888")
        )
        w.ids["pending-b"] = pending_b.member.id
        link = accounts.declare_relative(
            staff_a, w.ids["family-a"], w.ids["elder-a"], str(Relation.CHILD)
        )
        w.ids["link-a"] = link.id
        link_b = accounts.declare_relative(
            staff_b, w.ids["vol-b"], w.ids["elder-b"], str(Relation.CHILD)
        )
        w.ids["link-b"] = link_b.id
        flag = accounts.set_flag(staff_b, w.ids["elder-b"], "living_alone", None)
        w.ids["flag-b"] = flag.id
        flag_a = accounts.set_flag(staff_a, w.ids["elder-a"], "advanced_age", None)
        w.ids["flag-a"] = flag_a.id
        for who in (
            "b1-admin",
            "b2-admin",
            "staff-a",
            "admin-a",
            "staff-b",
            "auditor",
            "vol-a",
            "elder-a",
            "family-a",
            "vol-b",
        ):
            w.tokens[who] = accounts.issue_token(who).token
        key, secret = accounts.create_partner_key(
            admin1, "city platform", ["read_points", "read_statement", "request_exchange"]
        )
        w.ids["partner-key"] = key.id
        w.tokens["partner"] = secret
        key2, _ = accounts.create_partner_key(admin2, "other platform", ["read_points"])
        w.ids["partner-key-b2"] = key2.id
        yield w
