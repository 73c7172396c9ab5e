"""Members and their personal data: registration (self, assisted, by staff), approval (a
ledger ``approval`` entry), masked views, reveals with a reason (each recorded), search by
blind index."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

from accounts import passwords
from accounts.base import MAX_PAGE, clean_text
from accounts.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
)
from accounts.model import (
    Flag,
    MemberStatus,
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
    banks,
    member_flags,
    member_personal,
    members,
    organisations,
    pii_access,
    users,
    utc,
)
from accounts.tokens import new_id
from ledger.entry import EntryRequest
from ledger.postings import member_account

REVEAL_REASON_MIN = 4  # "家访" says too little; "安排上门家访" says why


@dataclass(frozen=True)
class MemberView:
    """A member as one caller may see it: personal data masked unless ``revealed``."""

    member: MemberRecord
    personal: dict[str, Any]
    revealed: bool
    flags: tuple[Flag, ...] = ()


@dataclass(frozen=True)
class NewMember:
    member: MemberRecord
    user: User | None = None


@dataclass
class PersonalInput:
    """Personal data as a caller supplies it; validated here, not in the web layer."""

    name: str
    phone: str | None = None
    id_number: str | None = None
    address: str | None = None
    birth_date: date | None = None
    health_notes: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Members(Organisations):
    """Registering, approving and reading members, with personal data masked by default."""

    def me(self, principal: Principal) -> tuple[User | None, MemberView | None]:
        if principal.user_id is None:
            return None, None
        with self.store.snapshot() as tx:
            row = tx.get(users, principal.user_id)
            assert row is not None
            user = user_of_row(row)
        view = self.get_member(principal, principal.member_id) if principal.member_id else None
        return user, view

    def self_register(
        self,
        bank_id: str,
        org_id: str,
        username: str,
        password: str,
        personal: PersonalInput,
    ) -> NewMember | None:
        """A volunteer signs up on a phone; the organisation they chose approves them later.

        The answer does not tell a stranger which usernames exist: every check that does not
        depend on the name comes first, and a name already taken stores nothing and returns
        None (after the same password hashing as a registration), which the API answers exactly
        as a registration. Nobody logs in before approval (``Sessions.login``), so logging in
        does not tell either; the centre calls the person and sorts a taken name out."""
        with self.store.transaction() as tx:
            org = tx.get(organisations, org_id)
            if tx.get(banks, bank_id) is None:
                raise NotFound(f"no bank {bank_id}", field="bank_id")
            if org is None or org.bank_id != bank_id:
                raise NotFound(f"no organisation {org_id} in bank {bank_id}", field="org_id")
            self._check_new_login(username, password)
            self._personal_columns(new_id(), personal)  # the same refusals for any name
            if tx.first(users, users.c.username == username):
                passwords.hash_password(password)  # the same work as a registration
                return None
            new = self._new_user(tx, bank_id, username, password)
            member = self._insert_member(
                tx,
                bank_id,
                org_id,
                new.user.id,
                personal,
                volunteer=True,
                elder=False,
                registered_by=None,
                status=MemberStatus.PENDING,
                approved_by=None,
                check_duplicates=False,  # staff see duplicates when they approve
            )
        return NewMember(member, new.user)

    def register_member(
        self,
        principal: Principal,
        org_id: str,
        personal: PersonalInput,
        volunteer: bool,
        elder: bool,
        username: str | None = None,
        password: str | None = None,
    ) -> NewMember:
        """Staff register volunteers or elders (approved at once, by their organisation);
        a family member registers an elder (pending approval) and becomes their proxy."""
        if not (volunteer or elder):
            raise InvalidInput("a member is a volunteer, an elder, or both", field="is_volunteer")
        is_staff = principal.is_bank_admin or org_id in principal.orgs()
        active_member = principal.has(Role.VOLUNTEER) or principal.has(Role.ELDER)
        is_family = active_member and not is_staff
        if not is_staff and not is_family:
            raise Forbidden(
                "only organisation staff or a registered family member registers members"
            )
        if is_family and (volunteer or not elder):
            raise Forbidden("family members register elders only", field="is_volunteer")
        with self.store.transaction() as tx:
            org = tx.get(organisations, org_id)
            if org is None or org.bank_id != principal.bank_id:
                raise NotFound(f"no organisation {org_id}", field="org_id")
            user = None
            if username is not None:
                user = self._new_user(tx, principal.bank_id, username, password).user
            elif password is not None:
                raise InvalidInput("a password needs a username", field="username")
            member = self._insert_member(
                tx,
                principal.bank_id,
                org_id,
                user.id if user else None,
                personal,
                volunteer=volunteer,
                elder=elder,
                registered_by=principal.user_id,
                status=MemberStatus.ACTIVE if is_staff else MemberStatus.PENDING,
                approved_by=principal.user_id if is_staff else None,
            )
            if is_family:
                assert principal.user_id is not None
                self._grant(
                    tx,
                    principal.user_id,
                    Role.FAMILY_PROXY,
                    principal.bank_id,
                    None,
                    member.id,
                    principal.user_id,
                )
        if member.status is MemberStatus.ACTIVE:
            self._log_approval(member)
        return NewMember(member, user)

    def _insert_member(
        self,
        tx: Tx,
        bank_id: str,
        org_id: str,
        user_id: str | None,
        personal: PersonalInput,
        *,
        volunteer: bool,
        elder: bool,
        registered_by: str | None,
        status: MemberStatus,
        approved_by: str | None,
        check_duplicates: bool = True,
    ) -> MemberRecord:
        member_id = new_id()
        values = self._personal_columns(member_id, personal)
        for index_field in ("phone_index", "id_number_index"):
            if (
                check_duplicates
                and values.get(index_field)
                and tx.index_taken(bank_id, index_field, values[index_field])
            ):
                name = index_field.removesuffix("_index")
                raise Conflict(f"a member with this {name} is already registered", field=name)
        now = self.clock()
        record = MemberRecord(
            id=member_id,
            bank_id=bank_id,
            ledger_account=member_account(bank_id),
            is_volunteer=volunteer,
            is_elder=elder,
            status=status,
            org_id=org_id,
            user_id=user_id,
            registered_by=registered_by,
            assisted=registered_by is not None,
            approved_by=approved_by,
            approved_at=now if approved_by else None,
            created_at=now,
        )
        tx.insert(
            members,
            id=record.id,
            bank_id=bank_id,
            ledger_account=record.ledger_account,
            is_volunteer=volunteer,
            is_elder=elder,
            status=str(status),
            org_id=org_id,
            user_id=user_id,
            registered_by=registered_by,
            assisted=record.assisted,
            approved_by=approved_by,
            approved_at=record.approved_at,
            created_at=now,
        )
        tx.insert(member_personal, member_id=member_id, **values)
        return record

    def _personal_columns(self, member_id: str, p: PersonalInput) -> dict[str, Any]:
        if p.extra:
            raise InvalidInput(f"unknown field {sorted(p.extra)[0]}", field=sorted(p.extra)[0])
        values: dict[str, Any] = {"name": clean_text(p.name, "name", 100)}
        seal = self.protector.seal
        if p.phone is not None:
            phone = normalise_phone(p.phone)
            values["phone_sealed"] = seal(phone, member_id, "phone")
            values["phone_index"] = self.protector.blind_index("phone", phone)
        if p.id_number is not None:
            id_number = normalise_id_number(p.id_number)
            values["id_number_sealed"] = seal(id_number, member_id, "id_number")
            values["id_number_index"] = self.protector.blind_index("id", id_number)
        if p.address is not None:
            values["address_sealed"] = seal(
                clean_text(p.address, "address", 300), member_id, "address"
            )
        if p.health_notes is not None:
            notes = clean_text(p.health_notes, "health_notes", 1000)
            values["health_sealed"] = seal(notes, member_id, "health_notes")
        if p.birth_date is not None:
            if p.birth_date > self.clock().date() or p.birth_date.year < 1900:
                raise InvalidInput("birth_date must be a past date after 1900", field="birth_date")
            values["birth_date"] = p.birth_date
        return values

    def _log_approval(self, member: MemberRecord) -> None:
        """The signed record that an organisation admitted this (opaque) account."""
        entry_id = f"approval:{member.ledger_account.rsplit(':', 1)[-1]}"
        self.ledger.append(
            EntryRequest(
                kind="approval",
                id=entry_id,
                body={
                    "account": member.ledger_account,
                    "roles": [
                        r
                        for r, on in (
                            ("volunteer", member.is_volunteer),
                            ("elder", member.is_elder),
                        )
                        if on
                    ],
                    "org": member.org_id or "",
                    "approved_by": self.protector.pseudonym(entry_id, member.approved_by or ""),
                    "assisted": member.assisted,
                },
            )
        )

    def decide_registration(
        self, principal: Principal, member_id: str, approve: bool, reason: str | None
    ) -> MemberRecord:
        if approve:
            # The signed record first: if the commit below fails, a retry finds the entry
            # already appended (same id) instead of a member active without one.
            with self.store.snapshot() as tx:
                row = self._visible_member_row(tx, principal, member_id)
            if row.status == MemberStatus.PENDING and (
                principal.is_bank_admin or row.org_id in principal.orgs()
            ):
                self._log_approval(
                    replace(
                        member_of_row(row), approved_by=principal.user_id, approved_at=self.clock()
                    )
                )
        with self.store.transaction() as tx:
            row = self._visible_member_row(tx, principal, member_id)
            if not (principal.is_bank_admin or row.org_id in principal.orgs()):
                raise Forbidden("only staff of the member's organisation decide registrations")
            if row.status != MemberStatus.PENDING:
                raise Conflict(f"registration is already {row.status}")
            now = self.clock()
            if approve:
                tx.update(
                    members,
                    member_id,
                    status=str(MemberStatus.ACTIVE),
                    approved_by=principal.user_id,
                    approved_at=now,
                )
            else:
                text = clean_text(reason or "", "reason", 500)
                tx.update(
                    members,
                    member_id,
                    status=str(MemberStatus.REJECTED),
                    rejected_reason=text,
                    approved_by=principal.user_id,
                    approved_at=now,
                )
            return member_of_row(tx.get(members, member_id))

    def _visible_member_row(self, tx: Tx, principal: Principal, member_id: str) -> Any:
        """The member row if the caller may know it exists; NotFound otherwise."""
        row = tx.get(members, member_id) if isinstance(member_id, str) else None
        if row is None or row.bank_id != principal.bank_id or self._access(principal, row) is None:
            raise NotFound(f"no member {member_id}")
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

    def member_access(self, principal: Principal, member_id: str) -> tuple[MemberRecord, str]:
        """The member and how the caller relates to them (self, proxy, staff, admin,
        auditor); NotFound when the caller may not know the member exists."""
        with self.store.snapshot() as tx:
            row = self._visible_member_row(tx, principal, member_id)
        access = self._access(principal, row)
        assert access is not None
        return member_of_row(row), access

    def member(self, member_id: str) -> MemberRecord:
        """A member by id, without access checks: for other services that checked already."""
        with self.store.snapshot() as tx:
            row = tx.get(members, member_id)
        if row is None:
            raise NotFound(f"no member {member_id}")
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
        if reveal_reason is not None and access != "self":
            if access not in ("staff", "admin"):
                raise Forbidden(
                    "only the member's organisation staff or a bank admin see full personal data"
                )
            reason = clean_text(reveal_reason, "reveal_reason", 500)
            if len(reason) < REVEAL_REASON_MIN:
                raise InvalidInput(
                    f"say why you need the full personal data ({REVEAL_REASON_MIN} characters "
                    "at least)",
                    field="reveal_reason",
                )
            self._record_access(principal, member_id, access, reason)
            revealed = True
        personal = self._personal_view(member_id, personal_row, revealed)
        if access == "auditor":
            personal = {"birth_year": personal.get("birth_year")}
        return MemberView(
            member_of_row(row), personal, revealed, flags if access != "auditor" else ()
        )

    def _record_access(self, principal: Principal, member_id: str, role: str, reason: str) -> None:
        with self.store.transaction() as tx:
            tx.insert(
                pii_access,
                id=new_id(),
                at=self.clock(),
                actor_user_id=principal.user_id or "",
                actor_role=role,
                member_id=member_id,
                fields="name phone id_number address birth_date health_notes",
                reason=reason,
            )

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
            raise InvalidInput(f"limit must be 1-{MAX_PAGE}", field="limit")
        if offset < 0:
            raise InvalidInput("offset must not be negative", field="offset")
        indexes = None
        if search is not None:
            if not staff_view:
                raise Forbidden("auditors do not search by personal data")
            indexes = self._search_indexes(search)
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
