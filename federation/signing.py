"""Signed requests between peers: HTTP Message Signatures (RFC 9421) with Ed25519.

Every request one bank sends another carries

* ``Date`` (IMF-fixdate) and ``Content-Digest: sha-256=:<base64>:`` (RFC 9530) of the body;
* ``Signature-Input: peer=("@method" "@path" "date" "content-digest");created=<unix>;
  keyid="<key name>+<hex key id>";alg="ed25519"``;
* ``Signature: peer=:<base64 Ed25519 signature of the signature base>:``.

The signature base is RFC 9421 §2.5's: one line per covered component, then the
``@signature-params`` line, joined by ``\\n``. The key id is the note key's own name and id
(``ledger.note``), so the receiver finds the peer by it. Why this and not tokens:
docs/federation.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

from ledger.note import Signer, Verifier

LABEL = "peer"
COMPONENTS = ('"@method"', '"@path"', '"date"', '"content-digest"')
MAX_SKEW_SECONDS = 300  # a request dated further from the receiver's clock is refused
_INPUT = re.compile(
    r'^peer=\("@method" "@path" "date" "content-digest"\);created=(\d{1,12});'
    r'keyid="([\x21\x23-\x7e]{1,250})";alg="ed25519"\Z'
)
_SIGNATURE = re.compile(r"^peer=:([A-Za-z0-9+/]{86}==):\Z")
_DIGEST = re.compile(r"(?:^|,)\s*sha-256=:([A-Za-z0-9+/]{43}=):")


class SignatureError(ValueError):
    """The request's signature does not hold; the message says which part failed."""


def content_digest(body: bytes) -> str:
    return f"sha-256=:{base64.b64encode(hashlib.sha256(body).digest()).decode()}:"


def signature_params(created: int, key_id: str) -> str:
    return f'({" ".join(COMPONENTS)});created={created};keyid="{key_id}";alg="ed25519"'


def signature_base(method: str, path: str, date: str, digest: str, params: str) -> bytes:
    lines = (
        f'"@method": {method.upper()}',
        f'"@path": {path}',
        f'"date": {date}',
        f'"content-digest": {digest}',
        f'"@signature-params": {params}',
    )
    return "\n".join(lines).encode()


def key_id(verifier: Verifier) -> str:
    return f"{verifier.name}+{verifier.key_id.hex()}"


def sign_request(
    signer: Signer, method: str, path: str, body: bytes, now: datetime | None = None
) -> dict[str, str]:
    """The headers that sign ``method path`` with ``body`` (``path`` without the query)."""
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    date = format_datetime(now, usegmt=True)
    digest = content_digest(body)
    params = signature_params(int(now.timestamp()), key_id(signer.verifier))
    signature = signer.sign(signature_base(method, path, date, digest, params))
    return {
        "Date": date,
        "Content-Digest": digest,
        "Signature-Input": f"{LABEL}={params}",
        "Signature": f"{LABEL}=:{base64.b64encode(signature).decode()}:",
    }


def verify_request(
    headers: Mapping[str, str],
    method: str,
    path: str,
    body: bytes,
    keys: Callable[[str], Verifier | None],
    now: datetime | None = None,
) -> Verifier:
    """The key that signed this request, or ``SignatureError``. ``headers`` are looked up by
    lower-case name; ``keys`` maps a key id to the peer's request key (None: unknown)."""
    now = now or datetime.now(UTC)
    found = _INPUT.match(headers.get("signature-input", ""))
    if found is None:
        raise SignatureError("Signature-Input is missing or not peer=(...) as documented")
    created, wanted = int(found.group(1)), found.group(2)
    signature = _SIGNATURE.match(headers.get("signature", ""))
    if signature is None:
        raise SignatureError("Signature is missing or not peer=:<base64>:")
    digest_header = headers.get("content-digest", "")
    digest = _DIGEST.search(digest_header)
    if digest is None or f"sha-256=:{digest.group(1)}:" != content_digest(body):
        raise SignatureError("Content-Digest is missing or does not match the body")
    date = headers.get("date", "")
    try:
        dated = parsedate_to_datetime(date)
    except (TypeError, ValueError) as exc:
        raise SignatureError("Date is missing or not an HTTP date") from exc
    if dated.tzinfo is None:
        raise SignatureError("Date is missing or not an HTTP date")
    for moment in (dated.timestamp(), float(created)):
        if abs(moment - now.timestamp()) > MAX_SKEW_SECONDS:
            raise SignatureError(f"the request is dated more than {MAX_SKEW_SECONDS} s away")
    verifier = keys(wanted)
    if verifier is None:
        raise SignatureError(f"no peer has the key {wanted}")
    base = signature_base(method, path, date, digest_header, signature_params(created, wanted))
    try:
        raw = base64.b64decode(signature.group(1), validate=True)
    except binascii.Error as exc:
        raise SignatureError("Signature is not base64") from exc
    if not verifier.check(base, raw):
        raise SignatureError("the signature does not verify with the peer's key")
    return verifier
