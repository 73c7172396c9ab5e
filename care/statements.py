"""What a member sees of their stored time: balance (available and held), history with
counterparts masked, and receipts that prove an entry is in the signed log."""

from __future__ import annotations

from dataclasses import dataclass

from accounts.errors import Forbidden, NotFound
from accounts.model import Member, Principal, Role
from care.reversals import Reversals
from ledger.postings import POOL, hold_account, system_account


@dataclass(frozen=True)
class Balance:
    member_id: str
    available: int
    reserved: int


@dataclass(frozen=True)
class HistoryItem:
    seq: int
    time: str
    kind: str
    minutes: int  # change to available + reserved of this member
    held: int  # change to reserved alone: a hold (0 in ``minutes``) reads as what it holds
    counterpart: str | None  # another member (masked id) or a system account role
    service: str | None
    record: str | None


class Statements(Reversals):
    """Balances, history and receipts."""

    def balance(self, principal: Principal, member_id: str, max_age: float = 0.0) -> Balance:
        """``max_age`` > 0: minutes possibly read that many seconds ago, never from before an
        append of this process (``ledger.log.Log.balances``)."""
        member = self._readable_member(principal, member_id)
        accounts = [member.ledger_account, hold_account(member.ledger_account)]
        return _balance(member, self.ledger.balances(accounts, max_age))

    def remembered_balance(
        self, principal: Principal, member_id: str, max_age: float
    ) -> Balance | None:
        """What ``balance(principal, member_id, max_age)`` answers, when the caller's access
        and the minutes are both in memory; None (ask ``balance``) otherwise. No I/O."""
        member = self._remembered_readable_member(principal, member_id)
        if member is None:
            return None
        accounts = [member.ledger_account, hold_account(member.ledger_account)]
        minutes = self.ledger.cached_balances(accounts, max_age)
        return None if minutes is None else _balance(member, minutes)

    def history(
        self, principal: Principal, member_id: str, limit: int, before: int | None
    ) -> list[HistoryItem]:
        if principal.is_partner:
            raise Forbidden("partner keys read balances only")
        member = self._readable_member(principal, member_id)
        hold = hold_account(member.ledger_account)
        own = {member.ledger_account, hold}
        items = []
        for entry in self.ledger.history(sorted(own), limit, before):
            change = sum(p.minutes for p in entry.request.postings if p.account in own)
            others = [p.account for p in entry.request.postings if p.account not in own]
            counterpart = None
            if others:
                role = others[0].split(":")[1]
                counterpart = f"member …{others[0][-4:]}" if role == "member" else role
            body = entry.request.body
            items.append(
                HistoryItem(
                    entry.seq,
                    entry.time,
                    entry.request.kind,
                    change,
                    sum(p.minutes for p in entry.request.postings if p.account == hold),
                    counterpart,
                    str(body["service"]) if "service" in body else None,
                    str(body["record"]) if "record" in body else None,
                )
            )
        return items

    def pool_balance(self, principal: Principal) -> int:
        """Minutes in the bank's pool (公益池): what grants to priority elders can draw on.
        For bank administrators, who grant from it, and auditors."""
        if not (principal.is_bank_admin or principal.has(Role.AUDITOR)):
            raise Forbidden("the pool's balance is for bank administrators and auditors")
        pool = system_account(principal.bank_id, POOL)
        return self.ledger.balances([pool])[pool]

    def receipt(self, principal: Principal, member_id: str, seq: int) -> str:
        if principal.is_partner:
            raise Forbidden("partner keys read balances only")
        member = self._readable_member(principal, member_id)
        entry = self.ledger.entry(seq) if seq >= 0 else None
        own = {member.ledger_account, hold_account(member.ledger_account)}
        if entry is None or not any(p.account in own for p in entry.request.postings):
            raise NotFound("no entry %(seq)s for this member", seq=seq, field="seq")
        return self.ledger.receipt(seq)


def _balance(member: Member, minutes: dict[str, int]) -> Balance:
    return Balance(
        member.id, minutes[member.ledger_account], minutes[hold_account(member.ledger_account)]
    )
