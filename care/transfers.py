"""Moving stored time: gifts to a confirmed relative, donations to the pool, and pool grants
to priority elders by a bank admin. Each carries the caller's key as its entry id."""

from __future__ import annotations

from accounts.base import clean_text, parse_enum
from accounts.errors import Forbidden
from accounts.model import Member, Principal
from care.base import opaque, positive, require_active, require_bank_admin
from care.errors import (
    GiftsDisabled,
    NotARelative,
    NotPriorityElder,
)
from care.model import GrantReason
from care.storage import entry_notes
from care.verification import Verification
from ledger import AppendResult, EntryRequest
from ledger.kinds import Donation, Gift, Grant


class Transfers(Verification):
    """Gifts, donations and pool grants."""

    def gift(
        self, principal: Principal, from_id: str, to_id: str, minutes: int, key: str
    ) -> AppendResult:
        return self._append(self.gift_entry(principal, from_id, to_id, minutes, key))

    def gift_entry(
        self, principal: Principal, from_id: str, to_id: str, minutes: int, key: str
    ) -> EntryRequest:
        """The gift's entry, every rule checked; appending it (``append_entry``) gives it."""
        giver, access = self.accounts.member_access(principal, from_id, "from_member_id")
        if access not in ("self", "proxy"):
            raise Forbidden("only the member or their family proxy gives their minutes")
        receiver = self._bank_member(principal, to_id, field="to_member_id")
        require_active(giver, "from_member_id")
        require_active(receiver, "to_member_id")
        if access == "proxy" and receiver.id == principal.member_id:
            raise Forbidden("a family proxy cannot give the elder's minutes to themselves")
        if not self.policy(giver.bank_id).gifts_allowed:
            raise GiftsDisabled("gifts are switched off in this bank's policy")
        if not self.accounts.are_confirmed_relatives(giver.id, receiver.id):
            raise NotARelative("gifts go only to a confirmed direct relative", field="to_member_id")
        positive(minutes)
        entry_id = f"gift:{opaque(giver.ledger_account)}:{key}"
        by = self._who(entry_id, principal.user_id)
        gift = Gift(entry_id, giver.ledger_account, receiver.ledger_account, minutes, by)
        return gift.to_request()

    def donate(self, principal: Principal, from_id: str, minutes: int, key: str) -> AppendResult:
        return self._append(self.donation_entry(principal, from_id, minutes, key))

    def donation_entry(
        self, principal: Principal, from_id: str, minutes: int, key: str
    ) -> EntryRequest:
        """The donation's entry, every rule checked; appending it (``append_entry``) gives
        it."""
        donor = self.accounts.member_access(principal, from_id, "from_member_id")
        return self._donation(principal, donor, minutes, key)

    def remembered_donation_entry(
        self, principal: Principal, from_id: str, minutes: int, key: str
    ) -> EntryRequest | None:
        """``donation_entry`` when who may act on the donor is remembered (a phone that gave
        or read its balance a moment ago): no I/O, safe on an event loop; else None."""
        donor = self.accounts.remembered_access(principal, from_id)
        return None if donor is None else self._donation(principal, donor, minutes, key)

    def _donation(
        self, principal: Principal, donor_access: tuple[Member, str], minutes: int, key: str
    ) -> EntryRequest:
        donor, access = donor_access
        if access not in ("self", "proxy"):
            raise Forbidden("only the member or their family proxy donates their minutes")
        require_active(donor, "from_member_id")
        positive(minutes)
        entry_id = f"donation:{opaque(donor.ledger_account)}:{key}"
        by = self._who(entry_id, principal.user_id)
        return Donation(entry_id, donor.ledger_account, minutes, by).to_request()

    def grant(
        self,
        principal: Principal,
        elder_id: str,
        minutes: int,
        reason: str,
        key: str,
        reason_code: str = GrantReason.OTHER,
    ) -> AppendResult:
        """Pool minutes to a priority elder. The log says only the reason's code; the free
        text (which names people and conditions) is sealed off the log under the entry id."""
        require_bank_admin(principal)
        elder, _ = self.accounts.member_access(principal, elder_id, "elder_id")
        require_active(elder, "elder_id")
        flags = self.accounts.active_flags(elder.id)
        if not elder.is_elder or not flags:
            raise NotPriorityElder(
                "pool minutes go to elders flagged as priority", field="elder_id"
            )
        text = clean_text(reason, "reason", 500)
        code = parse_enum(GrantReason, reason_code, "reason_code")
        positive(minutes)
        entry_id = f"grant:{opaque(elder.ledger_account)}:{key}"
        by = self._who(entry_id, principal.user_id)
        grant = Grant(entry_id, elder.ledger_account, minutes, code.value, by)
        result = self._append(grant.to_request())
        with self.store.transaction() as tx:
            if (
                tx.first(entry_notes, entry_notes.c.entry_id == entry_id) is None
            ):  # a replay keeps it
                tx.insert(
                    entry_notes,
                    entry_id=entry_id,
                    bank_id=elder.bank_id,
                    note_sealed=self.accounts.protector.seal(text, entry_id, "note"),
                    written_by=principal.user_id or "",
                    written_at=self.clock(),
                )
                if self.events is not None:  # with the note: once, a replay keeps both
                    self.events.member_event(
                        tx,
                        elder.id,
                        "transfer.posted",
                        {
                            "kind": "grant",
                            "entry_id": entry_id,
                            "minutes": minutes,
                            "seq": result.seq,
                            "receipt_url": f"/v1/log/receipt?index={result.seq}",
                        },
                    )
        return result
