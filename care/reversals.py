"""Reversals: one bank admin asks for an entry to be undone with a reason, a second approves;
the reversal entry names the entry it reverses, and the workflow follows."""

from __future__ import annotations

from typing import Any

from accounts.base import clean_text, parse_enum
from accounts.errors import Choices, Conflict, InvalidInput, NotFound, Words
from accounts.model import Principal
from accounts.tokens import new_id
from care.base import require_bank_admin
from care.errors import (
    SelfVerification,
    WrongState,
)
from care.model import (
    REVERSAL_STATUSES,
    ReversalReason,
)
from care.repo import reject_deposited, row_dict
from care.storage import (
    reversal_requests,
)
from care.transfers import Transfers
from ledger.entry import Entry
from ledger.kinds import Release, Reversal


class Reversals(Transfers):
    """Two-admin reversals."""

    def request_reversal(
        self,
        principal: Principal,
        seq: int,
        reason: str,
        reason_code: str = ReversalReason.OTHER,
    ) -> dict[str, Any]:
        """Ask for entry ``seq`` to be undone. The reason's code goes into the reversal entry;
        the free text stays with this request, for the bank's administrators."""
        require_bank_admin(principal)
        text = clean_text(reason, "reason", 500)
        code = parse_enum(ReversalReason, reason_code, "reason_code")
        entry = self.ledger.entry(seq) if seq >= 0 else None
        if (
            entry is None
            or not entry.request.postings
            or not all(
                p.account.startswith(f"{principal.bank_id}:") for p in entry.request.postings
            )
        ):
            raise NotFound("no entry %(seq)s that moved minutes in this bank", seq=seq, field="seq")
        if entry.request.kind in ("reversal", "reserve", "release"):
            raise InvalidInput(
                "a %(kind)s cannot be reversed", field="seq", kind=entry.request.kind
            )
        reversal_id = new_id()
        with self.store.transaction() as tx:
            if tx.first(
                reversal_requests,
                reversal_requests.c.entry_seq == seq,
                reversal_requests.c.status.in_(["pending", "approved"]),
            ):
                raise Conflict("entry %(seq)s already has a reversal request", field="seq", seq=seq)
            tx.insert(
                reversal_requests,
                id=reversal_id,
                bank_id=principal.bank_id,
                entry_seq=seq,
                reason=text,
                reason_code=code.value,
                status="pending",
                requested_by=principal.user_id or "",
                requested_at=self.clock(),
            )
            return row_dict(tx.get(reversal_requests, reversal_id))

    def list_reversals(self, principal: Principal, status: str | None) -> list[dict[str, Any]]:
        require_bank_admin(principal)
        conditions: list[Any] = [reversal_requests.c.bank_id == principal.bank_id]
        if status is not None:
            if status not in REVERSAL_STATUSES:
                raise InvalidInput(
                    "%(field)s must be one of: %(allowed)s",
                    field="status",
                    allowed=Choices(REVERSAL_STATUSES),
                )
            conditions.append(reversal_requests.c.status == status)
        with self.store.snapshot() as tx:
            rows = tx.find(reversal_requests, *conditions, order=[reversal_requests.c.requested_at])
        return [row_dict(r) for r in rows]

    def reject_reversal(self, principal: Principal, reversal_id: str) -> dict[str, Any]:
        """A bank admin turns down (or its requester withdraws) a pending reversal."""
        require_bank_admin(principal)
        with self.store.transaction() as tx:
            row = tx.get(reversal_requests, reversal_id)
            if row is None or row.bank_id != principal.bank_id:
                raise NotFound("no reversal request %(id)s", id=reversal_id)
            if row.status != "pending":
                raise WrongState("reversal request is %(status)s", status=Words(row.status))
            tx.update(
                reversal_requests,
                row.id,
                status="rejected",
                decided_by=principal.user_id,
                decided_at=self.clock(),
            )
            return row_dict(tx.get(reversal_requests, row.id))

    def approve_reversal(self, principal: Principal, reversal_id: str) -> dict[str, Any]:
        """A second bank admin approves; only then is the reversing entry appended."""
        require_bank_admin(principal)
        with self.store.snapshot() as tx:
            row = tx.get(reversal_requests, reversal_id)
        if row is None or row.bank_id != principal.bank_id:
            raise NotFound("no reversal request %(id)s", id=reversal_id)
        if row.status != "pending":
            raise WrongState("reversal request is %(status)s", status=Words(row.status))
        if row.requested_by == principal.user_id:
            raise SelfVerification(
                "a second administrator must approve a reversal", zh="冲正须由另一位管理员批准"
            )
        entry = self.ledger.entry(int(row.entry_seq))
        assert entry is not None
        entry_id = f"reversal:{row.id}"
        reversal = Reversal.of(
            entry.request,
            int(row.entry_seq),
            id=entry_id,
            reason=row.reason_code,
            requested_by=self._who(entry_id, row.requested_by),
            approved_by=self._who(entry_id, principal.user_id),
        )
        result = self._append(reversal.to_request())
        self._after_reversal(entry, int(row.entry_seq), row.id)
        with self.store.transaction() as tx:
            tx.update(
                reversal_requests,
                row.id,
                status="approved",
                decided_by=principal.user_id,
                decided_at=self.clock(),
                reversal_seq=result.seq,
            )
            return row_dict(tx.get(reversal_requests, row.id))

    def _after_reversal(self, entry: Entry, seq: int, reversal_id: str) -> None:
        """Keep the workflow true to the log: a reversed deposit's record is no longer
        verified, and minutes a reversed redemption put back on hold are released."""
        if entry.request.kind == "deposit":
            with self.store.transaction() as tx:
                reject_deposited(tx, seq, f"deposit {seq} reversed ({reversal_id})")
        for posting in entry.request.postings:
            if posting.account.split(":")[1] == "hold" and posting.minutes < 0:
                member = posting.account.replace(":hold:", ":member:")
                release = Release(
                    f"release:reversal:{reversal_id}",
                    member,
                    -posting.minutes,
                    reversal=reversal_id,
                )
                self._append(release.to_request())
