"""Double-entry rules: accounts, which kinds may move minutes where, and balance floors.

Account ids are opaque and carry no personal data: ``<bank>:<role>[:<opaque id>]``.

* ``<bank>:member:<id>``  a member (volunteer or elder); never below ``-overdraft``
* ``<bank>:hold:<id>``    minutes a member has reserved for a redemption; never below zero
* ``<bank>:issuance``     where service hours come from; runs negative by design
* ``<bank>:pool``         the donation pool (公益池); never below zero
* ``<bank>:redemption``   where redeemed hours go; never below zero
* ``<bank>:clearing:<id>`` a partner platform's clearing account: the minutes members spent on
  services the partner delivered (``exchange``); never below zero, and nothing leaves it
* ``<bank>:due_to:<peer>`` minutes members of this bank sent to peer bank ``<peer>``
  (``transfer_out``): what this bank owes the peer; never below zero, and only a
  ``transfer_void`` takes minutes out of it (back to the member who sent them)
* ``<bank>:due_from:<peer>`` minutes members received from peer bank ``<peer>``
  (``transfer_in``): what the peer owes this bank; runs negative by design, no kind credits it

Hours are created only by ``deposit`` (a verified service) and ``correction`` (an admin fix
with a reason) — the only kinds allowed to debit ``issuance`` — and leave members only by
redemption, exchange, gift, donation, a transfer to a peer bank or a correcting reversal. Between
banks, ``due_from:<peer>`` is the one other account that may go negative, and only by a
``transfer_in`` that quotes the peer's ``transfer_out`` (federation.transfers checks its proof).
There is no account that could pay out cash, and no kind that could move hours there.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ledger.entry import EntryRequest, Posting
from ledger.errors import N_, InsufficientBalance, PostingRuleViolation, UnbalancedPostings

MEMBER = "member"
HOLD = "hold"
ISSUANCE = "issuance"
POOL = "pool"
REDEMPTION = "redemption"
CLEARING = "clearing"
DUE_TO = "due_to"
DUE_FROM = "due_from"
SYSTEM_ROLES = (ISSUANCE, POOL, REDEMPTION)


def member_account(bank: str, opaque: str | None = None) -> str:
    return f"{bank}:{MEMBER}:{opaque or secrets.token_hex(8)}"


def hold_account(member: str) -> str:
    """The account holding minutes ``member`` has reserved (same bank and opaque id)."""
    bank, role, opaque = member.split(":")
    if role != MEMBER:
        raise ValueError(f"{member} is not a member account")
    return f"{bank}:{HOLD}:{opaque}"


def clearing_account(bank: str, partner_key_id: str) -> str:
    """A partner platform's clearing account (one per partner key)."""
    return f"{bank}:{CLEARING}:{partner_key_id}"


def due_to_account(bank: str, peer: str) -> str:
    """What ``bank`` owes peer bank ``peer`` (the peer's name in this deployment)."""
    return f"{bank}:{DUE_TO}:{peer}"


def due_from_account(bank: str, peer: str) -> str:
    """What peer bank ``peer`` owes ``bank``."""
    return f"{bank}:{DUE_FROM}:{peer}"


def system_account(bank: str, role: str) -> str:
    if role not in SYSTEM_ROLES:
        raise ValueError(f"unknown system account role {role!r}")
    return f"{bank}:{role}"


def parse_account(account: str) -> tuple[str, str]:
    """(bank, role) of an account id already matched against ``entry.ACCOUNT``."""
    bank, role, *_ = account.split(":")
    return bank, role


@dataclass(frozen=True)
class KindRule:
    debit: frozenset[str]  # roles that may receive negative postings
    credit: frozenset[str]  # roles that may receive positive postings
    needs_postings: bool = True
    reason_required: bool = False


def _rule(debit: Iterable[str], credit: Iterable[str], **kw: bool) -> KindRule:
    return KindRule(frozenset(debit), frozenset(credit), **kw)


NO_POSTINGS = _rule((), (), needs_postings=False)

KIND_RULES: Mapping[str, KindRule] = {
    "deposit": _rule({ISSUANCE}, {MEMBER, POOL}),
    "correction": _rule({ISSUANCE, MEMBER}, {ISSUANCE, MEMBER}, reason_required=True),
    "gift": _rule({MEMBER}, {MEMBER}),
    "donation": _rule({MEMBER}, {POOL}),
    "grant": _rule({POOL}, {MEMBER}, reason_required=True),
    "redemption": _rule({MEMBER, HOLD}, {REDEMPTION}),
    # Two-phase redemption: reserve when a request is accepted, then redeem or release.
    "reserve": _rule({MEMBER}, {HOLD}),
    "release": _rule({HOLD}, {MEMBER}),
    # A member's minutes spent on a service a partner platform delivers, confirmed by the
    # member: into the partner's clearing account, which pays out nothing.
    "exchange": _rule({MEMBER}, {CLEARING}),
    # A redemption paid back because staff rejected the record of its service.
    "refund": _rule({REDEMPTION}, {MEMBER}),
    # A reversal must be the exact negation of the entry it names; see ``check_reversal``.
    "reversal": _rule(
        {MEMBER, HOLD, ISSUANCE, POOL, REDEMPTION, CLEARING},
        {MEMBER, HOLD, ISSUANCE, POOL, REDEMPTION, CLEARING},
        reason_required=True,
    ),
    # 通存通兑 between district banks (docs/federation.md#transfers): minutes leave a member for
    # a peer bank and are held in ``due_to:<peer>``; the peer credits its member from
    # ``due_from:<us>``; a refused or expired transfer is voided back to the member.
    "transfer_out": _rule({MEMBER}, {DUE_TO}),
    "transfer_in": _rule({DUE_FROM}, {MEMBER}),
    "transfer_void": _rule({DUE_TO}, {MEMBER}),
    # The peer's proof of its transfer_in, received: the minutes stay in due_to:<peer> (what
    # this bank owes the peer); the monthly settlement states it and moves nothing.
    "transfer_settled": NO_POSTINGS,
    # The receiving bank's final refusal of a peer's transfer_out, under the id its transfer_in
    # would have had: one answer per peer entry, so a late repeat cannot credit after a void.
    "transfer_refused": NO_POSTINGS,
    # Two banks' cosigned statement of their position at a month's end (docs/federation.md
    # #settlement): both cut-offs and the net; it moves nothing, the gross balances stay.
    "settlement": NO_POSTINGS,
    # Entries that record facts without moving minutes.
    "policy": NO_POSTINGS,
    "seal": NO_POSTINGS,
    "registration": NO_POSTINGS,
    "approval": NO_POSTINGS,
    # A volunteer's phone key registered or revoked: the auditor checks device signatures.
    "device": NO_POSTINGS,
    # A half-yearly report published by a bank administrator: the SHA-256 of its document and
    # the checkpoint its public part was computed at (reports/halfyear.py).
    "report": NO_POSTINGS,
}


_ONE_TRANSFER = ("transfer_out", "transfer_in", "transfer_void")


def check_postings(request: EntryRequest) -> None:
    """Per-kind rules that need no balances. Raises with the field at fault."""
    rule = KIND_RULES.get(request.kind)
    if rule is None:
        known = ", ".join(sorted(KIND_RULES))
        raise PostingRuleViolation(
            "unknown kind %(kind)s (known: %(known)s)",
            field="kind",
            kind=repr(request.kind),
            known=known,
        )
    if rule.reason_required:
        reason = request.body.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise PostingRuleViolation(
                "a %(kind)s needs body.reason", field="body.reason", kind=request.kind
            )
    if not rule.needs_postings:
        if request.postings:
            raise PostingRuleViolation(
                "a %(kind)s moves no minutes", field="postings", kind=request.kind
            )
        return
    if len(request.postings) < 2:
        raise UnbalancedPostings("an entry that moves minutes needs two postings", field="postings")
    total = sum(p.minutes for p in request.postings)
    if total != 0:
        raise UnbalancedPostings(
            "postings sum to %(total)s, not 0", field="postings", total=f"{total:+d}"
        )
    banks = {parse_account(p.account)[0] for p in request.postings}
    if len(banks) != 1:
        raise PostingRuleViolation("all postings of an entry belong to one bank", field="postings")
    for i, posting in enumerate(request.postings):
        _, role = parse_account(posting.account)
        allowed = rule.debit if posting.minutes < 0 else rule.credit
        if role not in allowed:
            message = (
                N_("a %(kind)s may not debit a %(role)s account")
                if posting.minutes < 0
                else N_("a %(kind)s may not credit a %(role)s account")
            )
            raise PostingRuleViolation(
                message, field=f"postings[{i}]", kind=request.kind, role=role
            )
    if request.kind in _ONE_TRANSFER and len(request.postings) != 2:
        raise PostingRuleViolation(
            "a %(kind)s moves minutes between one member and one peer account",
            field="postings",
            kind=request.kind,
        )
    if request.kind in ("reserve", "release"):
        owners = {p.account.split(":")[2] for p in request.postings}
        if len(owners) != 1:
            raise PostingRuleViolation(
                "a %(kind)s moves minutes between one member and their own hold",
                field="postings",
                kind=request.kind,
            )


def check_reversal(request: EntryRequest, original: EntryRequest | None, seq: int) -> None:
    """A reversal names an existing, not-yet-reversed entry and exactly negates its postings."""
    if original is None:
        raise PostingRuleViolation(
            "entry %(seq)s to reverse does not exist", field="body.reverses", seq=seq
        )
    if original.kind == "reversal":
        raise PostingRuleViolation("a reversal cannot itself be reversed", field="body.reverses")
    if not original.postings:
        raise PostingRuleViolation("entry %(seq)s moved no minutes", field="body.reverses", seq=seq)
    wanted = {p.account: -p.minutes for p in original.postings}
    got = {p.account: p.minutes for p in request.postings}
    if wanted != got:
        raise PostingRuleViolation(
            "a reversal must negate every posting of entry %(seq)s", field="postings", seq=seq
        )


def floor_of(account: str, member_overdraft: int) -> int | None:
    """Lowest balance allowed for ``account``; None for no floor (issuance, due_from)."""
    role = parse_account(account)[1]
    if role == MEMBER:
        return -member_overdraft
    if role in (ISSUANCE, DUE_FROM):
        return None
    return 0


def apply_postings(
    balances: dict[str, int], postings: Iterable[Posting], member_overdraft: int
) -> None:
    """Apply postings to ``balances`` in place, refusing any that would break a floor.

    Only debits are checked: a credit never takes an account below a floor it was above.
    On refusal nothing is changed.
    """
    postings = list(postings)
    for p in postings:
        if p.minutes >= 0:
            continue
        floor = floor_of(p.account, member_overdraft)
        current = balances.get(p.account, 0)
        if floor is not None and current + p.minutes < floor:
            raise InsufficientBalance(p.account, current, p.minutes, floor)
    for p in postings:
        balances[p.account] = balances.get(p.account, 0) + p.minutes
