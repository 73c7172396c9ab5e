"""Consent links: a member (or their family proxy, for an elder) lets one named partner platform
see exactly the scopes it asked for, until an expiry; the partner knows the member only by a
handle of its own.

The flow: the partner asks (``request``), which makes a pending link and the address of the
page where the person approves; the person logs in and approves or declines; the partner reads
its link and learns the handle. The member, their proxy, their organisation's staff or a bank
admin may revoke a link at any time. A partner key reads a member's data only through an active,
unexpired link of its own that holds the scope (``member_for``): an unknown handle, or another
partner's, is 404; a revoked or expired link, or a scope not granted, is 403.

Handles are keyed hashes of the partner key and the member (``Protector.reference``): the same
member has the same handle at one partner across re-linking, different handles at different
partners, and nothing in a handle leads back to the member id or the ledger account.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from accounts.base import parse_enum
from accounts.errors import Conflict, Forbidden, InvalidInput, NotFound, Words
from accounts.model import Member, PartnerScope, Principal
from accounts.service import AccountsService
from accounts.storage import AccountsStore, Tx, partner_keys, utc
from accounts.tokens import new_id
from care.model import Policy
from ledger import LedgerPort
from ledger.postings import hold_account
from partners.points import Standing, standing, verified_minutes
from partners.storage import partner_links
from partners.webhooks import Outbox

REQUEST_LIFETIME = timedelta(hours=24)  # a request nobody approved in a day lapses
MAX_VALID_DAYS = 366


def _now() -> datetime:
    return datetime.now(UTC)


class LinkStatus(enum.StrEnum):
    PENDING = "pending"  # asked by the partner, not decided yet
    ACTIVE = "active"  # approved; see ``PartnerLink.state`` for expiry
    DECLINED = "declined"
    REVOKED = "revoked"


@dataclass(frozen=True)
class PartnerLink:
    id: str
    bank_id: str
    partner_key_id: str
    partner_name: str
    scopes: frozenset[PartnerScope]
    valid_days: int
    status: LinkStatus
    requested_at: datetime
    member_id: str | None
    handle: str | None
    decided_by: str | None
    decided_at: datetime | None
    expires_at: datetime | None
    revoked_by: str | None
    revoked_at: datetime | None

    def state(self, now: datetime) -> str:
        """The status as of ``now``: an active link past its expiry is ``expired``, a pending
        request nobody decided within a day is ``lapsed``."""
        if self.status is LinkStatus.ACTIVE and self.expires_at and now >= self.expires_at:
            return "expired"
        if self.status is LinkStatus.PENDING and now >= self.requested_at + REQUEST_LIFETIME:
            return "lapsed"
        return str(self.status)


def _link_of_row(r: Any, partner_name: str) -> PartnerLink:
    return PartnerLink(
        id=r.id,
        bank_id=r.bank_id,
        partner_key_id=r.partner_key_id,
        partner_name=partner_name,
        scopes=frozenset(PartnerScope(s) for s in r.scopes.split()),
        valid_days=r.valid_days,
        status=LinkStatus(r.status),
        requested_at=r.requested_at.replace(tzinfo=r.requested_at.tzinfo or UTC),
        member_id=r.member_id,
        handle=r.handle,
        decided_by=r.decided_by,
        decided_at=utc(r.decided_at),
        expires_at=utc(r.expires_at),
        revoked_by=r.revoked_by,
        revoked_at=utc(r.revoked_at),
    )


@dataclass(frozen=True)
class MemberPoints:
    handle: str
    member_id: str  # for the audit trail; the partner is shown the handle only
    available: int
    reserved: int
    standing: Standing


class PartnerLinks:
    """Requests, decisions, revocations and the partner's door to a member."""

    def __init__(
        self,
        store: AccountsStore,
        accounts: AccountsService,
        ledger: LedgerPort,
        policy: Callable[[str], Policy],
        clock: Callable[[], datetime] = _now,
        outbox: Outbox | None = None,
    ) -> None:
        self.store = store
        self.accounts = accounts
        self.ledger = ledger
        self.policy = policy
        self.clock = clock
        self.outbox = outbox

    # ------------------------------------------------------------------ the partner's side

    def request(self, principal: Principal, scopes: Sequence[str], valid_days: int) -> PartnerLink:
        """A pending link asking for ``scopes`` (each one the key holds) for ``valid_days``."""
        if not principal.is_partner:
            raise Forbidden("only a partner key asks for a consent link")
        if not scopes:
            raise InvalidInput("give at least one scope", field="scopes")
        asked = frozenset(parse_enum(PartnerScope, s, "scopes") for s in scopes)
        if not asked <= principal.partner_scopes:
            missing = ", ".join(sorted(asked - principal.partner_scopes))
            raise InvalidInput(
                "this key does not hold the scope %(scope)s", field="scopes", scope=missing
            )
        if not 1 <= valid_days <= MAX_VALID_DAYS:
            raise InvalidInput(
                "valid_days is 1 to %(most)s", field="valid_days", most=MAX_VALID_DAYS
            )
        link_id = new_id()
        with self.store.transaction() as tx:
            tx.insert(
                partner_links,
                id=link_id,
                bank_id=principal.bank_id,
                partner_key_id=principal.partner_key_id,
                scopes=" ".join(sorted(asked)),
                valid_days=valid_days,
                status=LinkStatus.PENDING,
                requested_at=self.clock(),
            )
            return self._load(tx, link_id)

    def partner_link(self, principal: Principal, link_id: str) -> PartnerLink:
        """The partner's own request or link (with the handle once approved)."""
        if not principal.is_partner:
            raise Forbidden("only the partner that asked reads its link this way")
        with self.store.snapshot() as tx:
            link = self._find(tx, link_id)
        if link is None or link.partner_key_id != principal.partner_key_id:
            raise NotFound("no link %(id)s", id=link_id)
        return link

    def partner_links(self, principal: Principal) -> list[PartnerLink]:
        """Every request and link of the calling partner key, newest first."""
        if not principal.is_partner:
            raise Forbidden("only a partner key lists its links")
        with self.store.snapshot() as tx:
            rows = tx.find(
                partner_links,
                partner_links.c.partner_key_id == principal.partner_key_id,
                order=[partner_links.c.requested_at.desc()],
            )
            return [self._with_partner(tx, r) for r in rows]

    def member_for(self, principal: Principal, handle: str, scope: PartnerScope) -> Member:
        """The member behind ``handle`` for this partner, if a live link grants ``scope``."""
        if not principal.is_partner:
            raise Forbidden("only a partner key reads a member by handle")
        with self.store.snapshot() as tx:
            rows = tx.find(
                partner_links,
                partner_links.c.partner_key_id == principal.partner_key_id,
                partner_links.c.handle == handle,
                order=[partner_links.c.decided_at.desc()],
                limit=1,
            )
            link = self._with_partner(tx, rows[0]) if rows else None
        if link is None or link.member_id is None:
            raise NotFound("no member with handle %(handle)s", handle=handle, field="handle")
        state = link.state(self.clock())
        if state != LinkStatus.ACTIVE:
            raise Forbidden("the member's consent link is %(state)s", state=Words(state))
        if scope not in link.scopes or scope not in principal.partner_scopes:
            raise Forbidden("the member did not grant %(scope)s", scope=scope)
        return self.accounts.member(link.member_id)

    def points(self, principal: Principal, handle: str) -> MemberPoints:
        """The member's available and held minutes, verified service as points and star level,
        through a link granting ``read_points``."""
        member = self.member_for(principal, handle, PartnerScope.READ_POINTS)
        held = hold_account(member.ledger_account)
        balances = self.ledger.balances([member.ledger_account, held])
        return MemberPoints(
            handle,
            member.id,
            balances[member.ledger_account],
            balances[held],
            self._standing(member),
        )

    def standing_of(self, principal: Principal, member_id: str) -> Standing:
        """A member's points and star level, for the member, their proxy, staff and admins."""
        self._access(principal, member_id)
        return self._standing(self.accounts.member(member_id))

    def _standing(self, member: Member) -> Standing:
        minutes = verified_minutes(self.ledger, member.ledger_account)
        return standing(self.policy(member.bank_id), minutes)

    # ------------------------------------------------------------------ the person's side

    def pending(self, principal: Principal, link_id: str) -> PartnerLink:
        """A link as the person deciding it sees it: a pending request is readable by anyone
        logged in to the bank (its id is in the address the partner sent them to); a decided
        one only by those related to its member."""
        if principal.is_partner:
            raise Forbidden("a partner key cannot decide a consent link")
        with self.store.snapshot() as tx:
            link = self._find(tx, link_id)
        if link is None or link.bank_id != principal.bank_id:
            raise NotFound("no link %(id)s", id=link_id)
        if link.member_id is None:
            if link.status is LinkStatus.PENDING:
                return link
            raise NotFound("no link %(id)s", id=link_id)
        self.access_through(principal, link.member_id, "no link %(id)s", link_id)
        return link

    def approve(self, principal: Principal, link_id: str, member_id: str | None) -> PartnerLink:
        """The member (``member_id`` omitted or their own) or a family proxy (the elder's id)
        approves exactly the scopes asked, for the days asked."""
        member = self._consenting_member(principal, member_id)
        now = self.clock()
        with self.store.transaction() as tx:
            link = self._decidable(tx, principal, link_id, now)
            handle = self.handle(link.partner_key_id, member.id)
            tx.update(
                partner_links,
                link_id,
                status=LinkStatus.ACTIVE,
                member_id=member.id,
                handle=handle,
                decided_by=principal.user_id,
                decided_at=now,
                expires_at=now + timedelta(days=link.valid_days),
            )
            return self._load(tx, link_id)

    def decline(self, principal: Principal, link_id: str, member_id: str | None) -> PartnerLink:
        member = self._consenting_member(principal, member_id)
        now = self.clock()
        with self.store.transaction() as tx:
            self._decidable(tx, principal, link_id, now)
            tx.update(
                partner_links,
                link_id,
                status=LinkStatus.DECLINED,
                member_id=member.id,
                decided_by=principal.user_id,
                decided_at=now,
            )
            return self._load(tx, link_id)

    def links_of(self, principal: Principal, member_id: str) -> list[PartnerLink]:
        """A member's links, newest first: for the member, their proxy, their organisation's
        staff and bank admins."""
        self._access(principal, member_id)
        with self.store.snapshot() as tx:
            rows = tx.find(
                partner_links,
                partner_links.c.member_id == member_id,
                order=[partner_links.c.requested_at.desc()],
            )
            return [self._with_partner(tx, r) for r in rows]

    def revoke(self, principal: Principal, link_id: str) -> PartnerLink:
        """Ends a link at once: the partner reads nothing more through it."""
        if principal.is_partner:
            raise Forbidden("a partner key cannot revoke a member's consent")
        with self.store.transaction() as tx:
            link = self._find(tx, link_id)
            if link is None or link.bank_id != principal.bank_id or link.member_id is None:
                raise NotFound("no link %(id)s", id=link_id)
            self.access_through(principal, link.member_id, "no link %(id)s", link_id)
            if link.status is not LinkStatus.ACTIVE:
                raise Conflict("the link is %(status)s, not active", status=Words(link.status))
            tx.update(
                partner_links,
                link_id,
                status=LinkStatus.REVOKED,
                revoked_by=principal.user_id,
                revoked_at=self.clock(),
            )
            if self.outbox is not None:
                self.outbox.partner_event(
                    tx,
                    link.partner_key_id,
                    "link.revoked",
                    {"link_id": link.id, "handle": link.handle},
                )
            return self._load(tx, link_id)

    def handle(self, partner_key_id: str, member_id: str) -> str:
        return "mh_" + self.accounts.protector.reference(
            f"partner-handle:{partner_key_id}", member_id
        )

    # ------------------------------------------------------------------ helpers

    def _consenting_member(self, principal: Principal, member_id: str | None) -> Member:
        """Who consents: the caller's own active member record, or an elder they are proxy for.
        Staff and admins decide nothing on a member's behalf here."""
        if principal.is_partner:
            raise Forbidden("a partner key cannot decide a consent link")
        wanted = member_id or principal.acting_member_id
        if wanted is None:
            raise Forbidden("only a member, or a family proxy for an elder, gives consent")
        _, access = self.accounts.member_access(principal, wanted, "member_id")
        if access not in ("self", "proxy"):
            raise Forbidden(
                "only the member, or a family proxy for an elder, gives consent", field="member_id"
            )
        member = self.accounts.member(wanted)
        if access == "self" and principal.acting_member_id != member.id:
            raise Forbidden("your registration is not approved yet", field="member_id")
        return member

    def _decidable(self, tx: Tx, principal: Principal, link_id: str, now: datetime) -> PartnerLink:
        link = self._find(tx, link_id)
        if link is None or link.bank_id != principal.bank_id:
            raise NotFound("no link %(id)s", id=link_id)
        state = link.state(now)
        if state != LinkStatus.PENDING:
            raise Conflict("the request is %(status)s, not pending", status=Words(state))
        return link

    def access(self, principal: Principal, member_id: str) -> str:
        """How the caller relates to the member (self, proxy, staff, admin); a partner key
        finds no member by id (404), anyone else unrelated is refused."""
        return self._access(principal, member_id)

    def access_through(
        self, principal: Principal, member_id: str, missing: str, object_id: str
    ) -> str:
        """``_access`` for an object read by its own id (a link, an exchange): a caller who
        may not see its member finds no such object (``missing``, a message naming
        ``object_id``), and never learns the
        member's id, for which a partner only ever holds a handle."""
        try:
            return self._access(principal, member_id)
        except NotFound:
            raise NotFound(missing, id=object_id) from None

    def _access(self, principal: Principal, member_id: str) -> str:
        if principal.is_partner:
            raise NotFound("no member %(id)s", id=member_id)
        _, access = self.accounts.member_access(principal, member_id)
        if access not in ("self", "proxy", "staff", "admin"):
            raise Forbidden("only the member, their proxy, staff or an admin see their links")
        return access

    def _find(self, tx: Tx, link_id: str) -> PartnerLink | None:
        row = tx.get(partner_links, link_id) if isinstance(link_id, str) else None
        return self._with_partner(tx, row) if row is not None else None

    def _load(self, tx: Tx, link_id: str) -> PartnerLink:
        link = self._find(tx, link_id)
        assert link is not None
        return link

    @staticmethod
    def _with_partner(tx: Tx, row: Any) -> PartnerLink:
        key = tx.get(partner_keys, row.partner_key_id)
        return _link_of_row(row, key.name if key is not None else "")
