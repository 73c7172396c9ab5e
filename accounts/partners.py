"""Partner keys: scoped keys for services linked with the bank, created and revoked by bank
admins; the secret is shown once."""

from __future__ import annotations

from collections.abc import Sequence

from accounts.base import clean_text, parse_enum
from accounts.devices import Devices
from accounts.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    Words,
)
from accounts.model import (
    PartnerKey,
    PartnerScope,
    Principal,
)
from accounts.rows import partner_of_row
from accounts.storage import (
    partner_keys,
)
from accounts.tokens import PARTNER_PREFIX, new_id, new_secret, secret_hash


class Partners(Devices):
    """Partner keys."""

    def create_partner_key(
        self,
        principal: Principal,
        name: str,
        scopes: Sequence[str],
        published_secret: str | None = None,
    ) -> tuple[PartnerKey, str]:
        """A new key; ``published_secret`` only for the demo's key, which is published so
        that anyone trying the demo can act as its partner platform."""
        if not principal.is_bank_admin:
            raise Forbidden("only a bank administrator creates partner keys")
        if not scopes:
            raise InvalidInput("give at least one scope", field="scopes")
        parsed = frozenset(parse_enum(PartnerScope, s, "scopes") for s in scopes)
        secret = published_secret or new_secret(PARTNER_PREFIX)
        key = PartnerKey(
            new_id(),
            principal.bank_id,
            clean_text(name, "name", 100, called=Words("partner platform name")),
            parsed,
            principal.user_id or "",
            self.clock(),
        )
        with self.store.transaction() as tx:
            tx.insert(
                partner_keys,
                id=key.id,
                bank_id=key.bank_id,
                name=key.name,
                key_hash=secret_hash(secret),
                scopes=" ".join(sorted(parsed)),
                created_by=key.created_by,
                created_at=key.created_at,
            )
        return key, secret

    def list_partner_keys(self, principal: Principal) -> list[PartnerKey]:
        if not principal.is_bank_admin:
            raise Forbidden("only a bank administrator sees partner keys")
        with self.store.snapshot() as tx:
            rows = tx.find(
                partner_keys,
                partner_keys.c.bank_id == principal.bank_id,
                order=[partner_keys.c.created_at],
            )
        return [partner_of_row(r) for r in rows]

    def revoke_partner_key(self, principal: Principal, key_id: str) -> PartnerKey:
        if not principal.is_bank_admin:
            raise Forbidden("only a bank administrator revokes partner keys")
        with self.store.transaction() as tx:
            row = tx.get(partner_keys, key_id)
            if row is None or row.bank_id != principal.bank_id:
                raise NotFound("no partner key %(id)s", id=key_id)
            if row.revoked_at is not None:
                raise Conflict("partner key is already revoked")
            tx.update(partner_keys, key_id, revoked_at=self.clock())
            return partner_of_row(tx.get(partner_keys, key_id))
