"""Signed statements and service certificates (志愿服务证明) of a member, for the member, their
proxy, their organisation's staff and bank admins, and for a partner through a consent link
granting ``read_statement``. The format and its offline check are ``audit.statement``; this
module gathers the entries, their receipts (one checkpoint for all) and signs with the bank's
statement key. Nothing is written to the public log: the documents are private to the member
and whoever they hand them to.
"""

from __future__ import annotations

import base64
import enum
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from accounts.errors import Forbidden, InvalidInput
from accounts.model import Member, PartnerScope, Principal
from accounts.protection import mask_name
from accounts.storage import banks, organisations
from audit.statement import (
    CERTIFICATE,
    SERVICE_KINDS,
    STAR_NAMES,
    STATEMENT,
    hours_text,
    own_accounts,
    period_bounds,
    signed_bytes,
    star_level,
)
from ledger import Entry, LedgerPort
from ledger.note import Signer, TlogProof
from partners.links import PartnerLinks

PAGE = 200
MAX_ENTRIES = 2000  # a longer statement is asked for in shorter periods
NICKNAME_MAX = 20
DAY = re.compile(r"^\d{4}-\d\d-\d\d\Z")


class NameShown(enum.StrEnum):
    MASKED = "masked"  # the default: 王*明
    FULL = "full"  # the member or their proxy only
    NICKNAME = "nickname"  # what the member typed in ``nickname``


@dataclass(frozen=True)
class SignedDocument:
    member_id: str  # for the audit trail; not in the document
    document: dict[str, Any]


def _now() -> datetime:
    return datetime.now(UTC)


def _log_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class SignedDocuments:
    """Issues statements and certificates signed with ``signer`` (the bank's statement key)."""

    def __init__(
        self,
        links: PartnerLinks,
        ledger: LedgerPort,
        signer: Signer,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.links = links
        self.accounts = links.accounts
        self.ledger = ledger
        self.signer = signer
        self.clock = clock

    @property
    def key(self) -> str:
        """The statement key's verifier text, published at ``GET /v1/statements/key``."""
        return self.signer.verifier.to_text()

    # ------------------------------------------------------------------ who asks

    def statement(
        self, principal: Principal, member_id: str, start: str | None, end: str | None
    ) -> SignedDocument:
        self.links.access(principal, member_id)
        member = self.accounts.member(member_id)
        return SignedDocument(member.id, self._statement(member, start, end))

    def certificate(
        self,
        principal: Principal,
        member_id: str,
        start: str | None,
        end: str | None,
        name: str = NameShown.MASKED,
        nickname: str | None = None,
    ) -> SignedDocument:
        access = self.links.access(principal, member_id)
        shown = _name_shown(name)
        if shown is NameShown.FULL and access not in ("self", "proxy"):
            raise Forbidden(
                "only the member, or their family proxy, shows the full name", field="name"
            )
        member = self.accounts.member(member_id)
        return SignedDocument(member.id, self._certificate(member, start, end, shown, nickname))

    def partner_statement(
        self, principal: Principal, handle: str, start: str | None, end: str | None
    ) -> SignedDocument:
        member = self.links.member_for(principal, handle, PartnerScope.READ_STATEMENT)
        return SignedDocument(member.id, self._statement(member, start, end))

    def partner_certificate(
        self, principal: Principal, handle: str, start: str | None, end: str | None
    ) -> SignedDocument:
        """A partner sees the name masked: only the member chooses to show more."""
        member = self.links.member_for(principal, handle, PartnerScope.READ_STATEMENT)
        return SignedDocument(
            member.id, self._certificate(member, start, end, NameShown.MASKED, None)
        )

    # ------------------------------------------------------------------ the documents

    def _period(self, member: Member, start: str | None, end: str | None) -> tuple[date, date]:
        """The period's days (UTC): from the member's joining to today unless given."""
        today = self.clock().astimezone(UTC).date()
        last = _day(end, "to") if end else today
        first = _day(start, "from") if start else member.created_at.astimezone(UTC).date()
        if last > today:
            raise InvalidInput("the period cannot end after today (UTC)", field="to")
        if first > last:
            raise InvalidInput("the period starts after it ends", field="from")
        return first, last

    def _statement(self, member: Member, start: str | None, end: str | None) -> dict[str, Any]:
        first, last = self._period(member, start, end)
        low, high = period_bounds(first.isoformat(), last.isoformat())
        own = own_accounts(member.ledger_account)
        document = self._head(STATEMENT, member, first, last)
        entries, document["entries"], document["checkpoint"] = self._with_receipts(
            self._entries(list(own), low, high), own
        )
        minutes = [_minutes(e, own) for e in entries]
        document["totals"] = {
            "entries": len(entries),
            "credited": sum(m for m in minutes if m > 0),
            "debited": -sum(m for m in minutes if m < 0),
            "net": sum(minutes),
        }
        return self._sign(document)

    def _certificate(
        self,
        member: Member,
        start: str | None,
        end: str | None,
        shown: NameShown,
        nickname: str | None,
    ) -> dict[str, Any]:
        first, last = self._period(member, start, end)
        low, high = period_bounds(first.isoformat(), last.isoformat())
        account = member.ledger_account
        own = own_accounts(account)
        service = [e for e in self._entries([account], "", high) if self._is_service(e)]
        entries, items, checkpoint = self._with_receipts(service, own)
        cumulative = sum(_minutes(e, (account,)) for e in entries)
        in_period = sum(_minutes(e, (account,)) for e in entries if e.time >= low)
        policy = self.links.policy(member.bank_id)
        thresholds = list(policy.star_thresholds) if policy.star_levels else None
        level = star_level(cumulative, thresholds) if thresholds is not None else None
        document = self._head(CERTIFICATE, member, first, last)
        document["member"] = {
            "name": self._name(member, shown, nickname),
            "name_shown": str(shown),
            "organisation": self._organisation(member),
        }
        document["entries"], document["checkpoint"] = items, checkpoint
        document["service"] = {
            "cumulative_minutes": cumulative,
            "cumulative_hours": hours_text(cumulative),
            "period_minutes": in_period,
            "period_hours": hours_text(in_period),
            "star_hours": thresholds,
            "star_level": level,
            "star_name": STAR_NAMES[level - 1] if level else None,
        }
        return self._sign(document)

    def _head(self, kind: str, member: Member, first: date, last: date) -> dict[str, Any]:
        with self.accounts.store.snapshot() as tx:
            bank = tx.get(banks, member.bank_id)
        return {
            "format": kind,
            "bank": {"id": member.bank_id, "name": bank.name if bank is not None else ""},
            "issued_at": _log_time(self.clock()),
            "period": {"from": first.isoformat(), "to": last.isoformat()},
            "account": member.ledger_account,
        }

    def _entries(self, accounts: list[str], low: str, high: str) -> list[Entry]:
        """The entries moving ``accounts`` with ``low <= time < high``, oldest first."""
        found: list[Entry] = []
        before: int | None = None
        while True:
            page = self.ledger.history(accounts, PAGE, before)
            for entry in page:
                if entry.time < low:
                    return found[::-1]
                if entry.time < high:
                    found.append(entry)
                    if len(found) > MAX_ENTRIES:
                        raise InvalidInput(
                            "more than %(count)s entries in the period: ask for a shorter one",
                            field="from",
                            count=MAX_ENTRIES,
                        )
            if len(page) < PAGE:
                return found[::-1]
            before = page[-1].seq

    def _is_service(self, entry: Entry) -> bool:
        kind = entry.request.kind
        if kind == "reversal":
            undone = self.ledger.entry(int(entry.request.body.get("reverses", -1)))
            return undone is not None and undone.request.kind in SERVICE_KINDS
        return kind in SERVICE_KINDS

    def _with_receipts(
        self, entries: list[Entry], own: tuple[str, ...]
    ) -> tuple[list[Entry], list[dict[str, Any]], str]:
        """Each entry with its leaf and inclusion proof, all in one checkpoint: the entries
        that checkpoint covers (one appended a moment ago waits for the next statement)."""
        proofs = {
            proof.index: proof
            for proof in map(TlogProof.parse, self.ledger.receipts([e.seq for e in entries]))
        }
        covered = [e for e in entries if e.seq in proofs]
        items = []
        for entry in covered:
            proof = proofs[entry.seq]
            assert proof.extra is not None
            items.append(
                {
                    "seq": entry.seq,
                    "id": entry.request.id,
                    "kind": entry.request.kind,
                    "time": entry.time,
                    "minutes": _minutes(entry, own),
                    "leaf": base64.b64encode(proof.extra).decode(),
                    "proof": [base64.b64encode(h).decode() for h in proof.hashes],
                }
            )
        checkpoint = proofs[covered[0].seq].checkpoint if covered else ""
        return covered, items, checkpoint

    def _sign(self, document: dict[str, Any]) -> dict[str, Any]:
        signature = self.signer.sign(signed_bytes(document))
        document["signature"] = {
            "key": self.key,
            "value": base64.b64encode(signature).decode(),
        }
        return document

    def _name(self, member: Member, shown: NameShown, nickname: str | None) -> str:
        if shown is NameShown.NICKNAME:
            text = (nickname or "").strip()
            if not 1 <= len(text) <= NICKNAME_MAX or not text.isprintable():
                raise InvalidInput(
                    "give a nickname of 1 to %(count)s printable characters",
                    field="nickname",
                    count=NICKNAME_MAX,
                )
            return text
        with self.accounts.store.snapshot() as tx:
            row = tx.personal(member.id)
        full = row.name if row is not None else ""
        return full if shown is NameShown.FULL else mask_name(full) or ""

    def _organisation(self, member: Member) -> str | None:
        if member.org_id is None:
            return None
        with self.accounts.store.snapshot() as tx:
            row = tx.get(organisations, member.org_id)
        return row.name if row is not None else None


def _day(text: str, field: str) -> date:
    try:
        if DAY.match(text):
            return date.fromisoformat(text)
    except ValueError:
        pass
    raise InvalidInput("%(field)s is a day, YYYY-MM-DD", field=field)


def _name_shown(value: str) -> NameShown:
    try:
        return NameShown(value)
    except ValueError:
        raise InvalidInput("name is masked, full or nickname", field="name") from None


def _minutes(entry: Entry, accounts: tuple[str, ...]) -> int:
    return sum(p.minutes for p in entry.request.postings if p.account in accounts)
