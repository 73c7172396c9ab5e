"""Is the receiving member the sender, or a confirmed relative? Checked without either bank
showing the other a person's data (docs/federation.md#who-may-receive).

Each bank knows its own members' ID numbers and phones (sealed, ``accounts.protection``) and
the relatives its staff confirmed, always between two members of the same bank. A transfer
crosses banks, so the relation must be found by identity: the sending bank H puts in the
signed delivery (never in its public log) *commitments* to the sender and to the sender's
confirmed relatives in H, each a pair of salted scrypt hashes, one of the ID number and one of
the phone. The salt is H's origin and the transfer, so a commitment is worth nothing for any
other transfer and cannot be looked up in a table. The receiving bank R computes the same
commitments for its member and for the member's confirmed relatives in R, and accepts if

* its member is the sender (same person), or
* its member is one of the sender's confirmed relatives in H, or
* the sender is one of its member's confirmed relatives in R.

Two records are the same person when both have an ID number and the numbers are equal; when
either lacks one, when both have a phone and the phones are equal. The relatives' list is
padded with random commitments to a multiple of ``PAD``, so R learns only whether a person
whose data it holds is among them, not how many there are.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from accounts.errors import InvalidInput
from accounts.protection import normalise_id_number, normalise_phone
from accounts.service import AccountsService

# scrypt's cost: 2 MiB and about 8 ms a hash here, so trying every ID number (~10^11) for one
# transfer costs years of CPU, while a delivery costs a few hashes on each side.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**11, 8, 1
PAD = 4  # the relatives' list is a multiple of this long
MAX_RELATIVES = 64  # in a delivery; more is refused as malformed


@dataclass(frozen=True)
class Person:
    """Commitments (hex) to one person's ID number and phone; None where the bank has none."""

    id: str | None
    phone: str | None

    def same(self, other: Person) -> bool:
        if self.id is not None and other.id is not None:
            return hmac.compare_digest(self.id, other.id)
        return (
            self.phone is not None
            and other.phone is not None
            and hmac.compare_digest(self.phone, other.phone)
        )

    def to_json(self) -> dict[str, str | None]:
        return {"id": self.id, "phone": self.phone}

    @classmethod
    def from_json(cls, value: object) -> Person:
        if not isinstance(value, Mapping) or set(value) != {"id", "phone"}:
            raise ValueError("a person is an object with exactly 'id' and 'phone'")
        parts = [value["id"], value["phone"]]
        for part in parts:
            if part is not None and not _is_hash(part):
                raise ValueError("a commitment is 64 lowercase hex digits or null")
        return cls(parts[0], parts[1])


def _is_hash(value: object) -> bool:
    return (
        isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
    )


@dataclass(frozen=True)
class Sender:
    """What H says of who sends: the sender and the sender's confirmed relatives in H."""

    person: Person
    relatives: tuple[Person, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "person": self.person.to_json(),
            "relatives": [r.to_json() for r in self.relatives],
        }

    @classmethod
    def from_json(cls, value: object) -> Sender:
        if not isinstance(value, Mapping) or set(value) != {"person", "relatives"}:
            raise ValueError("sender is an object with exactly 'person' and 'relatives'")
        relatives = value["relatives"]
        if not isinstance(relatives, list) or len(relatives) > MAX_RELATIVES:
            raise ValueError(f"sender.relatives is a list of at most {MAX_RELATIVES} persons")
        return cls(Person.from_json(value["person"]), tuple(Person.from_json(r) for r in relatives))


def salt(sender_origin: str, transfer: str) -> bytes:
    return f"timebank transfer identity v1\n{sender_origin}\n{transfer}".encode()


def _commit(salt_bytes: bytes, kind: str, value: str | None) -> str | None:
    if value is None:
        return None
    digest = hashlib.scrypt(
        f"{kind}:{value}".encode(),
        salt=salt_bytes,
        n=SCRYPT_N,
        r=SCRYPT_R,
        p=SCRYPT_P,
        maxmem=64 * 1024 * 1024,
        dklen=32,
    )
    return digest.hex()


def _normalised(normalise: Callable[[str], str], value: str | None) -> str | None:
    """A stored number as registration normalises it now; one stored before the rules were
    strict (a landline, an ID number without its check character) as it was stored: it still
    matches itself, and a transfer is not refused for it."""
    if value is None:
        return None
    try:
        return normalise(value)
    except InvalidInput:
        return value


def person(salt_bytes: bytes, id_number: str | None, phone: str | None) -> Person:
    """The commitments to a person's (already normalised) ID number and phone."""
    return Person(
        _commit(salt_bytes, "id", _normalised(normalise_id_number, id_number)),
        _commit(salt_bytes, "phone", _normalised(normalise_phone, phone)),
    )


class Identities:
    """Both sides of the check over one bank's members (``accounts``)."""

    def __init__(self, accounts: AccountsService) -> None:
        self.accounts = accounts

    def _person(self, salt_bytes: bytes, member_id: str) -> Person:
        id_number, phone = self.accounts.identifiers(member_id)
        return person(salt_bytes, id_number, phone)

    def sender(self, sender_origin: str, transfer: str, account: str) -> Sender:
        """H: the commitments for the member whose ledger ``account`` sends ``transfer``."""
        found = self.accounts.member_by_account(account)
        s = salt(sender_origin, transfer)
        if found is None:
            me, relatives = Person(None, None), []
        else:
            me = self._person(s, found.id)
            relatives = [self._person(s, r) for r in self.accounts.confirmed_relative_ids(found.id)]
        while len(relatives) % PAD or not relatives:
            relatives.append(Person(secrets.token_hex(32), secrets.token_hex(32)))
        return Sender(me, tuple(sorted(relatives, key=lambda p: (p.id or "", p.phone or ""))))

    def related(self, sender: Sender, sender_origin: str, transfer: str, member_id: str) -> str:
        """R: how our member ``member_id`` relates to the sender ('self', 'relative-there',
        'relative-here'), or '' when neither the same person nor a confirmed relative."""
        s = salt(sender_origin, transfer)
        me = self._person(s, member_id)
        if me.same(sender.person):
            return "self"
        if any(me.same(r) for r in sender.relatives):
            return "relative-there"
        for relative in self.accounts.confirmed_relative_ids(member_id):
            if self._person(s, relative).same(sender.person):
                return "relative-here"
        return ""
