"""Exchanges: a partner platform spends a member's minutes on a service it delivers (a meal from
the district platform's provider), with the member's confirmation.

The partner asks through a consent link granting ``request_exchange`` (``request``): a pending
exchange naming the member by handle, the minutes, the partner's own reference (asking again
with the same reference returns the same exchange) and a description. The member, or their
family proxy for an elder, sees it in Timebank and confirms or declines it; the partner may
cancel it while it is pending; nobody deciding within ``LIFETIME`` leaves it ``expired``.

Confirming first claims the exchange (pending → confirming, so a cancellation or a second
confirmation racing it loses), then appends an ``exchange`` entry moving the minutes from the
member's account to the partner's clearing account (``ledger.postings``), then notes the entry
on the exchange together with the ``exchange.confirmed`` event. The ledger's balance check of
the moment decides whether the minutes are there: racing confirmations never overdraw, and one
refused for want of minutes goes back to pending. The entry id is derived from the exchange, so
a confirmation interrupted after its claim posts at most once when it is confirmed again. The
clearing account pays out nothing: minutes never turn into money.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from accounts.errors import Conflict, Forbidden, InvalidInput, NotFound
from accounts.model import Member, PartnerScope, Principal
from accounts.storage import Tx, utc
from accounts.tokens import new_id
from care.errors import InsufficientBalance
from ledger import LedgerPort
from ledger.errors import EntryError
from ledger.errors import InsufficientBalance as LedgerInsufficient
from ledger.kinds import Exchange as ExchangeEntry
from partners.links import LinkStatus, PartnerLinks
from partners.storage import move_exchange, partner_exchanges, partner_links

LIFETIME = timedelta(hours=48)  # a pending exchange nobody decided in two days expires
MAX_MINUTES = 100_000
REFERENCE = re.compile(r"^[A-Za-z0-9._:/-]{1,64}\Z")
# The reference goes into the public log: a mainland mobile number or a resident ID number
# in it would be personal data there for ever (docs/privacy.md).
PERSONAL_NUMBER = re.compile(r"(?<!\d)(1[3-9]\d{9}|\d{17}[\dXx])(?![\dXx])")
# ... also in the groups people write them in (``139-1234-5678``, ``130.5555.4444``,
# ``320102-19800101-123X``); other digits split by separators (``inv/17/202605171``) are not.
GROUPED_NUMBER = re.compile(
    r"(?<![\dXx])(1[3-9]\d[._:/-]\d{4}[._:/-]\d{4}|\d{6}[._:/-]\d{8}[._:/-]\d{3}[\dXx])(?![\dXx])"
)


class ExchangeStatus(enum.StrEnum):
    PENDING = "pending"
    CONFIRMING = "confirming"  # claimed by a confirmation, its entry being appended
    CONFIRMED = "confirmed"
    DECLINED = "declined"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Exchange:
    id: str
    bank_id: str
    partner_key_id: str
    partner_name: str
    link_id: str
    member_id: str
    handle: str
    reference: str
    description: str
    minutes: int
    status: ExchangeStatus
    requested_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    entry_id: str | None
    seq: int | None

    def state(self, now: datetime) -> str:
        """The status as of ``now``: a pending exchange past its expiry is ``expired``."""
        if self.status is ExchangeStatus.PENDING and now >= self.expires_at:
            return "expired"
        return str(self.status)


def _exchange(r: Any, partner_name: str) -> Exchange:
    requested, expires = utc(r.requested_at), utc(r.expires_at)
    assert requested is not None
    assert expires is not None
    return Exchange(
        r.id,
        r.bank_id,
        r.partner_key_id,
        partner_name,
        r.link_id,
        r.member_id,
        r.handle,
        r.reference,
        r.description,
        r.minutes,
        ExchangeStatus(r.status),
        requested,
        expires,
        utc(r.decided_at),
        r.entry_id,
        r.seq,
    )


class Exchanges:
    """The partner's requests and the member's decisions."""

    def __init__(self, links: PartnerLinks, ledger: LedgerPort) -> None:
        self.links = links
        self.store = links.store
        self.accounts = links.accounts
        self.ledger = ledger

    @property
    def clock(self) -> Callable[[], datetime]:
        return self.links.clock

    # ------------------------------------------------------------------ the partner's side

    def request(
        self, principal: Principal, handle: str, minutes: int, reference: str, description: str
    ) -> tuple[Exchange, bool]:
        """A pending exchange (and True), or the one already asked with ``reference`` (and
        False) when it asked the same; other content under a used reference is a conflict."""
        member = self.links.member_for(principal, handle, PartnerScope.REQUEST_EXCHANGE)
        if (
            not isinstance(minutes, int)
            or isinstance(minutes, bool)
            or not 1 <= minutes <= MAX_MINUTES
        ):
            raise InvalidInput(
                "minutes is a whole number from 1 to %(most)s", field="minutes", most=MAX_MINUTES
            )
        if not isinstance(reference, str) or not REFERENCE.match(reference):
            raise InvalidInput(
                "reference is 1 to 64 letters, digits or . _ : / -", field="reference"
            )
        if PERSONAL_NUMBER.search(reference) or GROUPED_NUMBER.search(reference):
            raise InvalidInput(
                "reference looks like a phone or ID number; the public ledger carries it: "
                "use your own order number",
                field="reference",
            )
        text = description.strip() if isinstance(description, str) else ""
        if not 1 <= len(text) <= 300 or any(ord(c) < 32 for c in text):
            raise InvalidInput("describe the service in 1 to 300 characters", field="description")
        now = self.clock()
        with self.store.transaction() as tx:
            existing = tx.first(
                partner_exchanges,
                partner_exchanges.c.partner_key_id == principal.partner_key_id,
                partner_exchanges.c.reference == reference,
            )
            if existing is not None:
                if (existing.handle, existing.minutes, existing.description) != (
                    handle,
                    minutes,
                    text,
                ):
                    raise Conflict(
                        "reference %(reference)s was used for another exchange",
                        field="reference",
                        reference=reference,
                    )
                return self._with_partner(tx, existing), False
            link = self._live_link(tx, principal.partner_key_id or "", member)
            exchange_id = new_id()
            tx.insert(
                partner_exchanges,
                id=exchange_id,
                bank_id=member.bank_id,
                partner_key_id=principal.partner_key_id,
                link_id=link,
                member_id=member.id,
                handle=handle,
                reference=reference,
                description=text,
                minutes=minutes,
                status=ExchangeStatus.PENDING,
                requested_at=now,
                expires_at=now + LIFETIME,
            )
            return self._load(tx, exchange_id), True

    def partner_exchange(self, principal: Principal, exchange_id: str) -> Exchange:
        if not principal.is_partner:
            raise Forbidden("only the partner that asked reads its exchange this way")
        with self.store.snapshot() as tx:
            exchange = self._find(tx, exchange_id)
        if exchange is None or exchange.partner_key_id != principal.partner_key_id:
            raise NotFound("no exchange %(id)s", id=exchange_id)
        return exchange

    def cancel(self, principal: Principal, exchange_id: str) -> Exchange:
        """The partner withdraws a pending exchange: nothing is posted."""
        exchange = self.partner_exchange(principal, exchange_id)
        return self._close(exchange, status=ExchangeStatus.CANCELLED, decided_at=self.clock())

    # ------------------------------------------------------------------ the member's side

    def exchanges_of(self, principal: Principal, member_id: str) -> list[Exchange]:
        """A member's exchanges, newest first: for the member, their proxy, staff and admins."""
        self.links._access(principal, member_id)
        with self.store.snapshot() as tx:
            rows = tx.find(
                partner_exchanges,
                partner_exchanges.c.member_id == member_id,
                order=[partner_exchanges.c.requested_at.desc()],
            )
            return [self._with_partner(tx, r) for r in rows]

    def exchange(self, principal: Principal, exchange_id: str) -> Exchange:
        """One exchange as the people on the member's side see it."""
        if principal.is_partner:
            raise Forbidden("a partner key reads its exchanges under /v1/partner")
        with self.store.snapshot() as tx:
            exchange = self._find(tx, exchange_id)
        if exchange is None or exchange.bank_id != principal.bank_id:
            raise NotFound("no exchange %(id)s", id=exchange_id)
        self.links.access_through(principal, exchange.member_id, "no exchange %(id)s", exchange_id)
        return exchange

    def confirm(self, principal: Principal, exchange_id: str) -> Exchange:
        """The member or their family proxy confirms: the minutes move to the partner's clearing
        account, once."""
        exchange = self._deciding(principal, exchange_id)
        if exchange.status is not ExchangeStatus.CONFIRMING:
            self._require_pending(exchange)
            with self.store.transaction() as tx:
                link = tx.get(partner_links, exchange.link_id)
                if link is None or link.status != LinkStatus.ACTIVE:
                    raise Conflict("the consent link of this exchange is no longer active")
                if not move_exchange(
                    tx, exchange.id, ExchangeStatus.PENDING, status=ExchangeStatus.CONFIRMING
                ):
                    now_status = self._load(tx, exchange.id).status
                    raise Conflict("the exchange is %(state)s, not pending", state=now_status)
        member = self.accounts.member(exchange.member_id)
        entry_id = "exchange:" + self.accounts.protector.reference("exchange", exchange.id)
        request = ExchangeEntry(
            id=entry_id,
            member=member.ledger_account,
            partner=exchange.partner_key_id,
            minutes=exchange.minutes,
            reference=exchange.reference,
            by=self.accounts.protector.pseudonym(entry_id, principal.user_id or ""),
        ).to_request()
        try:
            result = self.ledger.append(request)
        except (LedgerInsufficient, EntryError) as exc:
            with self.store.transaction() as tx:  # not posted: back to pending, to try again
                move_exchange(
                    tx, exchange.id, ExchangeStatus.CONFIRMING, status=ExchangeStatus.PENDING
                )
            if isinstance(exc, LedgerInsufficient):
                raise InsufficientBalance(
                    "not enough minutes: %(available)s available, %(needed)s needed",
                    field="minutes",
                    available=exc.balance,
                    needed=-exc.change,
                ) from exc
            raise Conflict(exc.template, field=exc.field, **exc.values) from exc
        with self.store.transaction() as tx:
            noted = move_exchange(
                tx,
                exchange.id,
                ExchangeStatus.CONFIRMING,
                status=ExchangeStatus.CONFIRMED,
                decided_by=principal.user_id,
                decided_at=self.clock(),
                entry_id=entry_id,
                seq=result.seq,
            )
            if noted and self.links.outbox is not None:
                self.links.outbox.partner_event(
                    tx,
                    exchange.partner_key_id,
                    "exchange.confirmed",
                    {
                        "exchange_id": exchange.id,
                        "reference": exchange.reference,
                        "handle": exchange.handle,
                        "minutes": exchange.minutes,
                        "seq": result.seq,
                        "receipt_url": f"/v1/log/receipt?index={result.seq}",
                    },
                )
            return self._load(tx, exchange.id)

    def decline(self, principal: Principal, exchange_id: str) -> Exchange:
        exchange = self._deciding(principal, exchange_id)
        return self._close(
            exchange,
            status=ExchangeStatus.DECLINED,
            decided_by=principal.user_id,
            decided_at=self.clock(),
        )

    def _close(self, exchange: Exchange, **values: Any) -> Exchange:
        """End a pending exchange without posting anything (cancelled or declined), only if it
        is still pending when the row is written."""
        self._require_pending(exchange)
        with self.store.transaction() as tx:
            if not move_exchange(tx, exchange.id, ExchangeStatus.PENDING, **values):
                raise Conflict(
                    "the exchange is %(state)s, not pending",
                    state=self._load(tx, exchange.id).status,
                )
            return self._load(tx, exchange.id)

    # ------------------------------------------------------------------ helpers

    def _deciding(self, principal: Principal, exchange_id: str) -> Exchange:
        """The exchange, if the caller is its member or their family proxy."""
        exchange = self.exchange(principal, exchange_id)
        member: Member = self.accounts.member(exchange.member_id)
        _, access = self.accounts.member_access(principal, member.id)
        if access == "self" and principal.acting_member_id == member.id:
            return exchange
        if access == "proxy":
            return exchange
        raise Forbidden("only the member, or a family proxy for an elder, decides an exchange")

    def _require_pending(self, exchange: Exchange) -> None:
        state = exchange.state(self.clock())
        if state != ExchangeStatus.PENDING:
            raise Conflict("the exchange is %(state)s, not pending", state=state)

    def _live_link(self, tx: Tx, partner_key_id: str, member: Member) -> str:
        now = self.clock()
        for row in tx.find(
            partner_links,
            partner_links.c.partner_key_id == partner_key_id,
            partner_links.c.member_id == member.id,
            partner_links.c.status == LinkStatus.ACTIVE,
        ):
            expires = utc(row.expires_at)
            if PartnerScope.REQUEST_EXCHANGE in row.scopes.split() and (
                expires is None or now < expires
            ):
                return str(row.id)
        raise Forbidden("the member's consent link does not grant request_exchange")

    def _find(self, tx: Tx, exchange_id: str) -> Exchange | None:
        row = tx.get(partner_exchanges, exchange_id) if isinstance(exchange_id, str) else None
        return self._with_partner(tx, row) if row is not None else None

    def _load(self, tx: Tx, exchange_id: str) -> Exchange:
        exchange = self._find(tx, exchange_id)
        assert exchange is not None
        return exchange

    @staticmethod
    def _with_partner(tx: Tx, row: Any) -> Exchange:
        link = PartnerLinks._with_partner(tx, tx.get(partner_links, row.link_id))
        return _exchange(row, link.partner_name)
