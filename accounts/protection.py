"""Personal data at rest and on the way out: encryption, blind indexes, masking.

* Sensitive fields (phone, ID number, address, health notes) are sealed with AES-256-GCM under
  a data key kept outside the database (``TIMEBANK_DATA_KEY_FILE``, default
  ``<data dir>/data.key``, mode 0600). The associated data binds each ciphertext to its member
  and field, so a ciphertext copied onto another member's row does not decrypt.
* Phone and ID numbers are searchable through a keyed blind index: HMAC-SHA256 under a key
  derived from the data key, over the normalised value. Equal values match; the index reveals
  nothing without the key.
* Responses carry masked values (``138****1234``) unless the caller's role needs the full one.
* The public log names the people who acted by per-entry pseudonyms (``pseudonym``), never by
  their user ids.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import partial
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from accounts.errors import InvalidInput

NONCE_BYTES = 12
VERSION = b"\x01"


class DataKeyError(RuntimeError):
    """The data key is missing, unreadable or readable by others."""


def data_key_path(data_dir: Path, env: Mapping[str, str] | None = None) -> Path:
    """``TIMEBANK_DATA_KEY_FILE``, or ``data.key`` in the data dir."""
    env = os.environ if env is None else env
    configured = env.get("TIMEBANK_DATA_KEY_FILE")
    return Path(configured).expanduser() if configured else data_dir / "data.key"


def load_or_create_data_key(path: Path) -> bytes:
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise DataKeyError(f"data key {path} is readable by others (mode {mode:o}); chmod 600")
        try:
            key = base64.b64decode(path.read_text(encoding="ascii").strip(), validate=True)
        except ValueError as exc:
            raise DataKeyError(f"data key {path} is not base64") from exc
        if len(key) != 32:
            raise DataKeyError(f"data key {path} must hold 32 bytes")
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, base64.b64encode(key) + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return load_or_create_data_key(path)
    finally:
        tmp.unlink()
    return key


def _derived(data_key: bytes, purpose: bytes) -> bytes:
    return hmac.new(data_key, purpose, hashlib.sha256).digest()


@dataclass(frozen=True)
class Protector:
    data_key: bytes
    # Derived once: every keyed request seals, indexes or names with them (docs/performance.md).
    _index_key: bytes = field(init=False, repr=False, compare=False)
    _pseudonym_key: bytes = field(init=False, repr=False, compare=False)
    _reference_key: bytes = field(init=False, repr=False, compare=False)
    _aead: AESGCM = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        derive = partial(_derived, self.data_key)
        object.__setattr__(self, "_index_key", derive(b"timebank blind index v1"))
        object.__setattr__(self, "_pseudonym_key", derive(b"timebank log pseudonym v1"))
        object.__setattr__(self, "_reference_key", derive(b"timebank log reference v1"))
        object.__setattr__(self, "_aead", AESGCM(self.data_key))

    def seal(self, value: str, member_id: str, field: str) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        aad = f"{member_id}/{field}".encode()
        return VERSION + nonce + self._aead.encrypt(nonce, value.encode(), aad)

    def open(self, sealed: bytes, member_id: str, field: str) -> str:
        if sealed[:1] != VERSION:
            raise DataKeyError(f"unknown ciphertext version for {field}")
        nonce, body = sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :]
        aad = f"{member_id}/{field}".encode()
        return self._aead.decrypt(nonce, body, aad).decode()

    def pseudonym(self, entry_id: str, person: str) -> str:
        """How the public log names a person who acted in entry ``entry_id``: ``p:`` and 20 hex
        digits of a keyed hash. The same person gets the same name within an entry (so an
        auditor sees that whoever confirmed did not also verify) and unrelated names across
        entries, none of them an id that other APIs hand out; the bank, holding the data key,
        can still say who it was. Nobody (``""``) stays nobody."""
        if not person:
            return ""
        mac = hmac.new(self._pseudonym_key, f"{entry_id}\x00{person}".encode(), hashlib.sha256)
        return "p:" + mac.hexdigest()[:20]

    def reference(self, kind: str, object_id: str) -> str:
        """How the public log names a request or a record: 20 hex digits of a keyed hash, the
        same in every entry about that object (so an auditor pairs a hold with its release)
        but not the id that other APIs hand out, so knowing a request's id does not find the
        elder's account in the log."""
        mac = hmac.new(self._reference_key, f"{kind}\x00{object_id}".encode(), hashlib.sha256)
        return mac.hexdigest()[:20]

    def blind_index(self, kind: str, normalised: str) -> str:
        mac = hmac.new(self._index_key, f"{kind}:{normalised}".encode(), hashlib.sha256)
        return mac.hexdigest()


# ------------------------------------------------------------------ normalisation

# What people type around the digits: spaces, dashes and brackets, in ASCII or full width (a
# Chinese keyboard's ``１３８－００００``), which count as the ASCII characters.
_WIDE = str.maketrans("０１２３４５６７８９＋Ｘｘ（）－　", "0123456789+Xx()- ")
_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015()]")
# A mainland China mobile number: 11 digits, 1 then 3-9 (GB/T 13623 and the MIIT numbering plan).
MOBILE = re.compile(r"1[3-9][0-9]{9}\Z")
COUNTRY_PREFIXES = ("+86", "0086", "86")
# A resident ID number (居民身份证号, GB 11643-1999): a 6-digit address code, the birth date
# (YYYYMMDD), a 3-digit sequence number and a check character, 0-9 or X.
ID_NUMBER = re.compile(r"[0-9]{17}[0-9X]\Z")
ID_WEIGHTS = tuple(pow(2, 17 - i, 11) for i in range(17))
ID_CHECK = "10X98765432"


def normalise_phone(value: str, field: str = "phone") -> str:
    """A member's phone as stored and indexed: the 11 digits of a mainland mobile number, from
    what people type (``138 0000 1234``, ``138-0000-1234``, ``+86 13800001234``,
    ``8613800001234``). Anything else is refused: the field is a mobile (手机号), the number the
    centre calls and that finds the member; an elder without one leaves it empty."""
    cleaned = _SEPARATORS.sub("", value.translate(_WIDE))
    for prefix in COUNTRY_PREFIXES:
        if cleaned.startswith(prefix) and len(cleaned) == len(prefix) + 11:
            cleaned = cleaned[len(prefix) :]
            break
    if not MOBILE.match(cleaned):
        raise InvalidInput(
            "%(field)s must be a mobile number: 11 digits, a 1 then 3 to 9 "
            "(spaces, dashes and +86 may be typed)",
            field=field,
        )
    return cleaned


def id_check_character(first17: str) -> str:
    """The GB 11643 check character of an ID number's first 17 digits (ISO 7064 MOD 11-2)."""
    return ID_CHECK[sum(int(d) * w for d, w in zip(first17, ID_WEIGHTS, strict=True)) % 11]


def id_birth_date(id_number: str) -> date:
    """The birth date an ID number (normalised: ``normalise_id_number``) holds, characters 7 to
    14."""
    return date(int(id_number[6:10]), int(id_number[10:12]), int(id_number[12:14]))


def normalise_id_number(value: str, field: str = "id_number") -> str:
    """A resident ID number as stored and indexed: 18 characters, a lower-case x as X, spaces
    and dashes dropped. Refused unless characters 7 to 14 are a date and the last is the
    GB 11643 check character of the first 17 (which no single mistyped digit and no two
    neighbouring digits swapped pass)."""
    cleaned = _SEPARATORS.sub("", value.translate(_WIDE)).upper()
    if not ID_NUMBER.match(cleaned):
        raise InvalidInput(
            "%(field)s must be 18 characters: 17 digits, then a digit or X", field=field
        )
    try:
        id_birth_date(cleaned)
    except ValueError:
        raise InvalidInput(
            "%(field)s: characters 7 to 14 are not a date of birth (YYYYMMDD)", field=field
        ) from None
    if cleaned[17] != id_check_character(cleaned[:17]):
        raise InvalidInput(
            "%(field)s: the last character does not match the others: look for a mistyped digit",
            field=field,
        )
    return cleaned


# ------------------------------------------------------------------ masking


def mask_phone(phone: str | None) -> str | None:
    if not phone:
        return phone
    if len(phone) <= 7:
        return phone[:2] + "*" * (len(phone) - 2)
    return phone[:3] + "*" * (len(phone) - 7) + phone[-4:]


def mask_id_number(value: str | None) -> str | None:
    if not value:
        return value
    keep = 2 if len(value) < 10 else 4
    return value[:keep] + "*" * (len(value) - 2 * keep) + value[-keep:]


def mask_name(name: str | None) -> str | None:
    if not name:
        return name
    if len(name) == 1:
        return name
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


def mask_address(address: str | None) -> str | None:
    if not address:
        return address
    visible = max(1, min(6, len(address) // 3))
    return address[:visible] + "****"
