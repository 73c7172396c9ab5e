"""Verification: staff of the record's organisation (with a second factor, never the one who
confirmed) verify a confirmed record and its minutes × weight are deposited; or reject it,
refunding a paid request. ``repair`` finishes what a crash left between the two steps."""

from __future__ import annotations

from typing import Any

from accounts.base import clean_text
from accounts.model import Principal
from accounts.storage import Tx
from care.confirmation import Confirmation
from care.errors import (
    InvalidSignature,
    WrongState,
)
from care.model import (
    RecordStatus,
    RequestStatus,
    ServiceRecord,
    ServiceRequest,
)
from care.repo import (
    locked_request,
    move_record,
    save_record,
    save_request,
    undo_verification,
)
from care.storage import (
    service_records,
    service_requests,
    service_types,
    to_record,
    to_request,
    to_type,
)
from database.group import Refused
from ledger.entry import Entry
from ledger.kinds import Deposit, Refund


class Verification(Confirmation):
    """Verifying and rejecting records; deposits, refunds and repair."""

    def verify(self, principal: Principal, record_id: str) -> ServiceRecord:
        """The organisation verifies: one ledger entry deposits minutes × weight."""
        with self.store.snapshot() as tx:  # every check's reads in one read transaction
            record, _ = self._visible_record_in(tx, principal, record_id)
            record.check_verifier(principal.member_id, principal.orgs())
            self.accounts.require_second_factor(principal)
            verifier = principal.user_id or ""
            verified = record.verified(verifier, self.clock())
            self._require_record_members_active(record, tx)
            if record.device_key_id and self.accounts.device_key_revoked(record.device_key_id, tx):
                # Whoever held the phone before it was revoked could have signed it: the
                # auditor refuses a deposit signed by a key revoked before it, and so does the
                # desk.
                raise InvalidSignature(
                    "the phone key that signed this record has been revoked since; reject the "
                    "record, and the volunteer logs it again",
                    field="record",
                    zh="签署这条记录的手机密钥已被撤销；请驳回记录，由志愿者重新登记",
                )
        # Confirmed → verified first, so that a reject racing this verify finds the record
        # verified (and is refused) instead of rejecting a record whose deposit is posted.
        moved = self._commit_workflow(lambda tx: save_record(tx, record, verified))
        if not moved:
            raise WrongState("record was verified or rejected meanwhile")
        try:
            return self._post_deposit(record, verifier, f"deposit:{self._record_ref(record.id)}")
        except Exception:
            # Nothing was posted: confirmed again.
            self._commit_workflow(lambda tx: undo_verification(tx, record.id))
            raise

    def _paid_redemption(self, record: ServiceRecord) -> tuple[str, dict[str, Any]] | None:
        """The elder and the ``redemption.completed`` event of the redemption this record paid
        (its request completed and its ``redeem`` entry posted), if it paid one."""
        if record.request_id is None:
            return None
        with self.store.snapshot() as tx:
            request = to_request(tx.get(service_requests, record.request_id))
        if request.status is not RequestStatus.COMPLETED or not request.redeem:
            return None
        entry_id = f"redeem:{self._request_ref(request.id)}"
        entry = self.ledger.entries_by_id([entry_id]).get(entry_id)
        if entry is None:
            return None
        minutes = sum(p.minutes for p in entry.request.postings if p.minutes > 0)
        return request.elder_id, {
            "request_id": request.id,
            "record_id": record.id,
            "entry_id": entry_id,
            "minutes": minutes,
            "seq": entry.seq,
            "receipt_url": f"/v1/log/receipt?index={entry.seq}",
        }

    def _record_ref(self, record_id: str) -> str:
        """How the log names a record (``Protector.reference``), in its deposit's id."""
        return self.accounts.protector.reference("record", record_id)

    def _post_deposit(self, record: ServiceRecord, verifier: str, entry_id: str) -> ServiceRecord:
        """Append a verified record's deposit as ``entry_id`` and note its seq on the record
        (idempotent by that id; also what the repair of an interrupted verification runs); the
        record as stored then."""
        with self.store.snapshot() as tx:
            volunteer = self.accounts.member(record.volunteer_id, tx)
            policy = self.policy(record.bank_id, tx)
            kind = to_type(tx.get(service_types, record.service_type_id))
        # People are named by per-entry pseudonyms: the auditor still sees that the one who
        # confirmed did not verify, and the verifier's signature is the verifier's.
        deposit = Deposit(
            id=entry_id,
            volunteer=volunteer.ledger_account,
            bank=record.bank_id,
            record=record.digest,
            service=kind.code,
            service_version=kind.version,
            minutes=record.minutes,
            weight=kind.weight_permille,
            policy=policy.version,
            org=record.org_id,
            confirmed_by=self._who(entry_id, record.confirmed_by),
            confirmed_as=str(record.confirmed_as),
            verified_by=self._who(entry_id, verifier),
            device_key=record.device_key_id,
            device_signature=record.device_signature,
        )
        amount = deposit.amount
        # The stored-time cap is applied by the log's writer against the balances of the
        # moment: deposits verified together cannot pass it together. The excess goes to the
        # pool, and the entry's to_pool says how much.
        result = self._append(deposit.to_request(stored_cap=policy.stored_cap_minutes))
        paid = self._paid_redemption(record)

        def note(tx: Tx) -> tuple[bool, ServiceRecord]:
            noted = move_record(
                tx, record.id, RecordStatus.VERIFIED, deposit_seq=result.seq, deposit_minutes=amount
            )
            if noted and self.events is not None:
                self.events.member_event(
                    tx,
                    volunteer.id,
                    "deposit.verified",
                    {
                        "record_id": record.id,
                        "entry_id": entry_id,
                        "minutes": amount,
                        "seq": result.seq,
                        "receipt_url": f"/v1/log/receipt?index={result.seq}",
                    },
                )
            if noted and self.events is not None and paid is not None:
                self.events.member_event(tx, paid[0], "redemption.completed", paid[1])
            return noted, to_record(tx.get(service_records, record.id))

        noted, stored = self._commit_workflow(note)
        if not noted:
            raise WrongState(
                "record %(id)s left 'verified' while its deposit was posted", id=record.id
            )
        return stored

    def reject(self, principal: Principal, record_id: str, reason: str) -> ServiceRecord:
        text = clean_text(reason, "reason", 500)
        record, role = self._visible_record(principal, record_id)
        rejected = record.rejected(role, principal.member_id, principal.user_id, text, self.clock())

        def save(tx: Tx) -> ServiceRequest | Refused | None:
            """The rejection stored; the request to pay back, if it had been paid."""
            if not save_record(tx, record, rejected):  # nothing written
                return Refused(WrongState("record was verified or rejected meanwhile"))
            if record.request_id is not None:
                request = locked_request(tx, record.request_id)
                if request.status is RequestStatus.COMPLETED:
                    # The confirmation had completed (and paid) the request: the service did
                    # not happen as recorded, so the request is cancelled and paid back.
                    save_request(tx, request, request.paid_back(principal.user_id))
                    return request
            return None

        refund = self._commit_workflow(save)
        if refund is not None and refund.hold_minutes:
            self._refund(refund, record)
        return self._record(record.id)

    def _refund(self, request: ServiceRequest, record: ServiceRecord) -> None:
        """Give back a redemption whose record staff rejected (idempotent: one id a request)."""
        elder = self.accounts.member(request.elder_id)
        ref = self._request_ref(request.id)
        refund = Refund(
            f"refund:{ref}", elder.ledger_account, request.hold_minutes, ref, record.digest
        )
        self._append(refund.to_request())

    def repair(self) -> list[str]:
        """Finish every step a killed process left half done (see ``care.holds``); returns
        what it did. Safe to run at any time and any number of times."""
        done: list[str] = []
        with self.store.snapshot() as tx:
            requests = [to_request(r) for r in tx.find(service_requests, service_requests.c.redeem)]
            unposted = [
                to_record(r)
                for r in tx.find(
                    service_records,
                    service_records.c.status == RecordStatus.VERIFIED.value,
                    service_records.c.deposit_seq.is_(None),
                )
            ]
        kinds = ("reserve", "release", "redeem", "refund")
        # A request is named by its reference in the log, or by its plain id if it was held
        # before the log used references (``_request_ref``); look for both.
        refs = {r.id: self.accounts.protector.reference("request", r.id) for r in requests}
        wanted = [f"{k}:{name}" for r in requests for name in (r.id, refs[r.id]) for k in kinds]
        wanted += [f"deposit:{name}" for r in unposted for name in (r.id, self._record_ref(r.id))]
        posted: dict[str, Entry] = {}
        for start in range(0, len(wanted), 1000):  # a bounded IN list per read
            posted.update(self.ledger.entries_by_id(wanted[start : start + 1000]))
        for request in requests:
            name = request.id if f"reserve:{request.id}" in posted else refs[request.id]
            ids = [f"{kind}:{name}" for kind in kinds]
            reserve = posted.get(ids[0])
            if reserve is None or ids[1] in posted or ids[2] in posted:
                continue
            held = sum(p.minutes for p in reserve.request.postings if p.minutes > 0)
            if request.status is RequestStatus.CANCELLED:
                self._release(request, held)
                done.append(f"released {held} minutes held for cancelled request {request.id}")
            elif request.status is RequestStatus.COMPLETED:
                record = self._completed_record(request.id)
                if record is not None:
                    self._redeem(record)
                    done.append(f"redeemed {held} minutes of completed request {request.id}")
            elif request.hold_minutes != held:
                with self.store.transaction() as tx:
                    tx.update(service_requests, request.id, hold_minutes=held)
                done.append(f"request {request.id} now holds the {held} minutes reserved for it")
        for record in unposted:
            legacy = f"deposit:{record.id}"  # a deposit appended before the log used references
            entry_id = legacy if legacy in posted else f"deposit:{self._record_ref(record.id)}"
            self._post_deposit(record, record.verified_by or "", entry_id)
            done.append(f"posted the deposit of verified record {record.id}")
        return done

    def _completed_record(self, request_id: str) -> ServiceRecord | None:
        with self.store.snapshot() as tx:
            row = tx.first(
                service_records,
                service_records.c.request_id == request_id,
                service_records.c.status.in_(
                    [RecordStatus.CONFIRMED.value, RecordStatus.VERIFIED.value]
                ),
            )
        return to_record(row) if row is not None else None
