"""Confirmation: the served side (the elder, a proxy, or staff for an elder without a phone)
says the service happened, with one button or a code; a paid request is redeemed then."""

from __future__ import annotations

from accounts.errors import Words
from accounts.model import Principal
from accounts.storage import Tx
from care.base import require_active
from care.codes import code_throttle_keys, refuse_if_throttled
from care.errors import (
    InvalidConfirmationCode,
    SelfVerification,
    WrongState,
)
from care.model import (
    ConfirmedAs,
    RecordStatus,
    ServiceRecord,
)
from care.records import Records
from care.repo import complete_request, save_record
from care.storage import service_records, to_record
from database.group import Refused


class Confirmation(Records):
    """Confirming a record, by the elder's side or with a code."""

    def confirm(
        self, principal: Principal, record_id: str, code: str | None = None
    ) -> ServiceRecord:
        """The served side confirms: the elder, a family proxy, staff acting for the elder, or
        the volunteer passing on a code the elder's side gave them."""
        with self.store.snapshot() as tx:
            record, role = self._visible_record_in(tx, principal, record_id)
            if record.status is not RecordStatus.LOGGED:
                raise WrongState("record is %(status)s", status=Words(record.status))
            self._require_record_members_active(record, tx)
        if code is not None:
            return self._confirm_with_code(record, code, principal.user_id)
        as_ = record.confirming_as(role, principal.member_id)
        return self._mark_confirmed(record, principal.user_id or "", as_)

    def _require_record_members_active(self, record: ServiceRecord, tx: Tx | None = None) -> None:
        require_active(self.accounts.member(record.volunteer_id, tx), "volunteer_id")
        require_active(self.accounts.member(record.elder_id, tx), "elder_id")

    def _confirm_with_code(self, record: ServiceRecord, code: str, by: str | None) -> ServiceRecord:
        now = self.clock()
        keys = code_throttle_keys(record.id, by, record.elder_id)
        with self.store.snapshot() as tx:
            refuse_if_throttled(tx, keys, now)

        def take(tx: Tx) -> str | Refused:
            creator = self._take_code(tx, record.elder_id, code, now, record.id)
            if isinstance(creator, Refused):
                return creator
            if creator in (by, record.created_by):  # refused: the taken code is rolled back
                raise SelfVerification(
                    "a code you created yourself cannot confirm your own service",
                    field="confirmation_code",
                )
            return creator

        try:
            creator = self._commit_workflow(take)
        except InvalidConfirmationCode:
            self._count_wrong_code(keys, now)
            raise
        return self._mark_confirmed(record, creator, ConfirmedAs.CODE)

    def _mark_confirmed(self, record: ServiceRecord, by: str, as_: ConfirmedAs) -> ServiceRecord:
        change = record.confirmed(by, as_, self.clock())

        def save(tx: Tx) -> ServiceRecord | Refused:
            if not save_record(tx, record, change):  # nothing written
                return Refused(WrongState("record was confirmed or rejected meanwhile"))
            if record.request_id is not None:
                complete_request(tx, record.request_id)
            return to_record(tx.get(service_records, record.id))  # as stored

        confirmed = self._commit_workflow(save)
        if confirmed.request_id is not None:
            self._redeem(confirmed)
        return confirmed
