"""The workflow's writes are group-committed (``care.base.CareBase._commit_workflow``): check-ins
logged at once may share a commit, and one that a rule refuses is refused alone while the
others of its batch are stored."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from accounts.storage import login_throttle
from care.errors import InvalidConfirmationCode, OverlappingRecord, WrongState
from care.model import RecordStatus, ServiceRecord
from tests.test_care_rules import Bank
from tests.test_care_rules import bank as bank  # the fixture

VOLUNTEERS = 8


def test_concurrent_check_ins_are_group_committed_and_a_refused_one_is_refused_alone(
    bank: Bank,
) -> None:
    for n in range(VOLUNTEERS):
        bank.add_member(f"vol{n}", volunteer=True, elder=False)
    bank.record(volunteer="vol0")  # vol0's next record overlaps this one: refused
    group = bank.accounts.store.database.group
    jobs_before, retried_before = group.jobs, group.retried
    logged: dict[str, ServiceRecord] = {}
    refused: dict[str, Exception] = {}
    start = threading.Barrier(VOLUNTEERS)

    def check_in(who: str) -> None:
        start.wait()
        try:
            logged[who] = bank.record(volunteer=who, hours=0.5)  # vol0's overlaps
        except Exception as exc:
            refused[who] = exc

    threads = [threading.Thread(target=check_in, args=(f"vol{n}",)) for n in range(VOLUNTEERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert list(refused) == ["vol0"] and isinstance(refused["vol0"], OverlappingRecord)
    assert sorted(logged) == [f"vol{n}" for n in range(1, VOLUNTEERS)]
    for who, record in logged.items():  # each answer is the row as stored
        assert record == bank.care.get_record(bank.people[who], record.id)
        assert record.status is RecordStatus.LOGGED
    assert group.jobs - jobs_before == VOLUNTEERS
    assert group.retried == retried_before  # refused before writing: no batch ran twice


def test_a_wrong_code_among_concurrent_check_ins_is_refused_alone_and_counted(
    bank: Bank,
) -> None:
    """The elder's code typed wrong on one phone while others check in with the right code or
    none: that one is refused (and counted toward the code's throttle), the rest are stored,
    and the refusal, found before anything is written, makes no batch run again."""
    for n in range(VOLUNTEERS):
        bank.add_member(f"vol{n}", volunteer=True, elder=False)
    code, _ = bank.care.create_confirmation_code(bank.people["elder"], bank.members["elder"])
    wrong = "0" * len(code) if code != "0" * len(code) else "1" * len(code)
    group = bank.accounts.store.database.group
    retried_before = group.retried
    throttles_before = _throttle_rows(bank)
    logged: dict[str, ServiceRecord] = {}
    refused: dict[str, Exception] = {}
    start = threading.Barrier(VOLUNTEERS)
    end = datetime.now(UTC) - timedelta(hours=1)

    def check_in(who: str, typed: str | None) -> None:
        start.wait()
        try:
            logged[who] = bank.care.log_record(
                bank.people[who],
                elder_id=bank.members["elder"],
                service_code="nursing",
                check_in=end - timedelta(minutes=30),
                check_out=end,
                minutes=None,
                request_id=None,
                device_key_id=None,
                signature=None,
                confirmation_code=typed,
            )
        except Exception as exc:
            refused[who] = exc

    typed = {"vol0": wrong, "vol1": code}
    threads = [
        threading.Thread(target=check_in, args=(f"vol{n}", typed.get(f"vol{n}")))
        for n in range(VOLUNTEERS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert list(refused) == ["vol0"] and isinstance(refused["vol0"], InvalidConfirmationCode)
    assert sorted(logged) == [f"vol{n}" for n in range(1, VOLUNTEERS)]
    assert logged["vol1"].status is RecordStatus.CONFIRMED  # the right code, used once
    assert all(logged[f"vol{n}"].status is RecordStatus.LOGGED for n in range(2, VOLUNTEERS))
    assert group.retried == retried_before
    assert _throttle_rows(bank) > throttles_before  # the wrong code was counted


def _throttle_rows(bank: Bank) -> int:
    """Attempts counted against every throttle key (the wrong code's keys among them)."""
    with bank.accounts.store.writer.connect() as conn:
        return int(conn.execute(select(func.sum(login_throttle.c.attempts))).scalar() or 0)


def test_concurrent_confirmations_of_one_record_confirm_it_once_and_refuse_the_rest(
    bank: Bank,
) -> None:
    """The elder's side taps "confirm" on several phones at once: one confirmation is stored,
    every other is refused as the wrong state (found before writing, or by the compare-and-set
    of the group-committed write, which then refuses without running its batch again)."""
    record = bank.record()
    group = bank.accounts.store.database.group
    retried_before = group.retried
    start = threading.Barrier(8)
    answers: list[object] = []

    def confirm() -> None:
        start.wait()
        try:
            answers.append(bank.care.confirm(bank.people["elder"], record.id))
        except Exception as exc:
            answers.append(exc)

    threads = [threading.Thread(target=confirm) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    confirmed = [a for a in answers if isinstance(a, ServiceRecord)]
    assert len(confirmed) == 1 and confirmed[0].status is RecordStatus.CONFIRMED
    assert all(isinstance(a, WrongState) for a in answers if a not in confirmed)
    assert bank.care.get_record(bank.people["elder"], record.id).status is RecordStatus.CONFIRMED
    assert group.retried == retried_before
