"""Rules the auditor checks in a leaf beyond the replay, recomputed independently of the server:
a deposit's record, confirmation, verification and weighted minutes; what a seal claims."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from audit.devices import DeviceBook, DeviceFact, device_fact, signature_fact
from audit.holds import HOLD_KINDS, HoldBook, HoldEvent, hold_event
from audit.report import AuditReport
from audit.trail import Seal
from ledger.entry import EntryRequest
from ledger.kinds import DepositClaims
from ledger.postings import ISSUANCE, POOL, parse_account

RECORD_DIGEST = re.compile(r"[0-9a-f]{64}")


_MARKERS = tuple(
    f'"kind":"{kind}"'.encode() for kind in ("deposit", "device", "seal", *sorted(HOLD_KINDS))
)


Extra = tuple[tuple[str, ...], tuple[int, bytes] | None, HoldEvent | None, DeviceFact | None]

"""What the auditor checks in a leaf beyond the replay: problems of a deposit, what a seal
claims (audit count, head), what the leaf did to a hold, and what it says about a device key.
Plain tuples, so worker processes send them cheaply."""


def _filled(value: str | None) -> str | None:
    return value if value is not None and value.strip() else None


def _positive(value: int | None) -> int | None:
    return value if value is not None and value > 0 else None


def deposit_problems(request: EntryRequest) -> list[str]:
    """Why a deposit does not stand for a confirmed, verified service record (empty if it does).

    A deposit must name its record (``body.record``, the SHA-256 hex digest of the record), say
    who confirmed the service and how (``confirmed_by``, ``confirmed_as``) and who verified it
    (``verified_by``, someone else), carry the verifier's signature (``{"role": "verifier",
    "by": verified_by}``; a volunteer's device signature, if any, with its ``key`` and ``sig``),
    and debit issuance exactly ``(minutes × weight + 500) // 1000``, with ``weight`` per mille
    (and credit the pool ``body.to_pool``, when it says).
    """
    postings = [(p.account, p.minutes) for p in request.postings]
    return _deposit_problems(request.body, request.signatures, postings)


def _deposit_problems(
    body: Mapping[str, Any],
    signatures: Sequence[Mapping[str, Any]],
    postings: Sequence[tuple[str, int]],
) -> list[str]:
    # Read through the deposit's own type (ledger.kinds), judged by the auditor's rules.
    claims = DepositClaims.of(body, signatures)
    problems = []
    if claims.record is None or not RECORD_DIGEST.fullmatch(claims.record):
        problems.append(
            "deposit does not refer to a record: body.record is not a SHA-256 digest "
            "(64 lower-case hex digits)"
        )
    confirmed_by = _filled(claims.confirmed_by)
    verified_by = _filled(claims.verified_by)
    if confirmed_by is None:
        problems.append("deposit does not say who confirmed the service (body.confirmed_by)")
    if _filled(claims.confirmed_as) is None:
        problems.append("deposit does not say how the service was confirmed (body.confirmed_as)")
    if verified_by is None:
        problems.append("deposit does not say who verified the record (body.verified_by)")
    if confirmed_by is not None and confirmed_by == verified_by:
        problems.append(
            f"deposit was confirmed and verified by the same user {confirmed_by} "
            "(two different people must)"
        )
    signers = claims.verifier_signers
    if not any(signers):
        problems.append(
            'deposit carries no verifier signature (a signatures item {"role": "verifier", '
            '"by": …})'
        )
    elif verified_by is not None and verified_by not in signers:
        problems.append(
            f"deposit's verifier signature is by {', '.join(str(b) for b in signers)}, "
            f"not by body.verified_by {verified_by}"
        )
    for key, sig in claims.device_signatures:
        if not (key and sig):
            problems.append("deposit's volunteer signature lacks its device key or signature")
    minutes, weight = _positive(claims.minutes), _positive(claims.weight)
    if minutes is None or weight is None:
        problems.append("deposit's body.minutes and body.weight are not positive integers")
    roles = [(parse_account(account)[1], moved) for account, moved in postings]
    issued = -sum(moved for role, moved in roles if role == ISSUANCE)
    if minutes is not None and weight is not None:
        # Recomputed here on purpose: the auditor does not trust care.base.weighted.
        expected = (minutes * weight + 500) // 1000
        if issued != expected:
            problems.append(
                f"deposit issues {issued} minutes, but {minutes} minutes at weight "
                f"{weight}‰ are {expected}"
            )
    to_pool = claims.to_pool
    pooled = sum(moved for role, moved in roles if role == POOL)
    if to_pool is not None and pooled != to_pool:
        problems.append(
            f"deposit credits the pool {pooled} minutes, but body.to_pool says {to_pool}"
        )
    return problems


def _seal_claim(body: Mapping[str, Any]) -> tuple[int, bytes] | str:
    """What a seal entry claims (audit count, head hash), or why it claims nothing usable."""
    count, head = body.get("audit_count"), body.get("audit_head")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        return "seal entry's body.audit_count is not a count of audit events"
    try:
        raw = base64.b64decode(head, validate=True) if isinstance(head, str) else b""
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        return "seal entry's body.audit_head is not a base64 SHA-256 hash"
    return count, raw


def leaf_rules(leaf: bytes) -> Extra | None:
    """The auditor's own per-leaf checks (deposits and their device signatures, device keys,
    seals, reversals, holds); None for every other leaf.

    Runs in worker processes next to ``ledger.replay.decode``, on the plain JSON (the replay
    decides whether the leaf is a valid, canonical entry, and reports it if not): a leaf whose
    fields do not even have the right shapes is left to the replay alone."""
    if not any(marker in leaf for marker in _MARKERS):
        return None
    try:
        raw = json.loads(leaf)
    except ValueError:
        return None
    if not isinstance(raw, dict):
        return None
    kind, body, signatures = raw.get("kind"), raw.get("body"), raw.get("signatures")
    if not isinstance(body, dict):
        return None
    if kind == "seal":
        claim = _seal_claim(body)
        return ((claim,), None, None, None) if isinstance(claim, str) else ((), claim, None, None)
    if kind == "device":
        fact = device_fact(body)
        return ((fact,), None, None, None) if isinstance(fact, str) else ((), None, None, fact)
    postings = _postings(raw.get("postings"))
    if postings is None:
        return None
    found: tuple[str, ...] = ()
    if kind == "reversal":
        asked, approved = body.get("requested_by"), body.get("approved_by")
        if isinstance(asked, str) and asked and asked == approved:
            found = (
                f"reversal was requested and approved by the same administrator {asked} "
                "(a second one must approve)",
            )
    if kind in HOLD_KINDS:
        event = hold_event(str(kind), body, postings)
        return (found, None, event, None) if found or event else None
    if kind != "deposit" or not isinstance(signatures, list):
        return None
    if not all(isinstance(sig, dict) for sig in signatures):
        return None
    problems = _deposit_problems(body, signatures, postings)
    signed = signature_fact(body, signatures, postings)
    return (tuple(problems), None, None, signed) if problems or signed else None


def _postings(raw: Any) -> list[tuple[str, int]] | None:
    """(account, minutes) pairs, or None when they do not even have the right shapes (the
    replay reports such a leaf)."""
    if not isinstance(raw, list):
        return None
    postings = []
    for posting in raw:
        account = posting.get("account") if isinstance(posting, dict) else None
        minutes = posting.get("minutes") if isinstance(posting, dict) else None
        if not isinstance(account, str) or account.count(":") < 1 or type(minutes) is not int:
            return None
        postings.append((account, minutes))
    return postings


@dataclass
class LeafRules:
    """Collects what :func:`leaf_rules` found, in leaf order, into the report; keeps the books
    of holds (``audit.holds``) and device keys (``audit.devices``) from leaf to leaf."""

    report: AuditReport
    seals: list[Seal] = field(default_factory=list)
    holds: HoldBook = field(default_factory=HoldBook)
    devices: DeviceBook = field(default_factory=DeviceBook)

    def apply(self, position: int, extra: Extra | None) -> None:
        if extra is None:
            return
        problems, claim, event, device = extra
        for message in problems:
            self.report.add(f"seq {position}", message)
        if claim is not None:
            self.seals.append(Seal(position, claim[0], claim[1]))
        if event is not None:
            for message in self.holds.apply(position, event):
                self.report.add(f"seq {position}", message)
        if device is not None:
            for message in self.devices.apply(position, device):
                self.report.add(f"seq {position}", message)

    def finish(self, balances: Mapping[str, int]) -> None:
        """After the last leaf: every hold account against its open requests."""
        for message in self.holds.finish(balances):
            self.report.add("holds", message)
