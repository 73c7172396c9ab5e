"""C2SP signed notes, tlog-checkpoints, tlog-cosignature/v1 and tlog-proof, with Ed25519.

Formats (fixed by DESIGN.md; other tools verify them):

* note: ``<text ending in \\n>\\n— <name> <base64(key id[4] ‖ signature)>\\n…``
* key id: ``SHA-256(name ‖ "\\n" ‖ type ‖ public key)[:4]``; type 0x01 for Ed25519 notes,
  0x04 for tlog-cosignature/v1
* verifier key: ``<name>+<hex key id>+<base64(type ‖ public key)>``
* private key: ``PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 ‖ seed)>``
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass
from functools import cached_property

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from ledger.errors import KeyFormatError, NoteError, UnknownKey

ED25519 = 0x01
COSIGNATURE_V1 = 0x04
SIG_PREFIX = "— "  # U+2014 EM DASH, then a space
MAX_NOTE_BYTES = 1 << 20


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise NoteError(f"{what} is not valid base64") from exc


def key_id(name: str, key_type: int, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([key_type]) + public_key).digest()[:4]


def _check_name(name: str) -> None:
    if not name or any(c.isspace() or c == "+" for c in name):
        raise KeyFormatError(f"key name {name!r} must be non-empty, without spaces or '+'")


@dataclass(frozen=True)
class Verifier:
    """A public key that checks signatures of one type made under one name."""

    name: str
    key_type: int
    public_key: bytes

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.key_type, self.public_key)

    @classmethod
    def from_text(cls, text: str) -> Verifier:
        parts = text.strip().split("+", 2)
        if len(parts) != 3:
            raise KeyFormatError("verifier key must be <name>+<hex id>+<base64 key>")
        name, hex_id, b64 = parts
        _check_name(name)
        try:
            raw = base64.b64decode(b64, validate=True)
            wanted_id = bytes.fromhex(hex_id)
        except (binascii.Error, ValueError) as exc:
            raise KeyFormatError("verifier key has a malformed id or key") from exc
        if len(raw) != 33 or raw[0] not in (ED25519, COSIGNATURE_V1):
            raise KeyFormatError("verifier key must be an Ed25519 (0x01) or cosignature (0x04) key")
        verifier = cls(name, raw[0], raw[1:])
        if len(wanted_id) != 4 or verifier.key_id != wanted_id:
            raise KeyFormatError(f"verifier key id {hex_id} does not match its key")
        return verifier

    def to_text(self) -> str:
        raw = bytes([self.key_type]) + self.public_key
        return f"{self.name}+{self.key_id.hex()}+{base64.b64encode(raw).decode()}"

    def check(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True)
class Signer:
    """An Ed25519 private key under a name. ``key_type`` 0x04 makes it a witness cosigner."""

    name: str
    seed: bytes
    key_type: int = ED25519

    def __post_init__(self) -> None:
        _check_name(self.name)
        if len(self.seed) != 32:
            raise KeyFormatError("an Ed25519 seed is 32 bytes")

    @classmethod
    def generate(cls, name: str, key_type: int = ED25519) -> Signer:
        private = Ed25519PrivateKey.generate()
        seed = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return cls(name, seed, key_type)

    @classmethod
    def from_text(cls, text: str, key_type: int = ED25519) -> Signer:
        parts = text.strip().split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise KeyFormatError("private key must be PRIVATE+KEY+<name>+<hex id>+<base64 key>")
        name, hex_id, b64 = parts[2:]
        try:
            raw = base64.b64decode(b64, validate=True)
        except binascii.Error as exc:
            raise KeyFormatError("private key is not valid base64") from exc
        if len(raw) != 33 or raw[0] != ED25519:
            raise KeyFormatError("private key must be an Ed25519 (0x01) seed")
        signer = cls(name, raw[1:], key_type)
        if key_id(name, ED25519, signer.public_key).hex() != hex_id.lower():
            raise KeyFormatError(f"private key id {hex_id} does not match its key")
        return signer

    def to_text(self) -> str:
        kid = key_id(self.name, ED25519, self.public_key).hex()
        seed = base64.b64encode(bytes([ED25519]) + self.seed).decode()
        return f"PRIVATE+KEY+{self.name}+{kid}+{seed}"

    def __reduce__(self) -> tuple[type[Signer], tuple[str, bytes, int]]:
        """Pickled as its fields: the cached key object below does not pickle."""
        return (Signer, (self.name, self.seed, self.key_type))

    # The key object and what derives from it are made once per signer, not once per
    # checkpoint (the sequencer signs one per batch).
    @cached_property
    def _private_key(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.seed)

    @cached_property
    def public_key(self) -> bytes:
        return self._private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @cached_property
    def verifier(self) -> Verifier:
        return Verifier(self.name, self.key_type, self.public_key)

    def sign(self, message: bytes) -> bytes:
        return self._private_key.sign(message)

    def signature_line(self, text: str) -> str:
        """The note signature line over ``text`` (type 0x01 keys only)."""
        sig = self.verifier.key_id + self.sign(text.encode())
        return f"{SIG_PREFIX}{self.name} {base64.b64encode(sig).decode()}\n"


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_id: bytes
    signature: bytes  # everything after the key id (for cosignatures: timestamp ‖ sig)

    def line(self) -> str:
        return (
            f"{SIG_PREFIX}{self.name} {base64.b64encode(self.key_id + self.signature).decode()}\n"
        )


@dataclass(frozen=True)
class Note:
    text: str
    signatures: tuple[NoteSignature, ...]

    @classmethod
    def parse(cls, data: str | bytes) -> Note:
        if isinstance(data, bytes):
            if len(data) > MAX_NOTE_BYTES:
                raise NoteError("note is too large")
            try:
                data = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise NoteError("note is not UTF-8") from exc
        split = data.rfind("\n\n")
        if split < 0 or not data.endswith("\n"):
            raise NoteError("note has no blank line before its signatures")
        text, sig_block = data[: split + 1], data[split + 2 :]
        if "\r" in data or any(ord(c) < 0x20 and c != "\n" for c in data):
            raise NoteError("note contains control characters")
        signatures = []
        for line in sig_block.splitlines():
            if not line.startswith(SIG_PREFIX):
                raise NoteError(f"malformed signature line {line[:40]!r}")
            name, _, b64 = line[len(SIG_PREFIX) :].partition(" ")
            if not name or not b64 or " " in b64:
                raise NoteError(f"malformed signature line {line[:40]!r}")
            raw = _b64decode(b64, f"signature by {name}")
            if len(raw) < 5:
                raise NoteError(f"signature by {name} is too short")
            signatures.append(NoteSignature(name, raw[:4], raw[4:]))
        if not signatures:
            raise NoteError("note has no signatures")
        return cls(text, tuple(signatures))

    def render(self) -> str:
        return self.text + "\n" + "".join(s.line() for s in self.signatures)

    def signed_by(self, verifier: Verifier) -> bool:
        """True when a valid type-0x01 signature by ``verifier`` is on the note."""
        return any(
            sig.name == verifier.name
            and sig.key_id == verifier.key_id
            and verifier.check(self.text.encode(), sig.signature)
            for sig in self.signatures
        )

    def verify(self, verifier: Verifier) -> None:
        """Require a valid signature by ``verifier``; say precisely what is wrong otherwise."""
        candidates = [
            s for s in self.signatures if s.name == verifier.name and s.key_id == verifier.key_id
        ]
        if not candidates:
            names = ", ".join(sorted({s.name for s in self.signatures}))
            wanted = f"{verifier.name}+{verifier.key_id.hex()}"
            raise UnknownKey(f"note is not signed by {wanted} (signed by: {names})")
        if not self.signed_by(verifier):
            raise NoteError(f"signature by {verifier.name} does not verify")


# ---------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def body(self) -> str:
        lines = [
            self.origin,
            str(self.size),
            base64.b64encode(self.root).decode(),
            *self.extensions,
        ]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def parse_body(cls, text: str) -> Checkpoint:
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise NoteError("checkpoint body must have origin, size and root lines")
        origin, size_text, root_text = lines[:3]
        if not origin:
            raise NoteError("checkpoint origin is empty")
        if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
            raise NoteError(f"checkpoint size {size_text!r} is not a decimal number")
        root = _b64decode(root_text, "checkpoint root")
        if len(root) != 32:
            raise NoteError("checkpoint root is not 32 bytes")
        return cls(origin, int(size_text), root, tuple(lines[3:-1]))


def sign_checkpoint(checkpoint: Checkpoint, signer: Signer) -> str:
    body = checkpoint.body()
    return body + "\n" + signer.signature_line(body)


def open_checkpoint(
    data: str | bytes, verifier: Verifier, origin: str | None = None
) -> tuple[Checkpoint, Note]:
    """Parse a signed checkpoint and require the log's signature (and origin, if given)."""
    note = Note.parse(data)
    note.verify(verifier)
    checkpoint = Checkpoint.parse_body(note.text)
    if origin is not None and checkpoint.origin != origin:
        raise NoteError(f"checkpoint origin {checkpoint.origin!r} is not {origin!r}")
    return checkpoint, note


# ---------------------------------------------------------------- cosignatures


def cosignature_message(checkpoint_body: str, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n{checkpoint_body}".encode()


def cosign(checkpoint_body: str, witness: Signer, timestamp: int) -> NoteSignature:
    if witness.key_type != COSIGNATURE_V1:
        raise KeyFormatError("a witness cosigns with a tlog-cosignature/v1 (0x04) key")
    sig = witness.sign(cosignature_message(checkpoint_body, timestamp))
    return NoteSignature(witness.name, witness.verifier.key_id, struct.pack(">Q", timestamp) + sig)


def check_cosignature(note: Note, witness: Verifier) -> int | None:
    """The timestamp of a valid cosignature by ``witness`` on ``note``, or None."""
    for sig in note.signatures:
        if sig.name != witness.name or sig.key_id != witness.key_id or len(sig.signature) != 72:
            continue
        (timestamp,) = struct.unpack(">Q", sig.signature[:8])
        if witness.check(cosignature_message(note.text, timestamp), sig.signature[8:]):
            return int(timestamp)
    return None


# ---------------------------------------------------------------- receipts (tlog-proof)

TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1"


@dataclass(frozen=True)
class TlogProof:
    index: int
    hashes: tuple[bytes, ...]
    checkpoint: str
    extra: bytes | None = None

    def render(self) -> str:
        lines = [TLOG_PROOF_HEADER]
        if self.extra is not None:
            lines.append("extra " + base64.b64encode(self.extra).decode())
        lines.append(f"index {self.index}")
        lines.extend(base64.b64encode(h).decode() for h in self.hashes)
        return "\n".join(lines) + "\n\n" + self.checkpoint

    @classmethod
    def parse(cls, data: str) -> TlogProof:
        head, sep, checkpoint = data.partition("\n\n")
        if not sep:
            raise NoteError("tlog-proof has no blank line before its checkpoint")
        lines = head.split("\n")
        if lines[0] != TLOG_PROOF_HEADER:
            raise NoteError(f"tlog-proof must start with {TLOG_PROOF_HEADER}")
        rest = lines[1:]
        extra = None
        if rest and rest[0].startswith("extra "):
            extra = _b64decode(rest.pop(0)[6:], "tlog-proof extra")
        if not rest or not rest[0].startswith("index ") or not rest[0][6:].isdigit():
            raise NoteError("tlog-proof has no index line")
        index = int(rest.pop(0)[6:])
        hashes = tuple(_b64decode(line, "tlog-proof hash") for line in rest)
        if any(len(h) != 32 for h in hashes):
            raise NoteError("a tlog-proof hash is not 32 bytes")
        return cls(index, hashes, checkpoint, extra)
