"""The care workflow's rules, one per test, against the use cases directly: a real accounts
store on a temporary SQLite file and the in-memory ``FakeLedger`` (no HTTP, no sequencer).
Each refusal is shown next to the same call succeeding for someone allowed."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

import migrations.models  # noqa: F401 - registers every table on the shared metadata
from accounts.errors import InvalidInput
from accounts.model import Principal, Role
from accounts.protection import Protector
from accounts.service import AccountsService, PersonalInput
from accounts.storage import AccountsStore
from audit.auditor import Policy as AuditPolicy
from audit.auditor import verify_receipt
from care.errors import MemberNotActive, NotARelative, SelfVerification, WrongState
from care.model import RecordStatus, RequestStatus, ServiceRecord
from care.repo import LIST_LIMIT
from care.service import CareService
from database import Database, metadata
from tests.fake_ledger import FakeLedger

PASSWORD = "correct horse battery"


@dataclass
class Bank:
    """One bank, one organisation, its staff, and active and pending members."""

    ledger: FakeLedger
    accounts: AccountsService
    care: CareService
    people: dict[str, Principal] = field(default_factory=dict)
    members: dict[str, str] = field(default_factory=dict)

    def add_member(self, key: str, volunteer: bool, elder: bool) -> None:
        staff = self.people["staff"]
        new = self.accounts.register_member(
            staff,
            self.members["org"],
            PersonalInput(
                f"成员{key}", f"1380000{len(self.members):04d}", birth_date=date(1940, 1, 1)
            ),
            volunteer=volunteer,
            elder=elder,
            username=key,
            password=PASSWORD,
        )
        self.members[key] = new.member.id
        assert new.user is not None
        self.people[key] = self.accounts.principal_for_user(new.user.id)

    def record(
        self, volunteer: str = "vol", elder: str = "elder", hours: float = 1
    ) -> ServiceRecord:
        end = datetime.now(UTC) - timedelta(hours=1)
        return self.care.log_record(
            self.people[volunteer],
            elder_id=self.members[elder],
            service_code="nursing",
            check_in=end - timedelta(hours=hours),
            check_out=end,
            minutes=None,
            request_id=None,
            device_key_id=None,
            signature=None,
            confirmation_code=None,
        )


@pytest.fixture
def bank(tmp_path: Path) -> Iterator[Bank]:
    database = Database(f"sqlite:///{tmp_path / 'unit.db'}")
    metadata.create_all(database.writer)
    ledger = FakeLedger()
    accounts = AccountsService(AccountsStore(database), Protector(secrets.token_bytes(32)), ledger)
    care = CareService(accounts.store, accounts, ledger)
    accounts.create_bank("b1", "Bank 1")
    admin = accounts.create_user("b1", "admin", Role.BANK_ADMIN, None, PASSWORD).user
    b = Bank(ledger, accounts, care)
    b.people["admin"] = accounts.principal_for_user(admin.id)
    org = accounts.create_org(b.people["admin"], "Centre", "community_centre")
    b.members["org"] = org.id
    for name in ("staff", "staff2"):
        user = accounts.create_user("b1", name, Role.ORG_STAFF, org.id, PASSWORD).user
        # sessions opened with TOTP, as verification requires
        b.people[name] = dataclasses.replace(
            accounts.principal_for_user(user.id), second_factor=True
        )
    care.upsert_service_type(b.people["admin"], "nursing", "护理", "Nursing", "nursing", 1500)
    b.add_member("vol", volunteer=True, elder=False)
    b.add_member("elder", volunteer=False, elder=True)
    yield b
    database.dispose()


def test_a_verified_hour_deposits_minutes_times_weight_once(bank: Bank) -> None:
    record = bank.record()
    bank.care.confirm(bank.people["elder"], record.id)
    verified = bank.care.verify(bank.people["staff"], record.id)
    assert verified.status is RecordStatus.VERIFIED and verified.deposit_minutes == 90
    with pytest.raises(WrongState):
        bank.care.verify(bank.people["staff"], record.id)
    assert bank.ledger.kinds().count("deposit") == 1
    assert bank.care.balance(bank.people["vol"], bank.members["vol"]).available == 90


def test_a_volunteer_waiting_for_approval_logs_nothing(bank: Bank) -> None:
    signed_up = bank.accounts.self_register(
        "b1", bank.members["org"], "newcomer", PASSWORD, PersonalInput("新人", "13900000001")
    )
    assert signed_up.user is not None
    bank.people["newcomer"] = bank.accounts.principal_for_user(signed_up.user.id)
    with pytest.raises(MemberNotActive):
        bank.record(volunteer="newcomer")
    assert bank.record(volunteer="vol").status is RecordStatus.LOGGED


def test_whoever_confirmed_for_the_elder_cannot_verify(bank: Bank) -> None:
    record = bank.record()
    bank.care.confirm(bank.people["staff"], record.id)  # for an elder without a phone
    with pytest.raises(SelfVerification):
        bank.care.verify(bank.people["staff"], record.id)
    assert bank.care.verify(bank.people["staff2"], record.id).status is RecordStatus.VERIFIED


def test_a_volunteer_cannot_confirm_their_own_record(bank: Bank) -> None:
    record = bank.record()
    with pytest.raises(SelfVerification):
        bank.care.confirm(bank.people["vol"], record.id)
    assert bank.care.confirm(bank.people["elder"], record.id).status is RecordStatus.CONFIRMED


def test_a_record_is_confirmed_once(bank: Bank) -> None:
    record = bank.record()
    bank.care.confirm(bank.people["elder"], record.id)
    with pytest.raises(WrongState):
        bank.care.confirm(bank.people["elder"], record.id)


def test_the_stored_time_cap_sends_the_excess_to_the_pool(bank: Bank) -> None:
    bank.care.set_policy(bank.people["admin"], {"stored_cap_minutes": 60})
    record = bank.record()
    bank.care.confirm(bank.people["elder"], record.id)
    bank.care.verify(bank.people["staff"], record.id)
    deposit = bank.ledger.entries[-1].request
    assert deposit.kind == "deposit" and deposit.body["to_pool"] == 30
    assert bank.care.balance(bank.people["vol"], bank.members["vol"]).available == 60


def test_gifts_go_only_to_confirmed_relatives(bank: Bank) -> None:
    bank.add_member("child", volunteer=True, elder=False)
    record = bank.record()
    bank.care.confirm(bank.people["elder"], record.id)
    bank.care.verify(bank.people["staff"], record.id)
    vol, child = bank.members["vol"], bank.members["child"]
    with pytest.raises(NotARelative):
        bank.care.gift(bank.people["vol"], vol, child, 30, "k1")
    link = bank.accounts.declare_relative(bank.people["staff"], vol, child, "child")
    bank.accounts.decide_relative(bank.people["staff"], link.id, True)
    bank.care.gift(bank.people["vol"], vol, child, 30, "k2")
    assert bank.care.balance(bank.people["child"], child).available == 30


def test_a_request_whose_service_was_recorded_cannot_be_cancelled(bank: Bank) -> None:
    start = datetime.now(UTC) - timedelta(hours=4)
    request = bank.care.create_request(
        bank.people["elder"],
        bank.members["elder"],
        "nursing",
        start,
        start + timedelta(hours=3),
        60,
        None,
        False,
    )
    bank.care.claim(bank.people["vol"], request.id)
    end = start + timedelta(hours=2)
    bank.care.log_record(
        bank.people["vol"],
        elder_id=bank.members["elder"],
        service_code="nursing",
        check_in=end - timedelta(hours=1),
        check_out=end,
        minutes=None,
        request_id=request.id,
        device_key_id=None,
        signature=None,
        confirmation_code=None,
    )
    with pytest.raises(WrongState):
        bank.care.cancel(bank.people["elder"], request.id, "不需要了")
    other = bank.care.create_request(
        bank.people["elder"],
        bank.members["elder"],
        "nursing",
        start,
        start + timedelta(hours=3),
        60,
        None,
        False,
    )
    cancelled = bank.care.cancel(bank.people["elder"], other.id, "不需要了")
    assert cancelled.status is RequestStatus.CANCELLED


def test_a_deposits_receipt_is_checked_by_the_auditor_with_the_key_alone(bank: Bank) -> None:
    record = bank.record()
    bank.care.confirm(bank.people["elder"], record.id)
    verified = bank.care.verify(bank.people["staff"], record.id)
    assert verified.deposit_seq is not None
    receipt = bank.care.receipt(bank.people["vol"], bank.members["vol"], verified.deposit_seq)
    policy = AuditPolicy(key=bank.ledger.signer.verifier)
    assert verify_receipt(receipt, policy).ok
    forged = receipt.replace(f"index {verified.deposit_seq}", "index 0")
    assert not verify_receipt(forged, policy).ok


def test_free_text_follows_one_rule_notes_may_span_lines(bank: Bank) -> None:
    start = datetime.now(UTC) + timedelta(days=1)
    request = bank.care.create_request(
        bank.people["elder"],
        bank.members["elder"],
        "nursing",
        start,
        start + timedelta(hours=3),
        60,
        "  复查心脏\n带上药盒  ",
        False,
    )
    assert request.notes == "复查心脏\n带上药盒"
    with pytest.raises(InvalidInput) as refused:
        bank.care.cancel(bank.people["elder"], request.id, "不需要\x07了")
    assert refused.value.field == "reason"
    with pytest.raises(InvalidInput):
        bank.care.cancel(bank.people["elder"], request.id, "两行\n理由")
    cancelled = bank.care.cancel(bank.people["elder"], request.id, "家人来照顾")
    assert cancelled.status is RequestStatus.CANCELLED


def test_lists_answer_with_the_newest_rows_so_a_busy_year_never_hides_today(bank: Bank) -> None:
    first = datetime.now(UTC) + timedelta(hours=1)
    made = [
        bank.care.create_request(
            bank.people["staff"],
            bank.members["elder"],
            "nursing",
            first + timedelta(hours=i),
            first + timedelta(hours=i + 2),
            60,
            None,
            False,
        ).id
        for i in range(LIST_LIMIT + 2)
    ]
    listed = [r.id for r in bank.care.list_requests(bank.people["staff"], None)]
    assert listed == made[2:]  # the newest LIST_LIMIT, oldest first
    assert [r.id for r in bank.care.list_requests(bank.people["elder"], "open")] == made[2:]
    assert bank.care.list_requests(bank.people["vol"], "assigned") == []
