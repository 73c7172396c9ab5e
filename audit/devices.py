"""Device signatures, checked from the public log alone.

A volunteer's phone registers an Ed25519 key, and the log says so with a ``device`` entry
(``body.key``, ``body.public_key``, ``body.account``, ``body.action`` ``register`` or
``revoke``). A deposit of a record the phone signed carries ``{"role": "volunteer", "key",
"sig"}``; the signed message is ``ledger.entry.record_signing_message(body.record)``. The book
below follows the keys leaf by leaf and checks each such signature against the key the credited
volunteer had registered, and not revoked, before the deposit.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger.entry import record_signing_message
from ledger.postings import MEMBER, parse_account

# (action, key id, public key or signature (base64), account, record digest): what a leaf says
# about a device key. ``register`` and ``revoke`` come from device entries (digest ""),
# ``signature`` from a deposit (the account is the volunteer it credits).
DeviceFact = tuple[str, str, str, str, str]


def device_fact(body: Mapping[str, Any]) -> DeviceFact | str:
    """What a ``device`` entry says, or why it says nothing usable."""
    key, public, account, action = (
        body.get("key"),
        body.get("public_key"),
        body.get("account"),
        body.get("action"),
    )
    if not all(isinstance(v, str) and v for v in (key, public, account)):
        return "device entry lacks body.key, body.public_key or body.account"
    if action not in ("register", "revoke"):
        return f"device entry's body.action is {action!r}, not 'register' or 'revoke'"
    return (str(action), str(key), str(public), str(account), "")


def signature_fact(
    body: Mapping[str, Any],
    signatures: Sequence[Mapping[str, Any]],
    postings: Sequence[tuple[str, int]],
) -> DeviceFact | None:
    """The volunteer's device signature a deposit carries, if any, with the account it credits."""
    signed = [s for s in signatures if s.get("role") == "volunteer"]
    record = body.get("record")
    if not signed or not isinstance(record, str):
        return None
    key, sig = signed[0].get("key"), signed[0].get("sig")
    if not isinstance(key, str) or not isinstance(sig, str):
        return None  # reported by the deposit's own rules
    credited = [a for a, m in postings if m > 0 and parse_account(a)[1] == MEMBER]
    return ("signature", key, sig, credited[0] if credited else "", record)


def key_id_of(public_key: bytes) -> str:
    """A device key's id: the first 16 bytes of its SHA-256, hex (``accounts.devices``)."""
    return hashlib.sha256(public_key).hexdigest()[:32]


def _raw(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return b""


@dataclass
class DeviceBook:
    """Device keys as the log registered them, carried from leaf to leaf (and between runs)."""

    # key id → (public key, base64; the account it signs for; seq of its revocation or None)
    keys: dict[str, tuple[str, str, int | None]] = field(default_factory=dict)

    def apply(self, seq: int, fact: DeviceFact) -> list[str]:
        """The problems this leaf shows about device keys (empty when there are none)."""
        action, key, data, account, digest = fact
        known = self.keys.get(key)
        if action == "register":
            public = _raw(data)
            if len(public) != 32 or key_id_of(public) != key:
                return [f"device entry registers key {key}, whose id is not its public key's hash"]
            if known is not None:
                return [f"device key {key} is registered a second time"]
            self.keys[key] = (data, account, None)
            return []
        if action == "revoke":
            if known is None or known[1] != account:
                return [f"device entry revokes key {key}, which {account} never registered"]
            if known[2] is not None:
                return [f"device key {key} is revoked a second time (first at seq {known[2]})"]
            self.keys[key] = (known[0], known[1], seq)
            return []
        if known is None:
            return [f"deposit is signed by device key {key}, which no device entry registered"]
        encoded, owner, revoked = known
        if owner != account:
            return [f"deposit credits {account} but is signed by device key {key} of {owner}"]
        if revoked is not None:
            return [f"deposit is signed by device key {key}, revoked at seq {revoked}"]
        try:
            Ed25519PublicKey.from_public_bytes(_raw(encoded)).verify(
                _raw(data), record_signing_message(digest)
            )
        except (ValueError, InvalidSignature):
            return [f"the volunteer's device signature (key {key}) does not verify over the record"]
        return []

    def to_json(self) -> dict[str, Any]:
        return {k: [p, a, r] for k, (p, a, r) in sorted(self.keys.items())}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DeviceBook:
        return cls(
            {
                str(k): (str(p), str(a), None if r is None else int(r))
                for k, (p, a, r) in data.items()
            }
        )
