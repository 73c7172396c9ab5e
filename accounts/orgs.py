"""Banks and organisations, and their staff: organisation admins create and revoke staff of
their own organisation only."""

from __future__ import annotations

import re
from typing import Any

from accounts.base import NewUser, clean_text, parse_enum, user_id_of, utc_now
from accounts.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    Words,
)
from accounts.model import (
    STAFF_ROLES,
    Bank,
    Organisation,
    OrgKind,
    Principal,
    Role,
    User,
)
from accounts.rows import org_of_row, user_of_row
from accounts.second_factor import SecondFactor
from accounts.storage import (
    Tx,
    banks,
    organisations,
    role_grants,
    users,
    utc,
)
from accounts.tokens import new_id

ORG_PHONE = re.compile(r"^\+?[0-9][0-9 -]{1,30}[0-9]\Z")


class Organisations(SecondFactor):
    """Banks, organisations and staff."""

    def get_bank(self, principal: Principal, bank_id: str) -> Bank:
        user_id_of(principal)
        if bank_id != principal.bank_id:
            raise NotFound("no bank %(id)s", id=bank_id)
        with self.store.snapshot() as tx:
            row = tx.get(banks, bank_id)
        if row is None:
            raise NotFound("no bank %(id)s", id=bank_id)
        return Bank(row.id, row.name, utc(row.created_at) or self.clock())

    def operator_bank(self, bank_id: str) -> Bank:
        """The bank an operator command names (the operator holds the deployment, so no login
        is asked): ``NotFound`` when there is none, before a report is computed for it."""
        with self.store.snapshot() as tx:
            row = tx.get(banks, bank_id) if isinstance(bank_id, str) else None
        if row is None:
            raise NotFound("no bank %(id)s", id=bank_id, field="bank")
        return Bank(row.id, row.name, utc(row.created_at) or self.clock())

    def create_org(
        self, principal: Principal, name: str, kind: str, phone: str | None = None
    ) -> Organisation:
        if not principal.is_bank_admin:
            raise Forbidden("only a bank administrator creates organisations")
        name = clean_text(name, "name", 200, called=Words("organisation name"))
        org_kind = parse_enum(OrgKind, kind, "kind")
        if phone is not None and not ORG_PHONE.match(phone):
            raise InvalidInput("phone: digits, spaces, '+' and '-', 3 to 32", field="phone")
        org = Organisation(
            new_id(), principal.bank_id, name, org_kind, self.clock(), principal.user_id, phone
        )
        with self.store.transaction() as tx:
            if tx.get(banks, principal.bank_id) is None:
                raise NotFound("no bank %(id)s", id=principal.bank_id, field="bank_id")
            if tx.first(
                organisations, organisations.c.bank_id == org.bank_id, organisations.c.name == name
            ):
                raise Conflict("an organisation named '%(name)s' exists", field="name", name=name)
            tx.insert(
                organisations,
                id=org.id,
                bank_id=org.bank_id,
                name=name,
                kind=str(org_kind),
                created_at=org.created_at,
                created_by=org.created_by,
                phone=org.phone,
            )
        return org

    def list_orgs(self, principal: Principal) -> list[Organisation]:
        """Everyone in a bank may see its organisations (to choose where to register)."""
        user_id_of(principal)
        with self.store.snapshot() as tx:
            rows = tx.find(
                organisations,
                organisations.c.bank_id == principal.bank_id,
                order=[organisations.c.name],
            )
        return [org_of_row(r) for r in rows]

    def organisations_taking_volunteers(self) -> list[tuple[Bank, Organisation]]:
        """Public: the banks and organisations someone signing up may choose from."""
        with self.store.snapshot() as tx:
            bank_names = {
                b.id: Bank(b.id, b.name, utc(b.created_at) or utc_now()) for b in tx.find(banks)
            }
            rows = tx.find(organisations, order=[organisations.c.bank_id, organisations.c.name])
        return [(bank_names[r.bank_id], org_of_row(r)) for r in rows if r.bank_id in bank_names]

    def get_org(self, principal: Principal, org_id: str) -> Organisation:
        user_id_of(principal)
        with self.store.snapshot() as tx:
            row = tx.get(organisations, org_id)
        if row is None or row.bank_id != principal.bank_id:
            raise NotFound("no organisation %(id)s", id=org_id)
        return org_of_row(row)

    def _require_org_admin(self, tx: Tx, principal: Principal, org_id: str) -> Any:
        org = tx.get(organisations, org_id)
        if org is None or org.bank_id != principal.bank_id:
            raise NotFound("no organisation %(id)s", id=org_id)
        if not (principal.is_bank_admin or org_id in principal.orgs(Role.ORG_ADMIN)):
            raise Forbidden("only this organisation's admin or a bank admin manages its staff")
        return org

    def create_staff(
        self, principal: Principal, org_id: str, username: str, role: str, password: str | None
    ) -> NewUser:
        staff_role = parse_enum(Role, role, "role")
        if staff_role not in STAFF_ROLES:
            raise InvalidInput("role must be org_staff or org_admin", field="role")
        with self.store.transaction() as tx:
            self._require_org_admin(tx, principal, org_id)
            new = self._new_user(tx, principal.bank_id, username, password)
            self._grant(
                tx, new.user.id, staff_role, principal.bank_id, org_id, None, principal.user_id
            )
        return new

    def list_staff(self, principal: Principal, org_id: str) -> list[tuple[User, Role]]:
        with self.store.snapshot() as tx:
            org = tx.get(organisations, org_id)
            if org is None or org.bank_id != principal.bank_id:
                raise NotFound("no organisation %(id)s", id=org_id)
            if not (principal.is_bank_admin or org_id in principal.orgs()):
                raise Forbidden("staff lists are for the organisation's staff and bank admins")
            grants = tx.find(
                role_grants, role_grants.c.org_id == org_id, role_grants.c.revoked_at.is_(None)
            )
            out = []
            for g in grants:
                row = tx.get(users, g.user_id)
                if row is not None:
                    out.append((user_of_row(row), Role(g.role)))
        return out

    def revoke_staff(self, principal: Principal, org_id: str, user_id: str) -> None:
        with self.store.transaction() as tx:
            self._require_org_admin(tx, principal, org_id)
            live = tx.find(
                role_grants,
                role_grants.c.org_id == org_id,
                role_grants.c.user_id == user_id,
                role_grants.c.revoked_at.is_(None),
            )
            if not live:
                raise NotFound("user %(id)s is not staff of %(org)s", id=user_id, org=org_id)
            for g in live:
                tx.update(role_grants, g.id, revoked_at=self.clock())
