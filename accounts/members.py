"""Members and their personal data: registration (self, assisted, by staff) and approval (a
ledger ``approval`` entry). How members are read is ``accounts.member_views``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

from accounts import passwords
from accounts.base import clean_text
from accounts.errors import (
    Conflict,
    Forbidden,
    InvalidFields,
    InvalidInput,
    NotFound,
    NumberOnFile,
    Words,
)
from accounts.member_views import MemberViews
from accounts.model import Member as MemberRecord
from accounts.model import (
    MemberStatus,
    Principal,
    Role,
    User,
)
from accounts.protection import (
    id_birth_date,
    normalise_id_number,
    normalise_phone,
)
from accounts.rows import member_of_row
from accounts.storage import (
    Tx,
    banks,
    member_personal,
    members,
    organisations,
    users,
)
from accounts.tokens import new_id
from ledger.kinds import Approval
from ledger.postings import member_account


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


def _birth_dates_differ(in_id: date, given: date) -> InvalidInput:
    """The ID number says one date of birth and the form another: one of them is mistyped,
    and only the person at the desk can tell which, so the refusal names both."""
    problem = InvalidInput(
        "%(field)s holds the date of birth %(in_id)s, but %(other)s is %(given)s: correct "
        "whichever is wrong",
        field="id_number",
        other=Words("birth date"),
        in_id=in_id.isoformat(),
        given=given.isoformat(),
    )
    problem.fields = ("id_number", "birth_date")
    return problem


class Members(MemberViews):
    """Registering and approving members."""

    def self_register(
        self,
        bank_id: str,
        org_id: str,
        username: str,
        password: str,
        personal: PersonalInput,
    ) -> NewMember | None:
        """A volunteer signs up on a phone; the organisation they chose approves them later.

        The answer does not tell a stranger which usernames exist: a name already taken meets
        the refusals a free one would, in the same order, then stores nothing and returns None
        (after the same password hashing as a registration), which the API answers exactly as a
        registration. Nobody logs in before approval (``Sessions.login``), so logging in
        does not tell either; the centre calls the person and sorts a taken name out."""
        with self.store.transaction() as tx:
            org = tx.get(organisations, org_id)
            if tx.get(banks, bank_id) is None:
                raise NotFound("no bank %(id)s", id=bank_id, field="bank_id")
            if org is None or org.bank_id != bank_id:
                raise NotFound(
                    "no organisation %(id)s in bank %(bank)s",
                    id=org_id,
                    bank=bank_id,
                    field="org_id",
                )
            if tx.first(users, users.c.username == username):
                # The refusals a free name would meet, in the same order, then the same work.
                self._check_new_login(username, password)
                self._personal_columns(new_id(), personal)
                passwords.hash_password(password)
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
                check_duplicates=False,  # staff meet a duplicate when they approve
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
        # Staff learn whether a phone or ID number is on file in the bank (409), so each such
        # refusal is a search by number, counted against the login's limit (as the audit trail
        # records it, with its status); past the limit a registration with a number is held
        # back either way. A registration that goes through is not counted.
        numbered = is_staff and bool(personal.phone or personal.id_number)
        if numbered:
            self._check_search_limit(principal)
        try:
            member, user = self._register_in(
                principal, org_id, personal, volunteer, elder, username, password, is_staff
            )
        except NumberOnFile:
            self._count_search(principal)
            raise
        if member.status is MemberStatus.ACTIVE:
            self._log_approval(member)
        return NewMember(member, user)

    def _register_in(
        self,
        principal: Principal,
        org_id: str,
        personal: PersonalInput,
        volunteer: bool,
        elder: bool,
        username: str | None,
        password: str | None,
        is_staff: bool,
    ) -> tuple[MemberRecord, User | None]:
        is_family = not is_staff
        with self.store.transaction() as tx:
            org = tx.get(organisations, org_id)
            if org is None or org.bank_id != principal.bank_id:
                raise NotFound("no organisation %(id)s", id=org_id, field="org_id")
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
                # A family member is answered alike whether the phone or ID number is known
                # (as a self-registration is): a 409 told any member whose number is on file,
                # in any organisation. Staff see duplicates when they approve.
                check_duplicates=is_staff,
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
        return member, user

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
            if not check_duplicates or not values.get(index_field):
                continue
            holders = tx.index_holder_orgs(bank_id, index_field, values[index_field])
            name = index_field.removesuffix("_index")
            # Where she is says what to do next: find her here, or ask who can move her.
            if org_id in holders:
                raise NumberOnFile(
                    "a member of this organisation already has this %(field)s: search for it "
                    "in the member list",
                    field=name,
                )
            if holders:
                raise NumberOnFile(
                    "a member of another organisation of the bank has this %(field)s: ask the "
                    "bank's administrator",
                    field=name,
                )
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
        """The sealed and indexed columns of ``p``, or one refusal naming every field at fault
        (``InvalidFields``), so a form is corrected in one go."""
        if p.extra:
            raise InvalidInput("unknown field %(field)s", field=sorted(p.extra)[0])
        problems: list[InvalidInput] = []
        values: dict[str, Any] = {}
        seal = self.protector.seal

        def checked(check: Callable[[], Any]) -> Any:
            try:
                return check()
            except InvalidInput as problem:
                problems.append(problem)
                return None

        name = checked(lambda: clean_text(p.name, "name", 100))
        phone = None if p.phone is None else checked(lambda: normalise_phone(p.phone or ""))
        id_number = None
        if p.id_number is not None:
            id_number = checked(lambda: normalise_id_number(p.id_number or ""))
        born = p.birth_date
        if born is not None and (born > self.clock().date() or born.year < 1900):
            problems.append(
                InvalidInput("birth_date must be a past date after 1900", field="birth_date")
            )
        elif born is not None and id_number is not None and id_birth_date(id_number) != born:
            problems.append(_birth_dates_differ(id_birth_date(id_number), born))
        address = notes = None
        if p.address is not None:
            address = checked(lambda: clean_text(p.address, "address", 300))
        if p.health_notes is not None:
            notes = checked(lambda: clean_text(p.health_notes, "health_notes", 1000))
        InvalidFields.raise_any(problems)
        values["name"] = name
        if phone is not None:
            values["phone_sealed"] = seal(phone, member_id, "phone")
            values["phone_index"] = self.protector.blind_index("phone", phone)
        if id_number is not None:
            values["id_number_sealed"] = seal(id_number, member_id, "id_number")
            values["id_number_index"] = self.protector.blind_index("id", id_number)
        if address is not None:
            values["address_sealed"] = seal(address, member_id, "address")
        if notes is not None:
            values["health_sealed"] = seal(notes, member_id, "health_notes")
        if born is not None:
            values["birth_date"] = born
        return values

    def _log_approval(self, member: MemberRecord) -> None:
        """The signed record that an organisation admitted this (opaque) account."""
        entry_id = f"approval:{member.ledger_account.rsplit(':', 1)[-1]}"
        roles = (("volunteer", member.is_volunteer), ("elder", member.is_elder))
        approval = Approval(
            id=entry_id,
            account=member.ledger_account,
            roles=tuple(role for role, on in roles if on),
            org=member.org_id or "",
            approved_by=self.protector.pseudonym(entry_id, member.approved_by or ""),
            assisted=member.assisted,
        )
        self.ledger.append(approval.to_request())

    def decide_registration(
        self, principal: Principal, member_id: str, approve: bool, reason: str | None
    ) -> MemberRecord:
        """Approve or reject a pending registration. Approving one whose phone or ID number an
        active member has is refused (409), which tells staff the number is on file: as at
        registration, the refusal counts as a search by number, and past the limit approving a
        registration with a number is held back."""
        if approve:
            with self.store.snapshot() as tx:
                row = tx.get(members, member_id)
                deciding = (
                    row is not None
                    and row.bank_id == principal.bank_id
                    and row.status == MemberStatus.PENDING
                    and (principal.is_bank_admin or row.org_id in principal.orgs())
                )
                held = tx.personal(member_id) if deciding else None
            if held is not None and (held.phone_index or held.id_number_index):
                self._check_search_limit(principal)
            try:
                return self._decide(principal, member_id, approve, reason)
            except NumberOnFile:
                self._count_search(principal)
                raise
        return self._decide(principal, member_id, approve, reason)

    def _decide(
        self, principal: Principal, member_id: str, approve: bool, reason: str | None
    ) -> MemberRecord:
        if approve:
            # The signed record first: if the commit below fails, a retry finds the entry
            # already appended (same id) instead of a member active without one.
            with self.store.snapshot() as tx:
                row = self._visible_member_row(tx, principal, member_id)
                deciding = principal.is_bank_admin or row.org_id in principal.orgs()
                for column, name in (("phone_index", "phone"), ("id_number_index", "id_number")):
                    # A registration taken without the duplicate check (by the person or her
                    # family, who must not learn who is on file): staff, and only staff (the
                    # family proxy may call this too: 403 below), meet it here.
                    if (
                        deciding
                        and row.status == MemberStatus.PENDING
                        and tx.index_held_by_another_active(member_id, column)
                    ):
                        raise NumberOnFile(
                            "an active member has this %(field)s: reject this registration if "
                            "it is the same person",
                            field=name,
                        )
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
                raise Conflict("registration is already %(status)s", status=Words(row.status))
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
