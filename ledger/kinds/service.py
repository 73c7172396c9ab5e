"""Kinds that earn and spend minutes: deposits, the two-phase redemption, exchanges."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Self

from ledger.entry import JSON, Ceiling, EntryRequest, Posting
from ledger.errors import MalformedEntry
from ledger.kinds.fields import (
    bank_of,
    maybe_text,
    moved,
    of_kind,
    optional,
    pair,
    text,
    weighted,
    whole,
)
from ledger.postings import (
    CLEARING,
    HOLD,
    ISSUANCE,
    MEMBER,
    POOL,
    REDEMPTION,
    clearing_account,
    hold_account,
    parse_account,
    system_account,
)


@dataclass(frozen=True)
class Deposit:
    """A verified service record: ``minutes`` × ``weight`` issued to the volunteer, the part
    over the stored-time cap to the pool (``to_pool``, which the log's writer decides).
    ``volunteer`` is None only when read from a deposit that went wholly to the pool."""

    kind: ClassVar[str] = "deposit"
    id: str
    volunteer: str | None
    bank: str
    record: str
    service: str
    service_version: int
    minutes: int
    weight: int
    policy: int
    org: str
    confirmed_by: str
    confirmed_as: str
    verified_by: str
    to_pool: int = 0
    device_key: str | None = None
    device_signature: str | None = None

    @property
    def amount(self) -> int:
        return weighted(self.minutes, self.weight)

    def to_request(self, stored_cap: int | None = None) -> EntryRequest:
        """The entry; with ``stored_cap``, the writer sends what would take the volunteer
        (with their hold) past it to the pool and writes that into ``to_pool``."""
        if self.volunteer is None:
            raise ValueError("a deposit is written for a volunteer")
        pool = system_account(self.bank, POOL)
        kept = self.amount - self.to_pool
        postings = [Posting(system_account(self.bank, ISSUANCE), -self.amount)]
        postings += [Posting(self.volunteer, kept)] if kept else []
        postings += [Posting(pool, self.to_pool)] if self.to_pool else []
        signatures: list[Mapping[str, str]] = []
        if self.device_key and self.device_signature:
            signatures.append(
                {"role": "volunteer", "key": self.device_key, "sig": self.device_signature}
            )
        signatures.append({"role": "verifier", "by": self.verified_by})
        ceiling = None
        if stored_cap is not None:
            counted = (self.volunteer, hold_account(self.volunteer))
            ceiling = Ceiling(self.volunteer, counted, stored_cap, pool, "to_pool")
        body: dict[str, JSON] = {
            "record": self.record,
            "service": self.service,
            "minutes": self.minutes,
            "weight": self.weight,
            "policy": self.policy,
            "service_version": self.service_version,
            "org": self.org,
            "confirmed_by": self.confirmed_by,
            "confirmed_as": self.confirmed_as,
            "verified_by": self.verified_by,
            "to_pool": self.to_pool,
        }
        return EntryRequest(self.kind, self.id, tuple(postings), body, tuple(signatures), ceiling)

    @classmethod
    def from_entry(cls, request: EntryRequest) -> Self:
        of_kind(request, cls.kind)
        body = request.body
        issued = moved(request, ISSUANCE, -1)
        credited = [p for p in request.postings if parse_account(p.account)[1] == MEMBER]
        if len(credited) > 1:
            raise MalformedEntry("a deposit credits one member", field="postings")
        device = next((s for s in request.signatures if s.get("role") == "volunteer"), {})
        return cls(
            id=request.id,
            volunteer=credited[0].account if credited else None,
            bank=bank_of(issued.account),
            record=text(body, "record"),
            service=text(body, "service"),
            service_version=whole(body, "service_version"),
            minutes=whole(body, "minutes"),
            weight=whole(body, "weight"),
            policy=whole(body, "policy"),
            org=text(body, "org"),
            confirmed_by=text(body, "confirmed_by"),
            confirmed_as=text(body, "confirmed_as"),
            verified_by=text(body, "verified_by"),
            to_pool=whole(body, "to_pool", default=0),
            device_key=device.get("key"),
            device_signature=device.get("sig"),
        )


def _claimed_text(body: Mapping[str, JSON], name: str) -> str | None:
    value = body.get(name)
    return value if isinstance(value, str) else None


def _claimed_int(body: Mapping[str, JSON], name: str) -> int | None:
    value = body.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class DepositClaims:
    """A deposit read before anyone trusts it: each field of :class:`Deposit`'s body and
    signatures as the entry holds it, None where it is missing or of another type. The auditor
    reads deposits through it and judges them by its own rules (``audit.rules``), naming every
    problem; ``Deposit.from_entry`` refuses such a body at its first bad field instead."""

    record: str | None
    minutes: int | None
    weight: int | None
    confirmed_by: str | None
    confirmed_as: str | None
    verified_by: str | None
    to_pool: int | None
    verifier_signers: tuple[JSON, ...]  # ``by`` of each {"role": "verifier"} signature
    device_signatures: tuple[tuple[JSON, JSON], ...]  # (key, sig) of each volunteer's one

    @classmethod
    def of(
        cls, body: Mapping[str, JSON], signatures: Sequence[Mapping[str, JSON]]
    ) -> DepositClaims:
        return cls(
            record=_claimed_text(body, "record"),
            minutes=_claimed_int(body, "minutes"),
            weight=_claimed_int(body, "weight"),
            confirmed_by=_claimed_text(body, "confirmed_by"),
            confirmed_as=_claimed_text(body, "confirmed_as"),
            verified_by=_claimed_text(body, "verified_by"),
            to_pool=_claimed_int(body, "to_pool"),
            verifier_signers=tuple(s.get("by") for s in signatures if s.get("role") == "verifier"),
            device_signatures=tuple(
                (s.get("key"), s.get("sig")) for s in signatures if s.get("role") == "volunteer"
            ),
        )


@dataclass(frozen=True)
class Reserve:
    """An accepted request's cost moved from the elder to her hold: ``minutes`` (of the
    request) × ``weight``."""

    kind: ClassVar[str] = "reserve"
    id: str
    elder: str
    request: str
    service: str
    minutes: int
    weight: int

    @property
    def amount(self) -> int:
        return weighted(self.minutes, self.weight)

    def to_request(self) -> EntryRequest:
        body: dict[str, JSON] = {
            "request": self.request,
            "service": self.service,
            "minutes": self.minutes,
            "weight": self.weight,
        }
        postings = (
            Posting(self.elder, -self.amount),
            Posting(hold_account(self.elder), self.amount),
        )
        return EntryRequest(self.kind, self.id, postings, body)

    @classmethod
    def from_entry(cls, request: EntryRequest) -> Self:
        of_kind(request, cls.kind)
        out, _ = pair(request, MEMBER, HOLD)
        body = request.body
        return cls(
            request.id,
            out.account,
            text(body, "request"),
            text(body, "service"),
            whole(body, "minutes"),
            whole(body, "weight"),
        )


@dataclass(frozen=True)
class Redemption:
    """Minutes paid for a service: from the elder's hold (two-phase), or in the demo's past
    months from her account directly (``source``)."""

    kind: ClassVar[str] = "redemption"
    id: str
    source: str
    minutes: int
    service: str
    request: str | None = None
    record: str | None = None

    def to_request(self) -> EntryRequest:
        redemption = system_account(bank_of(self.source), REDEMPTION)
        postings = (Posting(self.source, -self.minutes), Posting(redemption, self.minutes))
        body = optional(request=self.request, record=self.record, service=self.service)
        return EntryRequest(self.kind, self.id, postings, body)

    @classmethod
    def from_entry(cls, request: EntryRequest) -> Self:
        of_kind(request, cls.kind)
        if len(request.postings) != 2:
            raise MalformedEntry("a redemption has two postings", field="postings")
        into = moved(request, REDEMPTION, +1)
        out = next(p for p in request.postings if p is not into)
        body = request.body
        return cls(
            request.id,
            out.account,
            into.minutes,
            text(body, "service"),
            maybe_text(body, "request"),
            maybe_text(body, "record"),
        )


@dataclass(frozen=True)
class Release:
    """Held minutes back to the elder: a cancelled ``request``, or what an approved
    ``reversal`` put back on the hold. Exactly one of the two."""

    kind: ClassVar[str] = "release"
    id: str
    elder: str
    minutes: int
    request: str | None = None
    reversal: str | None = None

    def to_request(self) -> EntryRequest:
        if (self.request is None) == (self.reversal is None):
            raise ValueError("a release names a request or a reversal")
        postings = (
            Posting(hold_account(self.elder), -self.minutes),
            Posting(self.elder, self.minutes),
        )
        body = optional(request=self.request, reversal=self.reversal)
        return EntryRequest(self.kind, self.id, postings, body)

    @classmethod
    def from_entry(cls, request: EntryRequest) -> Self:
        of_kind(request, cls.kind)
        _, into = pair(request, HOLD, MEMBER)
        body = request.body
        ref, reversal = maybe_text(body, "request"), maybe_text(body, "reversal")
        if (ref is None) == (reversal is None):
            wanted = "reversal" if request.id.startswith("release:reversal:") else "request"
            raise MalformedEntry(
                "a release names body.request or body.reversal", field=f"body.{wanted}"
            )
        return cls(request.id, into.account, into.minutes, ref, reversal)


@dataclass(frozen=True)
class Refund:
    """A redemption paid back because staff rejected the record of its service."""

    kind: ClassVar[str] = "refund"
    id: str
    elder: str
    minutes: int
    request: str
    record: str

    def to_request(self) -> EntryRequest:
        redemption = system_account(bank_of(self.elder), REDEMPTION)
        postings = (Posting(redemption, -self.minutes), Posting(self.elder, self.minutes))
        body: dict[str, JSON] = {"request": self.request, "record": self.record}
        return EntryRequest(self.kind, self.id, postings, body)

    @classmethod
    def from_entry(cls, request: EntryRequest) -> Self:
        of_kind(request, cls.kind)
        _, into = pair(request, REDEMPTION, MEMBER)
        body = request.body
        return cls(
            request.id, into.account, into.minutes, text(body, "request"), text(body, "record")
        )


@dataclass(frozen=True)
class Exchange:
    """A member's minutes spent on a service a partner platform delivered, into the
    partner's clearing account (which pays out nothing)."""

    kind: ClassVar[str] = "exchange"
    id: str
    member: str
    partner: str
    minutes: int
    reference: str
    by: str

    def to_request(self) -> EntryRequest:
        clearing = clearing_account(bank_of(self.member), self.partner)
        postings = (Posting(self.member, -self.minutes), Posting(clearing, self.minutes))
        body: dict[str, JSON] = {
            "partner": self.partner,
            "reference": self.reference,
            "by": self.by,
        }
        return EntryRequest(self.kind, self.id, postings, body)

    @classmethod
    def from_entry(cls, request: EntryRequest) -> Self:
        of_kind(request, cls.kind)
        out, into = pair(request, MEMBER, CLEARING)
        body = request.body
        partner = text(body, "partner")
        if into.account != clearing_account(bank_of(out.account), partner):
            raise MalformedEntry("an exchange credits body.partner's clearing", field="postings")
        return cls(
            request.id,
            out.account,
            partner,
            into.minutes,
            text(body, "reference"),
            text(body, "by"),
        )
