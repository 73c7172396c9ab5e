"""The path of one verification through HTTP, counted: one authentication, and the database
transactions it takes (docs/architecture.md quotes these numbers; a change that adds a
transaction or a second authentication fails here until the doc says why)."""

from __future__ import annotations

import secrets
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import event

from api.auth import PrincipalCache
from tests.accounts_world import World
from tests.test_workflow import log_record, ok
from tests.test_workflow import world as world

__all__ = ["world"]


class Transactions:
    """Counts transactions begun on the process's shared database, by engine role."""

    def __init__(self, w: World) -> None:
        self.database = w.log.store.database
        self.begun: Counter[str] = Counter()

    def _listen(self, role: str) -> Any:
        def begun(_conn: Any) -> None:
            self.begun[role] += 1

        return begun

    def __enter__(self) -> Transactions:
        self._writer = self._listen("writer")
        event.listen(self.database.writer, "begin", self._writer)
        if self.database.reader is not self.database.writer:
            self._reader = self._listen("reader")
            event.listen(self.database.reader, "begin", self._reader)
        return self

    def __exit__(self, *_: object) -> None:
        event.remove(self.database.writer, "begin", self._writer)
        if self.database.reader is not self.database.writer:
            event.remove(self.database.reader, "begin", self._reader)


@pytest.fixture
def authentications(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = PrincipalCache.authenticate

    def counted(self: PrincipalCache, accounts: Any, token: str) -> Any:
        calls.append(token[:4])
        return real(self, accounts, token)

    monkeypatch.setattr(PrincipalCache, "authenticate", counted)
    return calls


def test_a_keyed_verification_authenticates_once_and_counts_its_transactions(
    world: World, authentications: list[str]
) -> None:
    w = world
    record = ok(log_record(w, "vol-a", "elder-a", 6, 5), 201)
    confirm = {**w.as_("elder-a"), "Idempotency-Key": secrets.token_hex(8)}
    ok(w.client.post(f"/v1/records/{record['id']}/confirm", headers=confirm, json={}))
    # (that keyed POST also ran the idempotency table's purge, which runs once a minute)
    headers = {**w.as_("staff-a-2fa"), "Idempotency-Key": secrets.token_hex(8)}
    authentications.clear()
    with Transactions(w) as transactions:
        verified = ok(w.client.post(f"/v1/records/{record['id']}/verify", headers=headers))
    assert verified["status"] == "verified" and verified["deposit_minutes"] == 60
    assert authentications == ["tbs_"]  # the idempotency layer's, handed to handler and audit
    # Writes (5): claim the idempotency key; the record confirmed → verified (compare-and-set);
    # the deposit appended (the sequencer's batch transaction); the record's deposit_seq, read
    # back as verified; the stored response and the audit event, one batch of the group commit
    # (the completion is submitted, the event runs and commits both). Reads (3): the caller's
    # session; one snapshot for the checks (the record with its access check, the elder's and
    # the volunteer's status); one for the deposit (the volunteer's ledger account, the policy,
    # the service type in force).
    if w.log.store.database.reader is w.log.store.database.writer:  # PostgreSQL: one engine
        assert transactions.begun == {"writer": 8}, transactions.begun
    else:
        assert transactions.begun == {"writer": 5, "reader": 3}, transactions.begun
