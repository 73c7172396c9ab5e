"""Members as callers may see them: who may know a member exists and how they relate to them,
views with personal data masked by default, reveals with a reason (each recorded), and search
by blind index."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from accounts.base import MAX_PAGE, clean_text
from accounts.errors import (
    Forbidden,
    InvalidInput,
    NotFound,
    SearchThrottled,
)
from accounts.model import (
    Flag,
    Principal,
    Role,
    User,
)
from accounts.model import Member as MemberRecord
from accounts.orgs import Organisations
from accounts.protection import (
    mask_address,
    mask_id_number,
    mask_name,
    mask_phone,
    normalise_id_number,
    normalise_phone,
)
from accounts.rows import flag_of_row, member_of_row, user_of_row
from accounts.storage import (
    Tx,
    member_flags,
    member_personal,
    members,
    pii_access,
    users,
    utc,
)
from accounts.tokens import new_id

REVEAL_REASON_MIN = 4  # "家访" says too little; "安排上门家访" says why
# How long the page after a reveal shows it again (a reload) without recording another one.
REVEAL_SHOWN_FOR = timedelta(minutes=10)


@dataclass(frozen=True)
class MemberView:
    """A member as one caller may see it: personal data masked unless ``revealed``."""

    member: MemberRecord
    personal: dict[str, Any]
    revealed: bool
    flags: tuple[Flag, ...] = ()
    access_id: str | None = None  # the ``pii_access`` row a reveal appended


class MemberViews(Organisations):
    """Reading members, with personal data masked by default."""

    def me(self, principal: Principal) -> tuple[User | None, MemberView | None]:
        if principal.user_id is None:
            return None, None
        with self.store.snapshot() as tx:
            row = tx.get(users, principal.user_id)
            assert row is not None
            user = user_of_row(row)
        view = self.get_member(principal, principal.member_id) if principal.member_id else None
        return user, view

    def _visible_member_row(
        self, tx: Tx, principal: Principal, member_id: str, field: str | None = None
    ) -> Any:
        """The member row if the caller may know it exists; NotFound (naming ``field``)
        otherwise, the same whether the member is missing or out of the caller's sight."""
        row = tx.get(members, member_id) if isinstance(member_id, str) else None
        if row is None or row.bank_id != principal.bank_id or self._access(principal, row) is None:
            raise NotFound("no member %(id)s", id=member_id, field=field)
        return row

    @staticmethod
    def _access(principal: Principal, row: Any) -> str | None:
        """How the caller relates to a member: self, proxy, staff, admin, auditor, or None."""
        if principal.is_partner:
            return None
        if principal.member_id == row.id:
            return "self"  # care refuses a member who is not active (care.errors.MemberNotActive)
        if principal.is_bank_admin:
            return "admin"
        if row.org_id in principal.orgs():
            return "staff"
        if row.id in principal.proxied_members():
            return "proxy"
        if principal.has(Role.AUDITOR):
            return "auditor"
        return None

    def member_access(
        self, principal: Principal, member_id: str, field: str | None = None
    ) -> tuple[MemberRecord, str]:
        """The member and how the caller relates to them (self, proxy, staff, admin,
        auditor); NotFound when the caller may not know the member exists, naming ``field``
        when the id came in a body (``from_member_id``), so the caller knows which id it was.

        Remembered like the caller's principal (``accounts.access_cache``): a phone reading
        its balance or giving minutes asks this on every call."""
        writes, now = self.store.writes, self.clock()  # read before the row: see the cache
        known = self.access_cache.get(principal, member_id, writes, now)
        if known is not None:
            return known
        with self.store.snapshot() as tx:
            row = self._visible_member_row(tx, principal, member_id, field)
        access = self._access(principal, row)
        assert access is not None
        found = member_of_row(row), access
        self.access_cache.put(principal, member_id, found, writes, now)
        return found

    def remembered_access(
        self, principal: Principal, member_id: str
    ) -> tuple[MemberRecord, str] | None:
        """What ``member_access`` remembers for the caller and member, else None: no I/O, safe
        on an event loop (a refusal is never remembered, so None is all it says of one)."""
        return self.access_cache.get(principal, member_id, self.store.writes, self.clock())

    def member(self, member_id: str, tx: Tx | None = None) -> MemberRecord:
        """A member by id, without access checks: for other services that checked already;
        read in ``tx`` when the caller holds one."""
        if tx is None:
            with self.store.snapshot() as own:
                row = own.get(members, member_id)
        else:
            row = tx.get(members, member_id)
        if row is None:
            raise NotFound("no member %(id)s", id=member_id)
        return member_of_row(row)

    def birth_date(self, member_id: str) -> date | None:
        with self.store.snapshot() as tx:
            row = tx.personal(member_id)
        return row.birth_date if row is not None else None

    def get_member(
        self, principal: Principal, member_id: str, reveal_reason: str | None = None
    ) -> MemberView:
        with self.store.snapshot() as tx:
            row = self._visible_member_row(tx, principal, member_id)
            access = self._access(principal, row)
            personal_row = tx.personal(member_id)
            flags = tuple(
                flag_of_row(f)
                for f in tx.find(
                    member_flags,
                    member_flags.c.member_id == member_id,
                    order=[member_flags.c.set_at],
                )
            )
        revealed = access == "self"
        access_id = None
        if reveal_reason is not None and access != "self":
            if access not in ("staff", "admin"):
                raise Forbidden(
                    "only the member's organisation staff or a bank admin see full personal data"
                )
            reason = clean_text(reveal_reason, "reveal_reason", 500)
            if len(reason) < REVEAL_REASON_MIN:
                raise InvalidInput(
                    "say why you need the full personal data (%(least)s characters at least)",
                    field="reveal_reason",
                    least=REVEAL_REASON_MIN,
                )
            access_id = self._record_access(principal, member_id, access, reason)
            revealed = True
        personal = self._personal_view(member_id, personal_row, revealed)
        if access == "auditor":
            personal = {"birth_year": personal.get("birth_year")}
        return MemberView(
            member_of_row(row),
            personal,
            revealed,
            flags if access != "auditor" else (),
            access_id,
        )

    def revealed_member(self, principal: Principal, member_id: str, access_id: str) -> MemberView:
        """The member as the caller's own recent reveal (``access_id``) showed them, without
        recording another: the page after a reveal is a GET that a reload repeats. A reveal
        older than ``REVEAL_SHOWN_FOR``, someone else's, or by a caller no longer the member's
        staff gives the masked view."""
        view = self.get_member(principal, member_id)
        with self.store.snapshot() as tx:
            row = tx.get(pii_access, access_id) if isinstance(access_id, str) else None
            personal_row = tx.personal(member_id)
            visible = self._visible_member_row(tx, principal, member_id)
        at = utc(row.at) if row is not None else None
        if (
            row is None
            or at is None
            or at < self.clock() - REVEAL_SHOWN_FOR
            or row.actor_user_id != principal.user_id
            or row.member_id != member_id
            or row.actor_role not in ("staff", "admin")  # not a volunteer's read of an address
            or self._access(principal, visible) not in ("staff", "admin")
        ):
            return view
        personal = self._personal_view(member_id, personal_row, True)
        return MemberView(view.member, personal, True, view.flags, access_id)

    def _record_access(
        self,
        principal: Principal,
        member_id: str,
        role: str,
        reason: str,
        fields: str = "name phone id_number address birth_date health_notes",
    ) -> str:
        access_id = new_id()
        with self.store.transaction() as tx:
            tx.insert(
                pii_access,
                id=access_id,
                at=self.clock(),
                actor_user_id=principal.user_id or "",
                actor_role=role,
                member_id=member_id,
                fields=fields,
                reason=reason,
            )
        return access_id

    def visit_place(
        self, principal: Principal, member_id: str, assigned_request: str | None, in_full: bool
    ) -> tuple[str | None, str | None]:
        """The elder's masked name and address for a volunteer, for ``care`` once it checked how
        the caller relates to the request: the volunteer it is assigned to (``assigned_request``)
        gets her masked name, and the address ``in_full`` to find the door, each such read
        recorded in ``pii_access`` like a reveal; anyone else gets the area (the masked address)
        and no name."""
        with self.store.snapshot() as tx:
            row = tx.personal(member_id)
        if row is None:
            return None, None
        address = (
            self.protector.open(row.address_sealed, member_id, "address")
            if row.address_sealed is not None
            else None
        )
        if assigned_request is None:
            return None, mask_address(address)
        if not in_full:
            return mask_name(row.name), mask_address(address)
        if address:
            self._record_access(
                principal, member_id, "volunteer", f"assigned visit {assigned_request}", "address"
            )
        return mask_name(row.name), address

    def masked_names(
        self, principal: Principal, member_ids: list[str]
    ) -> dict[str, tuple[str, str]]:
        """Masked name and masked address (the area) of members the caller, as staff, sees:
        lists of people to act on (reports.coverage) show no more than a member page does
        unrevealed, and reveal nothing (no access record)."""
        found: dict[str, tuple[str, str]] = {}
        with self.store.snapshot() as tx:
            for at in range(0, len(member_ids), 500):  # a few queries for thousands of people
                chunk = member_ids[at : at + 500]
                rows = tx.find(
                    members, members.c.id.in_(chunk), members.c.bank_id == principal.bank_id
                )
                shown = {r.id for r in rows if self._access(principal, r) in ("staff", "admin")}
                personal = tx.find(member_personal, member_personal.c.member_id.in_(shown))
                for row in personal:  # only the two fields shown: one field to unseal
                    address = (
                        self.protector.open(row.address_sealed, row.member_id, "address")
                        if row.address_sealed is not None
                        else None
                    )
                    found[row.member_id] = (
                        mask_name(row.name) or "",
                        mask_address(address) or "",
                    )
        return found

    def access_records(self, principal: Principal, member_id: str) -> list[dict[str, Any]]:
        """Who saw a member's full personal data: for the member, bank admins and auditors."""
        with self.store.snapshot() as tx:
            row = self._visible_member_row(tx, principal, member_id)
            if self._access(principal, row) not in ("self", "admin", "auditor"):
                raise Forbidden("access records are for the member, bank admins and auditors")
            rows = tx.find(pii_access, pii_access.c.member_id == member_id, order=[pii_access.c.at])
        return [
            {
                "at": utc(r.at),
                "actor": r.actor_user_id,
                "role": r.actor_role,
                "reason": r.reason,
                "fields": r.fields.split(),
            }
            for r in rows
        ]

    def _personal_view(self, member_id: str, row: Any, revealed: bool) -> dict[str, Any]:
        if row is None:
            return {}
        opened = {
            name: self.protector.open(getattr(row, f"{name}_sealed"), member_id, name)
            if getattr(row, f"{name}_sealed") is not None
            else None
            for name in ("phone", "id_number", "address")
        }
        health = (
            self.protector.open(row.health_sealed, member_id, "health_notes")
            if row.health_sealed is not None
            else None
        )
        birth: date | None = row.birth_date
        if revealed:
            return {
                "name": row.name,
                **opened,
                "birth_date": birth.isoformat() if birth else None,
                "birth_year": birth.year if birth else None,
                "health_notes": health,
            }
        return {
            "name": mask_name(row.name),
            "phone": mask_phone(opened["phone"]),
            "id_number": mask_id_number(opened["id_number"]),
            "address": mask_address(opened["address"]),
            "birth_year": birth.year if birth else None,
            "health_notes": "***" if health else None,
        }

    def list_members(
        self, principal: Principal, search: str | None, limit: int, offset: int
    ) -> list[MemberView]:
        """Members in the caller's scope; ``search`` matches a phone or ID number exactly."""
        if principal.is_partner:
            raise Forbidden("partner keys cannot list members")
        staff_view = principal.is_bank_admin or bool(principal.orgs())
        if not (staff_view or principal.has(Role.AUDITOR)):
            raise Forbidden("member lists are for organisation staff, bank admins and auditors")
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(
                "%(field)s must be %(low)s-%(high)s", field="limit", low=1, high=MAX_PAGE
            )
        if offset < 0:
            raise InvalidInput("offset must not be negative", field="offset")
        indexes = None
        if search is not None:
            if not staff_view:
                raise Forbidden("auditors do not search by personal data")
            indexes = self._search_indexes(search)
            self._count_search(principal)
        scope = (
            None if (principal.is_bank_admin or principal.has(Role.AUDITOR)) else principal.orgs()
        )
        with self.store.snapshot() as tx:
            rows = tx.members_in_scope(principal.bank_id, scope, indexes, limit, offset)
            personal_rows = {r.id: tx.personal(r.id) for r in rows}
        views = []
        for r in rows:
            personal = self._personal_view(r.id, personal_rows[r.id], revealed=False)
            if not staff_view:
                personal = {"birth_year": personal.get("birth_year")}
            views.append(MemberView(member_of_row(r), personal, False))
        return views

    def _count_search(self, principal: Principal) -> None:
        """One more search by phone or ID number for the caller's login, or SearchThrottled
        once it made ``policy.member_searches_per_window`` in the window that began with the
        first of them: a login, or a stolen session, cannot run through every number. Counted
        in the database, so every worker process and a restart see the same count; a refused
        search is not counted. Group-committed like the workflow's writes: the count changes
        no caller, so the caches of callers stay valid."""
        key = f"search-by:{principal.user_id}"
        limit, window = (
            self.policy.member_searches_per_window,
            self.policy.member_search_window_seconds,
        )
        now = self.clock()

        def count(tx: Tx) -> int | None:
            if tx.throttle_count(key, now, window) < limit:
                tx.throttle(key, now, window)
                return None
            started = tx.throttle_started(key)
            assert started is not None
            return max(1, math.ceil(window - (now - started).total_seconds()))

        retry_after = self.store.database.group.run(lambda conn: count(Tx(conn)))
        if retry_after is not None:
            raise SearchThrottled(retry_after)

    def _check_search_limit(self, principal: Principal) -> None:
        """SearchThrottled if the caller's login has no search by number left in the window,
        counting nothing: a registration with a phone or ID number past the limit is held back
        whether or not the number is on file, else its outcome (registered, or refused) would
        tell."""
        key = f"search-by:{principal.user_id}"
        limit, window = (
            self.policy.member_searches_per_window,
            self.policy.member_search_window_seconds,
        )
        now = self.clock()
        with self.store.snapshot() as tx:
            if tx.throttle_count(key, now, window) < limit:
                return
            started = tx.throttle_started(key)
        assert started is not None
        raise SearchThrottled(max(1, math.ceil(window - (now - started).total_seconds())))

    def _search_indexes(self, search: str) -> list[str]:
        indexes = []
        for kind, normalise in (("phone", normalise_phone), ("id", normalise_id_number)):
            try:
                indexes.append(self.protector.blind_index(kind, normalise(search, "search")))
            except InvalidInput:
                continue
        if not indexes:
            raise InvalidInput("search must be a phone or ID number", field="search")
        return indexes
