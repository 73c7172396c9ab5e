"""Kinds that move minutes between members and the pool, and the reversal of any entry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

from ledger.entry import JSON, EntryRequest, Posting
from ledger.kinds.fields import (
    bank_of,
    maybe_text,
    of_kind,
    optional,
    pair,
    text,
    whole,
)
from ledger.postings import (
    MEMBER,
    POOL,
    system_account,
)


@dataclass(frozen=True)
class Gift:
    """Minutes given to a confirmed relative (the log says only that the link was confirmed)."""

    kind: ClassVar[str] = "gift"
    id: str
    giver: str
    receiver: str
    minutes: int
    by: str
    relation: str = "confirmed"

    def to_request(self) -> EntryRequest:
        postings = (Posting(self.giver, -self.minutes), Posting(self.receiver, self.minutes))
        body: dict[str, JSON] = {"by": self.by, "relation": self.relation}
        return EntryRequest(self.kind, self.id, postings, body)

    @classmethod
    def from_entry(cls, request: EntryRequest) -> Self:
        of_kind(request, cls.kind)
        out, into = pair(request, MEMBER, MEMBER)
        body = request.body
        return cls(
            request.id,
            out.account,
            into.account,
            into.minutes,
            text(body, "by"),
            text(body, "relation"),
        )


@dataclass(frozen=True)
class Donation:
    """Minutes given to the bank's pool (公益池). ``by`` is None in the demo's past months."""

    kind: ClassVar[str] = "donation"
    id: str
    donor: str
    minutes: int
    by: str | None = None

    def to_request(self) -> EntryRequest:
        pool = system_account(bank_of(self.donor), POOL)
        postings = (Posting(self.donor, -self.minutes), Posting(pool, self.minutes))
        return EntryRequest(self.kind, self.id, postings, optional(by=self.by))

    @classmethod
    def from_entry(cls, request: EntryRequest) -> Self:
        of_kind(request, cls.kind)
        out, into = pair(request, MEMBER, POOL)
        return cls(request.id, out.account, into.minutes, maybe_text(request.body, "by"))


@dataclass(frozen=True)
class Grant:
    """Pool minutes to a priority elder; ``reason`` is a code, the words are off the log."""

    kind: ClassVar[str] = "grant"
    id: str
    elder: str
    minutes: int
    reason: str
    by: str

    def to_request(self) -> EntryRequest:
        pool = system_account(bank_of(self.elder), POOL)
        postings = (Posting(pool, -self.minutes), Posting(self.elder, self.minutes))
        body: dict[str, JSON] = {"reason": self.reason, "by": self.by}
        return EntryRequest(self.kind, self.id, postings, body)

    @classmethod
    def from_entry(cls, request: EntryRequest) -> Self:
        of_kind(request, cls.kind)
        _, into = pair(request, POOL, MEMBER)
        body = request.body
        return cls(request.id, into.account, into.minutes, text(body, "reason"), text(body, "by"))


@dataclass(frozen=True)
class Reversal:
    """The exact negation of entry ``reverses``, approved by a second administrator
    (``requested_by`` is None in the demo's past months)."""

    kind: ClassVar[str] = "reversal"
    id: str
    reverses: int
    postings: tuple[Posting, ...]
    reason: str
    approved_by: str
    requested_by: str | None = None

    @classmethod
    def of(
        cls,
        original: EntryRequest,
        seq: int,
        *,
        id: str,
        reason: str,
        approved_by: str,
        requested_by: str | None = None,
    ) -> Self:
        """The reversal of ``original`` (at ``seq``): every posting negated."""
        negated = tuple(Posting(p.account, -p.minutes) for p in original.postings)
        return cls(id, seq, negated, reason, approved_by, requested_by)

    def to_request(self) -> EntryRequest:
        body = optional(
            reverses=self.reverses,
            reason=self.reason,
            requested_by=self.requested_by,
            approved_by=self.approved_by,
        )
        return EntryRequest(self.kind, self.id, self.postings, body)

    @classmethod
    def from_entry(cls, request: EntryRequest) -> Self:
        of_kind(request, cls.kind)
        body = request.body
        return cls(
            request.id,
            whole(body, "reverses"),
            request.postings,
            text(body, "reason"),
            text(body, "approved_by"),
            maybe_text(body, "requested_by"),
        )
