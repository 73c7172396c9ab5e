"""The workflow's writes are group-committed (``care.base.CareBase._commit_workflow``): check-ins
logged at once may share a commit, and one that a rule refuses is refused alone while the
others of its batch are stored."""

from __future__ import annotations

import threading

from care.errors import OverlappingRecord, WrongState
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
    jobs_before = group.jobs
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
