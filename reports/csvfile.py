"""CSV exports of the statistics, made for the spreadsheet on a civil servant's Windows PC and
safe to open there:

* UTF-8 with a byte-order mark (Excel on Windows reads Chinese only with it), CRLF line ends
  (RFC 4180), every cell quoted where the csv module needs it;
* a text cell beginning with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a
  leading apostrophe, so a name or a note can never run as a formula (CSV injection, OWASP);
* written row by row, so a large month streams instead of sitting in memory;
* an export holding personal data (even masked) is sealed to the recipient's X25519 public key
  with a libsodium sealed box (PyNaCl): only the holder of the private key opens it, and the
  file at rest on a laptop or in a mailbox is ciphertext.

The file name goes to the browser both plain (ASCII) and as RFC 5987 ``filename*`` so that a
Chinese name survives.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
from collections.abc import Iterable, Iterator
from datetime import datetime
from urllib.parse import quote

from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

from accounts.errors import InvalidInput

BOM = "\ufeff"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

Cell = str | int | float | datetime | None


def neutralised(cell: Cell) -> str | int | float:
    """A cell as written: numbers as numbers, times as ``YYYY-MM-DD HH:MM:SS`` in the zone
    they carry, text that a spreadsheet would take for a formula behind an apostrophe."""
    if cell is None:
        return ""
    if isinstance(cell, datetime):
        return cell.strftime("%Y-%m-%d %H:%M:%S")  # as given (the bank's zone); Excel reads it
    if isinstance(cell, str) and cell.startswith(FORMULA_STARTS):
        return "'" + cell
    return cell


def csv_lines(header: Iterable[str], rows: Iterable[Iterable[Cell]]) -> Iterator[bytes]:
    """The CSV document, a chunk of UTF-8 bytes per row (the BOM before the header)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def line(cells: Iterable[Cell]) -> bytes:
        writer.writerow([neutralised(c) for c in cells])
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text.encode("utf-8")

    yield BOM.encode("utf-8") + line(header)
    for row in rows:
        yield line(row)


def csv_bytes(header: Iterable[str], rows: Iterable[Iterable[Cell]]) -> bytes:
    return b"".join(csv_lines(header, rows))


def recipient_key(text: str | None) -> PublicKey:
    """The recipient's X25519 public key from its base64 (standard or URL-safe) text."""
    if not text:
        raise InvalidInput(
            "this export holds personal data: give the recipient's public key",
            field="recipient_key",
        )
    try:
        raw = base64.urlsafe_b64decode(text.replace("+", "-").replace("/", "_") + "==")
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput("recipient_key is not base64", field="recipient_key") from exc
    if len(raw) != PublicKey.SIZE:
        raise InvalidInput(
            "recipient_key must be a 32-byte X25519 public key", field="recipient_key"
        )
    return PublicKey(raw)


def sealed(key: PublicKey, document: bytes) -> bytes:
    """``document`` in a sealed box to ``key`` (X25519 + XSalsa20-Poly1305, anonymous sender)."""
    return bytes(SealedBox(key).encrypt(document))


def opened(private_key: PrivateKey, box: bytes) -> bytes:
    """What the recipient does (``timebank report open``): the document, or ValueError."""
    try:
        return bytes(SealedBox(private_key).decrypt(box))
    except CryptoError as exc:
        raise ValueError("this file was not sealed to this key, or it was changed") from exc


def key_fingerprint(key: PublicKey) -> str:
    """A short name for a recipient's key, for the audit trail and the file name."""
    return base64.urlsafe_b64encode(bytes(key)).decode("ascii")[:11]


def attachment(filename: str) -> str:
    """A Content-Disposition value carrying ``filename`` in any script (RFC 6266 / 5987)."""
    fallback = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
