"""Device keys: a volunteer's phone registers an Ed25519 public key and signs the records it
logs; the server checks those signatures."""

from __future__ import annotations

import base64
import binascii
import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from accounts.base import clean_text, user_id_of
from accounts.errors import (
    Conflict,
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
    device_keys,
)


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
        with self.store.transaction() as tx:
            if tx.get(device_keys, key.id):
                raise Conflict("this key is already registered", field="public_key")
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
        with self.store.transaction() as tx:
            row = tx.get(device_keys, key_id)
            if row is None or row.user_id != user_id:
                raise NotFound(f"no device key {key_id}")
            if row.revoked_at is not None:
                raise Conflict("device key is already revoked")
            tx.update(device_keys, key_id, revoked_at=self.clock())
            return device_of_row(tx.get(device_keys, key_id))

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
