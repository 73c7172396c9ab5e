"""Kinds of a transfer between two district banks' logs (通存通兑, docs/federation.md#transfers).

One transfer is named by ``transfer``, 32 hex digits the sending bank H chooses; every entry of
it has an id derived from that name (H) or from H's entry (the receiving bank R), so a retried
step finds the entry it already wrote instead of writing a second one:

    H  transfer_out      transfer-out:<transfer>        member → due_to:<R>
    R  transfer_in       transfer-in:<H>:<H's index>    due_from:<H> → member
    H  transfer_settled  transfer-settled:<transfer>    no postings: R's proof received
    H  transfer_void     transfer-void:<transfer>       due_to:<R> → member, the minutes back
    R  transfer_refused  transfer-in:<H>:<H's index>    no postings: R's final refusal

A ``transfer_refused`` takes the id R's ``transfer_in`` would have had, so R answers each of
H's entries once, a credit or a refusal, and a repeat after a refusal cannot credit.

``<R>`` and ``<H>`` are the peer names each deployment gave the other. Bodies carry log
origins, indexes, leaf hashes, expiry times and opaque account ids: no personal data.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Self

from ledger.entry import JSON, TIME, EntryRequest, Posting
from ledger.errors import MalformedEntry
from ledger.kinds.fields import of_kind, pair, text, whole
from ledger.postings import DUE_FROM, DUE_TO, MEMBER, due_from_account, due_to_account

TRANSFER = re.compile(r"^[0-9a-f]{32}\Z")
LEAF_HASH = re.compile(r"^[0-9a-f]{64}\Z")
VOID_REASONS = ("refused", "expired")
REFUSALS = ("unknown-member", "wrong-member", "not-for-us", "expired", "not-related")


def _transfer(body: Mapping[str, JSON], name: str = "transfer") -> str:
    value = text(body, name)
    if not TRANSFER.match(value):
        raise MalformedEntry(f"body.{name} must be 32 hex digits", field=f"body.{name}")
    return value


def _leaf_hash(body: Mapping[str, JSON], name: str) -> str:
    value = text(body, name)
    if not LEAF_HASH.match(value):
        raise MalformedEntry(f"body.{name} must be 64 hex digits", field=f"body.{name}")
    return value


def _peer_of(account: str, role: str) -> str:
    _, got, peer = account.split(":")
    if got != role:
        raise MalformedEntry(f"{account} is not a {role} account", field="postings")
    return peer


@dataclass(frozen=True)
class TransferOut:
    """Minutes leaving ``member`` for a member of peer bank ``peer``, held in
    ``due_to:<peer>`` until R's proof arrives or ``expires`` passes. ``to`` commits to R's
    member (SHA-256 of ``<transfer>:<member id>``, federation.transfers): R checks it."""

    kind: ClassVar[str] = "transfer_out"
    transfer: str
    member: str
    peer: str
    minutes: int
    to_origin: str
    to: str
    expires: str
    by: str

    @property
    def id(self) -> str:
        return f"transfer-out:{self.transfer}"

    @property
    def due_to(self) -> str:
        return due_to_account(self.member.split(":")[0], self.peer)

    def to_request(self) -> EntryRequest:
        postings = (Posting(self.member, -self.minutes), Posting(self.due_to, self.minutes))
        body: dict[str, JSON] = {
            "transfer": self.transfer,
            "to_origin": self.to_origin,
            "to": self.to,
            "expires": self.expires,
            "by": self.by,
        }
        return EntryRequest(self.kind, self.id, postings, body)

    @classmethod
    def from_entry(cls, request: EntryRequest) -> Self:
        of_kind(request, cls.kind)
        out, into = pair(request, MEMBER, DUE_TO)
        body = request.body
        made = cls(
            _transfer(body),
            out.account,
            _peer_of(into.account, DUE_TO),
            into.minutes,
            text(body, "to_origin"),
            text(body, "to"),
            text(body, "expires"),
            text(body, "by"),
        )
        if request.id != made.id:
            raise MalformedEntry("a transfer_out's id is transfer-out:<transfer>", field="id")
        if not TIME.match(made.expires):
            raise MalformedEntry("body.expires must be an RFC 3339 UTC time", field="body.expires")
        return made


@dataclass(frozen=True)
class TransferIn:
    """Minutes credited to ``member`` from ``due_from:<peer>``, quoting the sending bank's
    ``transfer_out``: its log origin, index and leaf hash (hex SHA-256 of RFC 6962's leaf)."""

    kind: ClassVar[str] = "transfer_in"
    transfer: str
    member: str
    peer: str
    minutes: int
    from_origin: str
    from_index: int
    from_leaf_hash: str

    @property
    def id(self) -> str:
        return f"transfer-in:{self.peer}:{self.from_index}"

    def to_request(self) -> EntryRequest:
        due_from = due_from_account(self.member.split(":")[0], self.peer)
        postings = (Posting(due_from, -self.minutes), Posting(self.member, self.minutes))
        body: dict[str, JSON] = {
            "transfer": self.transfer,
            "from_origin": self.from_origin,
            "from_index": self.from_index,
            "from_leaf_hash": self.from_leaf_hash,
        }
        return EntryRequest(self.kind, self.id, postings, body)

    @classmethod
    def from_entry(cls, request: EntryRequest) -> Self:
        of_kind(request, cls.kind)
        out, into = pair(request, DUE_FROM, MEMBER)
        body = request.body
        made = cls(
            _transfer(body),
            into.account,
            _peer_of(out.account, DUE_FROM),
            into.minutes,
            text(body, "from_origin"),
            whole(body, "from_index"),
            _leaf_hash(body, "from_leaf_hash"),
        )
        if request.id != made.id:
            raise MalformedEntry("a transfer_in's id is transfer-in:<peer>:<index>", field="id")
        return made


@dataclass(frozen=True)
class TransferSettled:
    """The receiving bank's proof of its ``transfer_in`` checked: the transfer is done. The
    minutes stay in ``due_to:<peer>`` (what this bank owes the peer, mirrored by the peer's
    ``due_from``); the two banks' monthly ``settlement`` states the position, moving nothing
    (docs/federation.md#settlement)."""

    kind: ClassVar[str] = "transfer_settled"
    transfer: str
    out_index: int
    to_origin: str
    to_index: int
    to_leaf_hash: str

    @property
    def id(self) -> str:
        return f"transfer-settled:{self.transfer}"

    def to_request(self) -> EntryRequest:
        body: dict[str, JSON] = {
            "transfer": self.transfer,
            "out_index": self.out_index,
            "to_origin": self.to_origin,
            "to_index": self.to_index,
            "to_leaf_hash": self.to_leaf_hash,
        }
        return EntryRequest(self.kind, self.id, (), body)

    @classmethod
    def from_entry(cls, request: EntryRequest) -> Self:
        of_kind(request, cls.kind)
        body = request.body
        made = cls(
            _transfer(body),
            whole(body, "out_index"),
            text(body, "to_origin"),
            whole(body, "to_index"),
            _leaf_hash(body, "to_leaf_hash"),
        )
        if request.id != made.id or request.postings:
            raise MalformedEntry("a transfer_settled is transfer-settled:<transfer>", field="id")
        return made


@dataclass(frozen=True)
class TransferVoid:
    """A transfer the receiving bank refused (or that expired): the held minutes go back
    from ``due_to:<peer>`` to the member who sent them. ``reason`` is a code."""

    kind: ClassVar[str] = "transfer_void"
    transfer: str
    member: str
    peer: str
    minutes: int
    out_index: int
    reason: str

    @classmethod
    def of(cls, out: TransferOut, out_index: int, reason: str) -> Self:
        """The void of ``out`` (at ``out_index``): exactly its minutes, back to its member."""
        return cls(out.transfer, out.member, out.peer, out.minutes, out_index, reason)

    @property
    def id(self) -> str:
        return f"transfer-void:{self.transfer}"

    def to_request(self) -> EntryRequest:
        due_to = due_to_account(self.member.split(":")[0], self.peer)
        postings = (Posting(due_to, -self.minutes), Posting(self.member, self.minutes))
        body: dict[str, JSON] = {
            "transfer": self.transfer,
            "out_index": self.out_index,
            "reason": self.reason,
        }
        return EntryRequest(self.kind, self.id, postings, body)

    @classmethod
    def from_entry(cls, request: EntryRequest) -> Self:
        of_kind(request, cls.kind)
        out, into = pair(request, DUE_TO, MEMBER)
        body = request.body
        made = cls(
            _transfer(body),
            into.account,
            _peer_of(out.account, DUE_TO),
            into.minutes,
            whole(body, "out_index"),
            text(body, "reason"),
        )
        if request.id != made.id:
            raise MalformedEntry("a transfer_void's id is transfer-void:<transfer>", field="id")
        if made.reason not in VOID_REASONS:
            raise MalformedEntry(f"body.reason is one of {VOID_REASONS}", field="body.reason")
        return made


@dataclass(frozen=True)
class TransferRefusal:
    """The receiving bank's final refusal of peer ``peer``'s ``transfer_out`` at
    ``from_index``; ``reason`` is a code (REFUSALS). Written only for a proven entry."""

    kind: ClassVar[str] = "transfer_refused"
    transfer: str
    peer: str
    from_origin: str
    from_index: int
    from_leaf_hash: str
    reason: str

    @property
    def id(self) -> str:
        return f"transfer-in:{self.peer}:{self.from_index}"

    def to_request(self) -> EntryRequest:
        body: dict[str, JSON] = {
            "transfer": self.transfer,
            "from_origin": self.from_origin,
            "from_index": self.from_index,
            "from_leaf_hash": self.from_leaf_hash,
            "reason": self.reason,
        }
        return EntryRequest(self.kind, self.id, (), body)

    @classmethod
    def from_entry(cls, request: EntryRequest) -> Self:
        of_kind(request, cls.kind)
        body = request.body
        parts = request.id.split(":")
        if len(parts) != 3 or parts[0] != "transfer-in" or request.postings:
            raise MalformedEntry("a transfer_refused is transfer-in:<peer>:<index>", field="id")
        made = cls(
            _transfer(body),
            parts[1],
            text(body, "from_origin"),
            whole(body, "from_index"),
            _leaf_hash(body, "from_leaf_hash"),
            text(body, "reason"),
        )
        if request.id != made.id:
            raise MalformedEntry("a transfer_refused is transfer-in:<peer>:<index>", field="id")
        if made.reason not in REFUSALS:
            raise MalformedEntry(f"body.reason is one of {REFUSALS}", field="body.reason")
        return made
