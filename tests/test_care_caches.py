"""The workflow's writes leave the caches of who callers are standing (``api.auth.PrincipalCache``,
``accounts.access_cache``): a burst of check-ins no longer re-reads every caller from the
database. A write that changes a caller still forgets them at once."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event

from accounts.errors import NotFound
from accounts.storage import CALLER_TABLES
from api.auth import PrincipalCache
from care.model import RecordStatus
from tests.test_care_rules import PASSWORD, Bank
from tests.test_care_rules import bank as bank  # the fixture


def test_a_revoked_staff_grant_is_refused_right_after_care_writes_kept_it(bank: Bank) -> None:
    accounts, elder_id = bank.accounts, bank.members["elder"]
    token = accounts.login("staff2", PASSWORD, None, "test").token
    cache = PrincipalCache()
    staff2 = cache.authenticate(accounts, token)
    assert accounts.member_access(staff2, elder_id)[1] == "staff"

    # The deposit path's writes (a record logged, confirmed, verified) change no caller.
    record = bank.record()
    bank.care.confirm(bank.people["elder"], record.id)
    assert bank.care.verify(bank.people["staff"], record.id).status is RecordStatus.VERIFIED
    assert cache.remembered(accounts, token) == staff2
    assert accounts.remembered_access(staff2, elder_id) == accounts.member_access(staff2, elder_id)

    # Revoking the grant is a write that changes a caller: both are forgotten at once.
    user_id = staff2.user_id
    assert user_id is not None
    accounts.revoke_staff(bank.people["admin"], bank.members["org"], user_id)
    assert cache.remembered(accounts, token) is None
    assert accounts.remembered_access(staff2, elder_id) is None
    without_grant = cache.authenticate(accounts, token)
    assert without_grant.orgs() == set()
    with pytest.raises(NotFound):
        accounts.member_access(without_grant, elder_id)


def test_the_deposit_paths_writes_touch_no_caller_table(bank: Bank) -> None:
    """What ``CareBase._commit_workflow`` promises, checked on the SQL
    the deposit path runs: records logged, confirmed (by the elder and with a code), verified
    and rejected."""
    written: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        words = statement.split()
        if words[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            table = words[2] if words[0].upper() != "UPDATE" else words[1]
            written.append(table.strip('"'))

    bank.add_member("vol2", volunteer=True, elder=False)
    code, _ = bank.care.create_confirmation_code(bank.people["elder"], bank.members["elder"])
    engine = bank.accounts.store.writer
    writes_before = bank.accounts.store.writes
    event.listen(engine, "before_cursor_execute", note)
    try:
        first = bank.record()
        bank.care.confirm(bank.people["elder"], first.id)
        bank.care.verify(bank.people["staff"], first.id)
        second = bank.record(volunteer="vol2")
        bank.care.confirm(bank.people["vol2"], second.id, code)
        bank.care.reject(bank.people["staff"], second.id, "not this day")
    finally:
        event.remove(engine, "before_cursor_execute", note)
    assert written and not set(written) & CALLER_TABLES, written
    assert "service_records" in written
    assert bank.accounts.store.writes == writes_before
