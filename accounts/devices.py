"""Device keys: a volunteer's phone registers an Ed25519 public key and signs the records it
logs; the server checks those signatures.

Each registration and revocation is also a ``device`` entry of the public log (the key id, the
public key, the volunteer's ledger account, ``register`` or ``revoke``; never the phone's name),
so that an auditor checks every deposit's device signature against the key the volunteer had at
the time, without asking the server."""

from __future__ import annotations

import base64
import binascii
import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from accounts.base import clean_text, user_id_of
from accounts.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    TokenInvalid,
)
from accounts.model import (
    DeviceKey,
    Principal,
)
from accounts.relations import Relations
from accounts.rows import device_of_row
from accounts.storage import (
    Tx,
    device_keys,
    members,
)
from ledger.kinds import Device


def device_key_id(public_key: bytes) -> str:
    return hashlib.sha256(public_key).hexdigest()[:32]


class Devices(Relations):
    """Device keys and record signatures."""

    def add_device(self, principal: Principal, public_key_b64: str, name: str) -> DeviceKey:
        user_id = user_id_of(principal)
        try:
            raw = base64.b64decode(public_key_b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidInput("public_key must be base64", field="public_key") from exc
        if len(raw) != 32:
            raise InvalidInput("public_key must be a 32-byte Ed25519 key", field="public_key")
        try:
            Ed25519PublicKey.from_public_bytes(raw)
        except ValueError as exc:
            raise InvalidInput("public_key is not an Ed25519 key", field="public_key") from exc
        key = DeviceKey(
            device_key_id(raw), user_id, raw, clean_text(name, "name", 100), self.clock()
        )
        with self.store.snapshot() as tx:
            account = self._signing_account(tx, principal)
            if (known := self._registered(tx, key, user_id)) is not None:
                return known
        # The public record first: if the insert below fails, a retry appends the same entry
        # again, which the log takes as the same append (its id derives from the key).
        self._log_device(key, account, "register")
        with self.store.transaction() as tx:
            if (known := self._registered(tx, key, user_id)) is not None:
                return known
            tx.insert(
                device_keys,
                id=key.id,
                user_id=user_id,
                public_key=raw,
                name=key.name,
                created_at=key.created_at,
            )
        return key

    def list_devices(self, principal: Principal) -> list[DeviceKey]:
        user_id = user_id_of(principal)
        with self.store.snapshot() as tx:
            rows = tx.find(
                device_keys, device_keys.c.user_id == user_id, order=[device_keys.c.created_at]
            )
        return [device_of_row(r) for r in rows]

    def revoke_device(self, principal: Principal, key_id: str) -> DeviceKey:
        user_id = user_id_of(principal)
        with self.store.snapshot() as tx:
            row = tx.get(device_keys, key_id) if isinstance(key_id, str) else None
            if row is None or row.user_id != user_id:
                raise NotFound("no device key %(id)s", id=key_id)
            if row.revoked_at is not None:
                raise Conflict("device key is already revoked")
            member = tx.first(members, members.c.user_id == user_id)
        if member is not None:
            self._log_device(device_of_row(row), member.ledger_account, "revoke")
        with self.store.transaction() as tx:
            tx.update(device_keys, key_id, revoked_at=self.clock())
            return device_of_row(tx.get(device_keys, key_id))

    def device_key_revoked(self, key_id: str, tx: Tx | None = None) -> bool:
        """Whether the phone key ``key_id`` has been revoked (or never existed); read in ``tx``
        when the caller holds one."""
        if tx is None:
            with self.store.snapshot() as own:
                row = own.get(device_keys, key_id)
        else:
            row = tx.get(device_keys, key_id)
        return row is None or row.revoked_at is not None

    @staticmethod
    def _registered(tx: Tx, key: DeviceKey, user_id: str) -> DeviceKey | None:
        """The key as registered already by this volunteer: a phone whose first answer was lost
        (or two of its pages online at once) registers again and must get its key back, not a
        refusal that would cost it the records waiting to be sent. A revoked key stays revoked,
        and a key of someone else's is theirs."""
        row = tx.get(device_keys, key.id)
        if row is None:
            return None
        if row.user_id != user_id:
            raise Conflict("this key is already registered", field="public_key")
        if row.revoked_at is not None:
            raise Conflict("this key was revoked: the phone makes a new one", field="public_key")
        return device_of_row(row)

    @staticmethod
    def _signing_account(tx: Tx, principal: Principal) -> str:
        """The ledger account a phone key signs for: the caller's own, as an active volunteer
        (device keys sign the service records volunteers log, nothing else)."""
        member = tx.get(members, principal.acting_member_id) if principal.acting_member_id else None
        if member is None or not member.is_volunteer:
            raise Forbidden(
                "device keys sign service records: only an active volunteer registers one",
                field="public_key",
            )
        return str(member.ledger_account)

    def _log_device(self, key: DeviceKey, account: str, action: str) -> None:
        entry_id = f"device:{key.id}" if action == "register" else f"device-revoked:{key.id}"
        public_key = base64.b64encode(key.public_key).decode()
        self.ledger.append(Device(entry_id, key.id, public_key, account, action).to_request())

    def check_device_signature(
        self, user_id: str, key_id: str, message: bytes, signature_b64: str
    ) -> None:
        """Raise unless ``signature_b64`` is ``user_id``'s live device key's signature."""
        with self.store.snapshot() as tx:
            row = tx.get(device_keys, key_id)
        if row is None or row.user_id != user_id:
            raise TokenInvalid("unknown device key", field="device_key")
        if row.revoked_at is not None:
            raise TokenInvalid("device key has been revoked", field="device_key")
        try:
            signature = base64.b64decode(signature_b64, validate=True)
            Ed25519PublicKey.from_public_bytes(row.public_key).verify(signature, message)
        except (binascii.Error, ValueError, InvalidSignature) as exc:
            raise TokenInvalid("device signature does not verify", field="signature") from exc
