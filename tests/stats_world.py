"""A small bank for the statistics' tests: two organisations with a staff member each, two bank
administrators, an auditor, a volunteer, two services, elders made on demand, and a clock the
test moves. Real SQLite or PostgreSQL (the ``db_url`` fixture) under an in-memory ledger."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from accounts.model import Principal, Role
from accounts.protection import Protector
from accounts.service import AccountsService, PersonalInput
from accounts.storage import AccountsStore
from care.service import CareService
from database import Database
from reports.coverage import VisitCoverage
from reports.signals import SupervisionSignals
from tests.fake_ledger import FakeLedger

PASSWORD = "correct horse battery"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI).astimezone(UTC)  # type: ignore[misc]


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: local(2026, 2, 20, 9))

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Month:
    clock: Clock
    accounts: AccountsService
    care: CareService
    coverage: VisitCoverage
    signals: SupervisionSignals
    ledger: FakeLedger
    people: dict[str, Principal] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)

    def elder(self, key: str, org: str, *flags: str) -> None:
        staff = self.people[f"staff-{org}"]
        new = self.accounts.register_member(
            staff,
            self.ids[org],
            PersonalInput(
                f"长者{key}", f"1390000{len(self.ids):04d}", address="南京市鼓楼区中山路1号"
            ),
            volunteer=False,
            elder=True,
            username=f"elder-{key}",
            password=PASSWORD,
        )
        self.ids[key] = new.member.id
        assert new.user is not None
        self.people[key] = self.accounts.principal_for_user(new.user.id)
        for flag in flags:
            self.ids[f"{key}:{flag}"] = self.accounts.set_flag(staff, new.member.id, flag, None).id

    def visit(self, elder: str, at: datetime, service: str = "nursing", verify: bool = True) -> str:
        """A one-hour service beginning ``at``, logged, confirmed and verified an hour after."""
        self.clock.now = at + timedelta(hours=2)
        record = self.care.log_record(
            self.people["vol"],
            elder_id=self.ids[elder],
            service_code=service,
            check_in=at,
            check_out=at + timedelta(hours=1),
            minutes=None,
            request_id=None,
            device_key_id=None,
            signature=None,
            confirmation_code=None,
        )
        self.care.confirm(self.people[elder], record.id)
        if verify:
            org = "a" if self.accounts.member(self.ids[elder]).org_id == self.ids["a"] else "b"
            self.care.verify(self.people[f"staff-{org}"], record.id)
        return record.id


def open_month(db_url: str) -> Iterator[Month]:
    """The bank on ``db_url``, disposed of afterwards (a fixture's body)."""
    database = Database(db_url)
    clock = Clock()
    ledger = FakeLedger()
    store = AccountsStore(database)
    accounts = AccountsService(store, Protector(secrets.token_bytes(32)), ledger, clock=clock)
    care = CareService(store, accounts, ledger, clock=clock)
    coverage = VisitCoverage(store, accounts, care.policy, clock=clock)
    signals = SupervisionSignals(store, accounts, ledger, care.policy, clock=clock)
    m = Month(clock, accounts, care, coverage, signals, ledger)
    accounts.create_bank("b1", "Bank 1")
    for name in ("admin", "admin2"):
        user = accounts.create_user("b1", name, Role.BANK_ADMIN, None, PASSWORD).user
        m.people[name] = accounts.principal_for_user(user.id)
    user = accounts.create_user("b1", "auditor", Role.AUDITOR, None, PASSWORD).user
    m.people["auditor"] = accounts.principal_for_user(user.id)
    for org in ("a", "b"):
        m.ids[org] = accounts.create_org(m.people["admin"], f"中心{org}", "community_centre").id
        user = accounts.create_user("b1", f"staff-{org}", Role.ORG_STAFF, m.ids[org], PASSWORD).user
        m.people[f"staff-{org}"] = dataclasses.replace(
            accounts.principal_for_user(user.id), second_factor=True
        )
    for code, name, category in (("nursing", "护理", "nursing"), ("meal", "助餐", "meals")):
        care.upsert_service_type(m.people["admin"], code, name, code, category, 1000)
    vol = accounts.register_member(
        m.people["staff-a"],
        m.ids["a"],
        PersonalInput("志愿者", "13800000000", birth_date=date(1990, 1, 1)),
        volunteer=True,
        elder=False,
        username="vol",
        password=PASSWORD,
    )
    assert vol.user is not None
    m.people["vol"] = accounts.principal_for_user(vol.user.id)
    yield m
    database.dispose()
