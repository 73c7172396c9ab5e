"""Around a member: priority flags (独居, 失能, …) with notes, relatives (declared, confirmed
by staff), and proxies who act for an elder."""

from __future__ import annotations

from typing import Any

from accounts.base import clean_text, parse_enum
from accounts.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    Words,
)
from accounts.members import Members
from accounts.model import (
    Flag,
    MemberStatus,
    Principal,
    PriorityFlag,
    ProxyCandidate,
    ProxyGrant,
    Relation,
    RelativeLink,
    RelativeStatus,
    Role,
)
from accounts.model import Member as MemberRecord
from accounts.rows import flag_of_row, member_of_row, proxy_of_row, relative_of_row
from accounts.storage import (
    Tx,
    member_flags,
    members,
    relatives,
    role_grants,
    users,
)
from accounts.tokens import new_id


class Relations(Members):
    """Flags, relatives and proxies."""

    def set_flag(self, principal: Principal, member_id: str, flag: str, note: str | None) -> Flag:
        priority = parse_enum(PriorityFlag, flag, "flag")
        with self.store.transaction() as tx:
            row = self._visible_member_row(tx, principal, member_id)
            if self._access(principal, row) not in ("staff", "admin"):
                raise Forbidden("only staff of the member's organisation or a bank admin set flags")
            live = tx.first(
                member_flags,
                member_flags.c.member_id == member_id,
                member_flags.c.flag == str(priority),
                member_flags.c.cleared_at.is_(None),
            )
            if live is not None:
                raise Conflict("flag %(flag)s is already set", field="flag", flag=Words(priority))
            record = Flag(
                new_id(),
                member_id,
                priority,
                clean_text(note, "note", 500) if note else None,
                principal.user_id or "",
                self.clock(),
            )
            tx.insert(
                member_flags,
                id=record.id,
                member_id=member_id,
                flag=str(priority),
                note=record.note,
                set_by=record.set_by,
                set_at=record.set_at,
            )
        return record

    def clear_flag(self, principal: Principal, member_id: str, flag_id: str) -> Flag:
        with self.store.transaction() as tx:
            row = self._visible_member_row(tx, principal, member_id)
            if self._access(principal, row) not in ("staff", "admin"):
                raise Forbidden(
                    "only staff of the member's organisation or a bank admin clear flags"
                )
            flag_row = tx.get(member_flags, flag_id)
            if flag_row is None or flag_row.member_id != member_id:
                raise NotFound("no flag %(id)s", id=flag_id)
            if flag_row.cleared_at is not None:
                raise Conflict("flag is already cleared")
            tx.update(member_flags, flag_id, cleared_by=principal.user_id, cleared_at=self.clock())
            return flag_of_row(tx.get(member_flags, flag_id))

    def active_flags(self, member_id: str) -> set[PriorityFlag]:
        with self.store.snapshot() as tx:
            rows = tx.find(
                member_flags,
                member_flags.c.member_id == member_id,
                member_flags.c.cleared_at.is_(None),
            )
        return {PriorityFlag(r.flag) for r in rows}

    def declare_relative(
        self, principal: Principal, member_id: str, relative_id: str, relation: str
    ) -> RelativeLink:
        kind = parse_enum(Relation, relation, "relation")
        with self.store.transaction() as tx:
            row = self._visible_member_row(tx, principal, member_id)
            if self._access(principal, row) not in ("self", "proxy", "staff", "admin"):
                raise Forbidden("a member, their family proxy or staff declares relatives")
            other = tx.get(members, relative_id) if isinstance(relative_id, str) else None
            if other is None or other.bank_id != row.bank_id:
                raise NotFound("no member %(id)s in this bank", id=relative_id, field="relative_id")
            if other.id == row.id:
                raise InvalidInput("a member cannot be their own relative", field="relative_id")
            if tx.first(
                relatives,
                relatives.c.member_id == member_id,
                relatives.c.relative_id == relative_id,
            ):
                raise Conflict("this relation is already declared", field="relative_id")
            link = RelativeLink(
                new_id(),
                member_id,
                relative_id,
                kind,
                RelativeStatus.PENDING,
                principal.user_id or "",
                self.clock(),
            )
            tx.insert(
                relatives,
                id=link.id,
                member_id=member_id,
                relative_id=relative_id,
                relation=str(kind),
                status=str(link.status),
                declared_by=link.declared_by,
                declared_at=link.declared_at,
            )
        return link

    def decide_relative(self, principal: Principal, link_id: str, confirm: bool) -> RelativeLink:
        with self.store.transaction() as tx:
            link = tx.get(relatives, link_id)
            if link is None:
                raise NotFound("no relation %(id)s", id=link_id)
            a = tx.get(members, link.member_id)
            b = tx.get(members, link.relative_id)
            assert a is not None
            assert b is not None
            if a.bank_id != principal.bank_id:
                raise NotFound("no relation %(id)s", id=link_id)
            staff_of = {self._access(principal, a), self._access(principal, b)}
            if not staff_of & {"staff", "admin"}:
                if staff_of & {"self", "proxy"}:
                    raise Forbidden("relations are confirmed by organisation staff")
                raise NotFound("no relation %(id)s", id=link_id)
            if link.status != RelativeStatus.PENDING:
                raise Conflict("relation is already %(status)s", status=Words(link.status))
            status = RelativeStatus.CONFIRMED if confirm else RelativeStatus.REJECTED
            tx.update(
                relatives,
                link_id,
                status=str(status),
                decided_by=principal.user_id,
                decided_at=self.clock(),
            )
            return relative_of_row(tx.get(relatives, link_id))

    def list_relatives(self, principal: Principal, member_id: str) -> list[RelativeLink]:
        with self.store.snapshot() as tx:
            row = self._visible_member_row(tx, principal, member_id)
            if self._access(principal, row) == "auditor":
                raise Forbidden("auditors do not read family relations")
            rows = tx.find(
                relatives,
                (relatives.c.member_id == member_id) | (relatives.c.relative_id == member_id),
                order=[relatives.c.declared_at],
            )
        return [relative_of_row(r) for r in rows]

    def are_confirmed_relatives(self, member_a: str, member_b: str) -> bool:
        with self.store.snapshot() as tx:
            return self._confirmed_link(tx, member_a, member_b)

    def confirmed_relative_ids(self, member_id: str) -> list[str]:
        """The members confirmed (by staff) as relatives of ``member_id``, either way round:
        for checks by other services (federation.identity), without access checks."""
        with self.store.snapshot() as tx:
            rows = tx.find(
                relatives,
                relatives.c.status == str(RelativeStatus.CONFIRMED),
                (relatives.c.member_id == member_id) | (relatives.c.relative_id == member_id),
            )
        return sorted({r.relative_id if r.member_id == member_id else r.member_id for r in rows})

    def identifiers(self, member_id: str) -> tuple[str | None, str | None]:
        """A member's normalised (ID number, phone), unsealed for a machine check that lets
        only salted slow hashes of them leave the bank (federation.identity); never shown."""
        with self.store.snapshot() as tx:
            row = tx.personal(member_id)
        if row is None:
            return None, None
        found = [
            self.protector.open(sealed, member_id, name) if sealed is not None else None
            for name, sealed in (("id_number", row.id_number_sealed), ("phone", row.phone_sealed))
        ]
        return found[0], found[1]

    def member_by_account(self, ledger_account: str) -> MemberRecord | None:
        """The member whose ledger account this is, or None (a pool, a due_to account)."""
        with self.store.snapshot() as tx:
            row = tx.first(members, members.c.ledger_account == ledger_account)
        return None if row is None else member_of_row(row)

    def grant_proxy(self, principal: Principal, member_id: str, username: str) -> None:
        """Staff let a family member act for an elder who cannot use a phone."""
        with self.store.transaction() as tx:
            row = self._visible_member_row(tx, principal, member_id)
            if self._access(principal, row) not in ("staff", "admin"):
                raise Forbidden("only staff of the member's organisation grant family proxies")
            user = tx.first(users, users.c.username == username)
            if user is None or user.bank_id != principal.bank_id:
                raise NotFound("no user with this username", field="username")
            if row.status != MemberStatus.ACTIVE or not row.is_elder:
                raise InvalidInput("proxies act for an active elder", field="member_id")
            own = tx.first(members, members.c.user_id == user.id)
            if user.disabled_at is not None or own is None or own.status != MemberStatus.ACTIVE:
                raise InvalidInput(
                    "only an active member (approved by their organisation) becomes a proxy",
                    field="username",
                )
            if own.org_id != row.org_id and not self._confirmed_link(tx, own.id, member_id):
                raise InvalidInput(
                    "only a member of the elder's organisation or her confirmed relative "
                    "becomes her proxy",
                    field="username",
                )
            if self._proxy_grants(tx, user.id, member_id):
                return  # already their proxy
            self._grant(
                tx,
                user.id,
                Role.FAMILY_PROXY,
                principal.bank_id,
                None,
                member_id,
                principal.user_id,
            )

    def revoke_proxy(self, principal: Principal, member_id: str, username: str) -> None:
        """Staff of the elder's organisation, or the elder, end a family member's proxy."""
        with self.store.transaction() as tx:
            row = self._visible_member_row(tx, principal, member_id)
            if self._access(principal, row) not in ("self", "staff", "admin"):
                raise Forbidden("only the elder or their organisation's staff revoke a proxy")
            user = tx.first(users, users.c.username == username)
            grants = self._proxy_grants(tx, user.id, member_id) if user is not None else []
            if not grants:
                raise NotFound("this user is not a proxy of this member", field="username")
            for grant in grants:
                tx.update(role_grants, grant.id, revoked_at=self.clock())

    def list_proxies(self, principal: Principal, member_id: str) -> list[ProxyGrant]:
        """The family members acting for an elder now, oldest grant first: for the elder
        and the staff who grant and revoke them."""
        with self.store.snapshot() as tx:
            row = self._visible_member_row(tx, principal, member_id)
            if self._access(principal, row) not in ("self", "staff", "admin"):
                raise Forbidden("only the elder or their organisation's staff see their proxies")
            grants = tx.find(
                role_grants,
                role_grants.c.member_id == member_id,
                role_grants.c.role == str(Role.FAMILY_PROXY),
                role_grants.c.revoked_at.is_(None),
                order=[role_grants.c.granted_at],
            )
            found = []
            for grant in grants:
                user = tx.get(users, grant.user_id)
                own = tx.first(members, members.c.user_id == grant.user_id)
                if user is not None:
                    found.append(
                        proxy_of_row(grant, user.username, own.id if own is not None else None)
                    )
        return found

    def proxy_candidates(self, principal: Principal, member_id: str) -> list[ProxyCandidate]:
        """Whom staff may make an elder's proxy in one step: her confirmed relatives who are
        active members with a login and do not act for her yet (``grant_proxy``'s rules)."""
        with self.store.snapshot() as tx:
            row = self._visible_member_row(tx, principal, member_id)
            if self._access(principal, row) not in ("staff", "admin"):
                raise Forbidden("only staff of the member's organisation grant family proxies")
            links = tx.find(
                relatives,
                relatives.c.status == str(RelativeStatus.CONFIRMED),
                (relatives.c.member_id == member_id) | (relatives.c.relative_id == member_id),
                order=[relatives.c.declared_at],
            )
            found = []
            for link in links:
                other_id = link.relative_id if link.member_id == member_id else link.member_id
                other = tx.get(members, other_id)
                user = tx.get(users, other.user_id) if other and other.user_id else None
                if (
                    other is None
                    or user is None
                    or other.status != MemberStatus.ACTIVE
                    or user.disabled_at is not None
                    or self._proxy_grants(tx, user.id, member_id)
                ):
                    continue
                found.append(ProxyCandidate(other.id, user.username, Relation(link.relation)))
        return found

    @staticmethod
    def _confirmed_link(tx: Tx, member_a: str, member_b: str) -> bool:
        """Staff confirmed ``member_a`` and ``member_b`` as relatives, either way round."""
        return bool(
            tx.find(
                relatives,
                relatives.c.status == str(RelativeStatus.CONFIRMED),
                ((relatives.c.member_id == member_a) & (relatives.c.relative_id == member_b))
                | ((relatives.c.member_id == member_b) & (relatives.c.relative_id == member_a)),
            )
        )

    @staticmethod
    def _proxy_grants(tx: Tx, user_id: str, member_id: str) -> list[Any]:
        return tx.find(
            role_grants,
            role_grants.c.user_id == user_id,
            role_grants.c.member_id == member_id,
            role_grants.c.role == str(Role.FAMILY_PROXY),
            role_grants.c.revoked_at.is_(None),
        )
