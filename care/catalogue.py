"""The bank's catalogue (service types and weights) and policy (caps, windows, overdraft): each
change is a ``policy`` entry in the log, so an auditor sees what weight applied when."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any
from zoneinfo import ZoneInfo

from accounts.base import clean_text
from accounts.errors import Choices, InvalidInput, NotFound, Words
from accounts.model import Member, Principal, PriorityFlag
from accounts.storage import Tx
from accounts.tokens import new_id
from care.base import CareBase, age, require_bank_admin
from care.errors import (
    NotEligible,
)
from care.model import (
    POINTS_UNITS,
    Category,
    Policy,
    ServiceType,
    codes_of,
    star_thresholds,
)
from care.repo import latest_policy, type_by_code
from care.storage import (
    bank_policies,
    service_types,
    to_type,
)
from ledger.kinds import BankPolicy, CatalogueEntry

# A policy's numbers are minutes, days, points or an age: a larger one is a typo (and past
# what the ledger's canonical JSON holds), refused as bad input.
MAX_POLICY_NUMBER = 10**9
MAX_REDEMPTION_AGE = 150


class Catalogue(CareBase):
    """Catalogue and policy, and the eligibility rules they set."""

    def policy(self, bank_id: str, tx: Tx | None = None) -> Policy:
        """The bank's current policy, read in ``tx`` when the use case holds one."""
        if tx is None:
            with self.store.snapshot() as own:
                row = latest_policy(own, bank_id)
        else:
            row = latest_policy(tx, bank_id)
        if row is None:
            return Policy()
        known = set(Policy().values())
        values = {k: v for k, v in json.loads(row.values_json).items() if k in known}
        return Policy(version=row.version, ledger_seq=row.ledger_seq, **values)

    def set_policy(self, principal: Principal, changes: dict[str, Any]) -> Policy:
        require_bank_admin(principal)
        current = self.policy(principal.bank_id)
        allowed = set(current.values())
        for key, value in changes.items():
            if key not in allowed:
                raise InvalidInput("unknown policy field %(field)s", field=key)
            expected = type(current.values()[key])
            if type(value) is not expected:
                raise InvalidInput(
                    "%(field)s must be %(kind)s", field=key, kind=Words(expected.__name__)
                )
            if isinstance(value, int) and not isinstance(value, bool) and value < 0:
                raise InvalidInput("%(field)s must not be negative", field=key)
            if isinstance(value, int) and value > MAX_POLICY_NUMBER:
                raise InvalidInput(
                    "%(field)s must be at most %(most)s", field=key, most=MAX_POLICY_NUMBER
                )
            if key == "redemption_age" and isinstance(value, int) and value > MAX_REDEMPTION_AGE:
                raise InvalidInput(
                    "%(field)s must be %(low)s-%(high)s", field=key, low=0, high=MAX_REDEMPTION_AGE
                )
            if key == "record_late_days" and isinstance(value, int) and not 1 <= value <= 366:
                raise InvalidInput("%(field)s must be %(low)s-%(high)s", field=key, low=1, high=366)
        if "points_unit" in changes and changes["points_unit"] not in POINTS_UNITS:
            raise InvalidInput(
                "points_unit is one of %(units)s",
                field="points_unit",
                units=", ".join(POINTS_UNITS),
            )
        if "points_per_hour" in changes and not 1 <= changes["points_per_hour"] <= 10_000:
            raise InvalidInput(
                "%(field)s must be %(low)s-%(high)s", field="points_per_hour", low=1, high=10_000
            )
        if "star_hours" in changes:
            try:
                star_thresholds(changes["star_hours"])
            except ValueError as exc:
                raise InvalidInput(
                    "star_hours is five rising whole numbers of hours, comma-separated, the "
                    "first above 0",
                    field="star_hours",
                ) from exc
        self._check_coverage_choice(principal.bank_id, changes)
        if "timezone" in changes:
            try:
                ZoneInfo(str(changes["timezone"]))
            except (KeyError, ValueError) as exc:
                raise InvalidInput("unknown time zone", field="timezone") from exc
        version = current.version + 1
        new = replace(current, version=version, ledger_seq=None, **changes)
        entry_id = f"policy:{principal.bank_id}:{version}"
        set_by = self._who(entry_id, principal.user_id)
        entry = BankPolicy(principal.bank_id, version, set_by, new.values())
        result = self.ledger.append(entry.to_request())
        with self.store.transaction() as tx:
            tx.insert(
                bank_policies,
                bank_id=principal.bank_id,
                version=version,
                values_json=json.dumps(new.values()),
                set_by=principal.user_id,
                set_at=self.clock(),
                ledger_seq=result.seq,
            )
        return replace(new, ledger_seq=result.seq)

    def _check_coverage_choice(self, bank_id: str, changes: dict[str, Any]) -> None:
        """``visit_services`` names services of the catalogue, ``coverage_flags`` priority
        flags; both comma-separated, empty for all."""
        if "visit_services" in changes:
            with self.store.snapshot() as tx:
                rows = tx.find(service_types, service_types.c.bank_id == bank_id)
            unknown = codes_of(changes["visit_services"]) - {r.code for r in rows}
            if unknown:
                raise InvalidInput(
                    "visit_services names no service %(codes)s",
                    field="visit_services",
                    codes=", ".join(sorted(unknown)),
                )
            changes["visit_services"] = ",".join(sorted(codes_of(changes["visit_services"])))
        if "coverage_flags" in changes:
            unknown = codes_of(changes["coverage_flags"]) - {f.value for f in PriorityFlag}
            if unknown:
                allowed = ", ".join(f.value for f in PriorityFlag)
                raise InvalidInput(
                    "coverage_flags are some of: %(flags)s", field="coverage_flags", flags=allowed
                )
            changes["coverage_flags"] = ",".join(sorted(codes_of(changes["coverage_flags"])))

    def catalogue(self, principal: Principal, include_inactive: bool = False) -> list[ServiceType]:
        with self.store.snapshot() as tx:
            conditions = [service_types.c.bank_id == principal.bank_id]
            if not include_inactive:
                conditions.append(service_types.c.active.is_(True))
            rows = tx.find(service_types, *conditions, order=[service_types.c.code])
        return [to_type(r) for r in rows]

    def upsert_service_type(
        self,
        principal: Principal,
        code: str,
        name_zh: str,
        name_en: str,
        category: str,
        weight_permille: int,
        active: bool = True,
    ) -> ServiceType:
        """Create or change a service type; the change is a policy entry in the log and
        applies to records verified after it."""
        require_bank_admin(principal)
        if (
            not code
            or len(code) > 32
            or not code.replace("-", "").replace("_", "").isalnum()
            or not code.isascii()
        ):
            raise InvalidInput("code must be 1-32 ASCII letters, digits, '-' or '_'", field="code")
        try:
            kind = Category(category)
        except ValueError as exc:
            allowed = Choices(c.value for c in Category)
            raise InvalidInput(
                "%(field)s must be one of: %(allowed)s", field="category", allowed=allowed
            ) from exc
        if not 100 <= weight_permille <= 5000:
            raise InvalidInput(
                "weight_permille must be between 100 and 5000", field="weight_permille"
            )
        zh = clean_text(name_zh, "name_zh", 100)
        en = clean_text(name_en, "name_en", 100)
        with self.store.snapshot() as tx:
            existing = tx.first(
                service_types,
                service_types.c.bank_id == principal.bank_id,
                service_types.c.code == code,
            )
        version = (existing.version + 1) if existing else 1
        entry_id = f"service:{principal.bank_id}:{code}:{version}"
        catalogued = CatalogueEntry(
            bank=principal.bank_id,
            service=code,
            version=version,
            category=kind.value,
            weight=weight_permille,
            active=active,
            name_zh=zh or "",
            name_en=en or "",
            set_by=self._who(entry_id, principal.user_id),
        )
        result = self.ledger.append(catalogued.to_request())
        now = self.clock()
        with self.store.transaction() as tx:
            values = dict(
                name_zh=zh,
                name_en=en,
                category=kind.value,
                weight_permille=weight_permille,
                active=active,
                version=version,
                ledger_seq=result.seq,
                updated_by=principal.user_id,
                updated_at=now,
            )
            if existing:
                tx.update(service_types, existing.id, **values)
                type_id = existing.id
            else:
                type_id = new_id()
                tx.insert(service_types, id=type_id, bank_id=principal.bank_id, code=code, **values)
            return to_type(tx.get(service_types, type_id))

    def _type_by_code(self, tx: Tx, bank_id: str, code: str) -> ServiceType:
        row = type_by_code(tx, bank_id, code)
        if row is None or not row.active:
            raise NotFound("no active service type %(code)s", code=code, field="service_code")
        return to_type(row)

    def _require_eligible(self, member: Member) -> None:
        policy = self.policy(member.bank_id)
        born = self.accounts.birth_date(member.id)
        today = self.clock().astimezone(ZoneInfo(policy.timezone)).date()
        if born is not None and age(born, today) >= policy.redemption_age:
            return
        if self.accounts.active_flags(member.id):
            return
        raise NotEligible(
            "redemption needs age %(age)s or a priority flag",
            field="elder_id",
            age=policy.redemption_age,
        )
