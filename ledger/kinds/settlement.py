"""The monthly settlement between two district banks (docs/federation.md#settlement).

Both banks sign one **settlement document**, the same bytes, and each appends a ``settlement``
entry carrying the document and both signatures. It moves no minutes: it is the two banks'
agreed statement of their position at the end of a month (what each bank's members sent the
other's, as credited there, and the net), pinned to a tree head of each log. The gross
``due_to``/``due_from`` balances stay as the transfers left them, so each transfer stays
traceable to its entry; docs/federation.md#settlement says why.

The document, canonical JSON (``ledger.entry.canonical_json``)::

    {"format": "timebank-settlement/v1", "month": "2026-11",
     "banks": [{"origin": A, "cutoff_size": n, "cutoff_root": hex, "sent": minutes}, B's],
     "net_minutes": A's sent - B's sent}

``banks`` is ordered by origin, so both banks build the same bytes whoever proposes. A bank's
cut-off is its log's first ``cutoff_size`` entries: those timed before the month's end (the
first instant of the next month, UTC); ``cutoff_root`` is that tree's RFC 6962 root. ``sent``
is the minutes of the bank's ``transfer_out`` entries to the other bank among those entries
that the other bank credited (``transfer_in``). ``net_minutes`` > 0: A owes B that many.

Each bank signs ``SIGNING_PREFIX + canonical JSON of the document`` with its peer request key
(Ed25519, ``<origin>/peers``); the prefix keeps the signature from ever being taken for an HTTP
request's or a checkpoint's.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Self

from ledger.entry import JSON, EntryRequest, canonical_json
from ledger.errors import MalformedEntry
from ledger.kinds.fields import of_kind, text, whole
from ledger.note import Signer, Verifier

FORMAT = "timebank-settlement/v1"
SIGNING_PREFIX = b"timebank-settlement/v1\n"
MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])\Z")
ROOT = re.compile(r"^[0-9a-f]{64}\Z")
SIGNATURE = re.compile(r"^[A-Za-z0-9+/]{86}==\Z")


def month_end(month: str) -> str:
    """The first instant after ``month`` (YYYY-MM), in the log's time format."""
    found = MONTH.match(month)
    if found is None:
        raise MalformedEntry("month must be YYYY-MM", field="month")
    year, number = int(found.group(1)), int(found.group(2))
    year, number = (year + 1, 1) if number == 12 else (year, number + 1)
    return f"{year:04d}-{number:02d}-01T00:00:00.000000Z"


@dataclass(frozen=True)
class CutOff:
    """One bank's side: its log's tree head at the month's end and what its members sent."""

    origin: str
    size: int
    root: str  # hex
    sent: int

    def to_json(self) -> dict[str, JSON]:
        return {
            "origin": self.origin,
            "cutoff_size": self.size,
            "cutoff_root": self.root,
            "sent": self.sent,
        }

    @classmethod
    def from_json(cls, value: JSON, where: str) -> Self:
        if not isinstance(value, Mapping):
            raise MalformedEntry(f"{where} must be an object", field=where)
        made = cls(
            text(value, "origin"),
            whole(value, "cutoff_size"),
            text(value, "cutoff_root"),
            whole(value, "sent"),
        )
        if not ROOT.match(made.root):
            raise MalformedEntry(f"{where}.cutoff_root must be 64 hex digits", field=where)
        if made.size < 0 or made.sent < 0:
            raise MalformedEntry(f"{where}: sizes and minutes are not negative", field=where)
        return made


@dataclass(frozen=True)
class SettlementDocument:
    """What both banks sign: ``banks`` ordered by origin, ``net_minutes`` = first's sent minus
    second's (what the first owes the second; negative: the second owes the first)."""

    month: str
    banks: tuple[CutOff, CutOff]
    net_minutes: int

    @classmethod
    def of(cls, month: str, one: CutOff, other: CutOff) -> Self:
        first, second = sorted((one, other), key=lambda c: c.origin)
        return cls(month, (first, second), first.sent - second.sent)

    def side(self, origin: str) -> CutOff:
        found = next((b for b in self.banks if b.origin == origin), None)
        if found is None:
            raise MalformedEntry(f"the settlement does not name {origin}", field="banks")
        return found

    def to_json(self) -> dict[str, JSON]:
        return {
            "format": FORMAT,
            "month": self.month,
            "banks": [b.to_json() for b in self.banks],
            "net_minutes": self.net_minutes,
        }

    def signed_bytes(self) -> bytes:
        """Exactly what each bank signs."""
        return SIGNING_PREFIX + canonical_json(self.to_json())

    @classmethod
    def from_json(cls, value: JSON) -> Self:
        if not isinstance(value, Mapping) or value.get("format") != FORMAT:
            raise MalformedEntry(f"the document is not a {FORMAT} document", field="document")
        banks = value.get("banks")
        if not isinstance(banks, list) or len(banks) != 2:
            raise MalformedEntry("document.banks must name two banks", field="document.banks")
        first = CutOff.from_json(banks[0], "document.banks[0]")
        second = CutOff.from_json(banks[1], "document.banks[1]")
        if first.origin >= second.origin:
            raise MalformedEntry("document.banks must be ordered by origin", field="document")
        net = value.get("net_minutes")
        if not isinstance(net, int) or isinstance(net, bool):
            raise MalformedEntry("document.net_minutes must be a whole number", field="document")
        made = cls(text(value, "month"), (first, second), net)
        month_end(made.month)  # checks the form
        if set(value) != {"format", "month", "banks", "net_minutes"}:
            raise MalformedEntry("document has fields beyond the format's", field="document")
        return made


@dataclass(frozen=True)
class BankSignature:
    """One bank's Ed25519 signature of the document, by its request key ``key`` (key id)."""

    origin: str
    key: str  # <origin>/peers+<hex key id>
    signature: str  # base64, 64 bytes

    @classmethod
    def make(cls, origin: str, document: SettlementDocument, signer: Signer) -> Self:
        raw = signer.sign(document.signed_bytes())
        key = f"{signer.verifier.name}+{signer.verifier.key_id.hex()}"
        return cls(origin, key, base64.b64encode(raw).decode())

    def holds(self, document: SettlementDocument, verifier: Verifier) -> bool:
        """True if ``verifier`` (that bank's request key) made this signature of ``document``."""
        if self.key != f"{verifier.name}+{verifier.key_id.hex()}":
            return False
        try:
            raw = base64.b64decode(self.signature, validate=True)
        except binascii.Error:
            return False
        return verifier.check(document.signed_bytes(), raw)

    def to_json(self) -> dict[str, JSON]:
        return {"origin": self.origin, "key": self.key, "signature": self.signature}

    @classmethod
    def from_json(cls, value: JSON, where: str) -> Self:
        if not isinstance(value, Mapping):
            raise MalformedEntry(f"{where} must be an object", field=where)
        made = cls(text(value, "origin"), text(value, "key"), text(value, "signature"))
        if not SIGNATURE.match(made.signature):
            raise MalformedEntry(f"{where}.signature is not 64 bytes of base64", field=where)
        return made


@dataclass(frozen=True)
class Settlement:
    """The entry: the document and both banks' signatures (in the document's bank order),
    under ``settlement:<the other bank's origin>:<month>``; no postings."""

    kind: ClassVar[str] = "settlement"
    peer_origin: str
    document: SettlementDocument
    signatures: tuple[BankSignature, BankSignature]

    @property
    def id(self) -> str:
        return settlement_id(self.peer_origin, self.document.month)

    def to_request(self) -> EntryRequest:
        body: dict[str, JSON] = {
            "document": self.document.to_json(),
            "signatures": [s.to_json() for s in self.signatures],
        }
        return EntryRequest(self.kind, self.id, (), body)

    @classmethod
    def from_entry(cls, request: EntryRequest) -> Self:
        of_kind(request, cls.kind)
        if request.postings:
            raise MalformedEntry("a settlement moves no minutes", field="postings")
        document = SettlementDocument.from_json(request.body.get("document"))
        raw = request.body.get("signatures")
        if not isinstance(raw, list) or len(raw) != 2:
            raise MalformedEntry("body.signatures must be two", field="body.signatures")
        signatures = (
            BankSignature.from_json(raw[0], "body.signatures[0]"),
            BankSignature.from_json(raw[1], "body.signatures[1]"),
        )
        if tuple(s.origin for s in signatures) != tuple(b.origin for b in document.banks):
            raise MalformedEntry(
                "body.signatures are the two banks', in the document's order",
                field="body.signatures",
            )
        parts = request.id.split(":", 1)
        peer = parts[1].rsplit(":", 1)[0] if len(parts) == 2 else ""
        made = cls(peer, document, signatures)
        if peer not in (b.origin for b in document.banks) or request.id != made.id:
            raise MalformedEntry(
                "a settlement's id is settlement:<the other bank's origin>:<month>", field="id"
            )
        return made


def settlement_id(peer_origin: str, month: str) -> str:
    return f"settlement:{peer_origin}:{month}"
