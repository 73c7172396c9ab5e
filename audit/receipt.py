"""Receipts: a ``c2sp.org/tlog-proof@v1`` text checked offline against the log's key (and the
witness policy), and described in plain words from the leaf it carries."""

from __future__ import annotations

from collections.abc import Iterable

from audit.report import AuditReport, Policy, check_checkpoint
from audit.rules import deposit_problems
from ledger.entry import Entry
from ledger.errors import LedgerError
from ledger.leaf_decoding import decode_leaf
from ledger.merkle import leaf_hash, verify_inclusion
from ledger.note import (
    TlogProof,
)
from ledger.postings import check_postings


def verify_receipt(text: str, policy: Policy) -> AuditReport:
    """Check a tlog-proof receipt offline; the report's notes describe the entry."""
    report = AuditReport()
    try:
        proof = TlogProof.parse(text)
    except LedgerError as exc:
        report.add("receipt", f"is not a c2sp.org/tlog-proof@v1 receipt: {exc}")
        return report
    opened = check_checkpoint(proof.checkpoint, policy, report)
    report.checkpoint = opened[0] if opened else None
    where = f"seq {proof.index}"
    if proof.extra is None:
        report.add(where, "the receipt has no extra line with the entry, so it proves nothing")
        return report
    entry: Entry | None
    try:
        entry = decode_leaf(proof.extra)
    except LedgerError as exc:
        report.add(where, f"the entry in the receipt is malformed: {exc}")
        entry = None
    if entry is not None:
        if entry.seq != proof.index:
            report.add(where, f"the entry says seq {entry.seq}, not {proof.index}")
        try:
            check_postings(entry.request)
        except LedgerError as exc:
            report.add(where, str(exc))
        if entry.request.kind == "deposit":
            for message in deposit_problems(entry.request):
                report.add(where, message)
    if opened is not None:
        checkpoint = opened[0]
        try:
            verify_inclusion(
                leaf_hash(proof.extra), proof.index, checkpoint.size, proof.hashes, checkpoint.root
            )
        except LedgerError as exc:
            report.add(where, f"the entry is not in the signed tree: {exc}")
    report.entries = 1 if report.ok else 0
    if report.ok:
        report.what = f"entry {proof.index} is in the log"
        report.details.extend(describe(entry) if entry else ())
    else:
        report.what = f"receipt for entry {proof.index}"
        if entry is not None:
            report.details.append("what the receipt claims (not proven):")
            report.details.extend(f"  {line}" for line in describe(entry))
    return report


def describe(entry: Entry) -> Iterable[str]:
    request = entry.request
    yield f"entry {entry.seq}: {request.kind} {request.id} at {entry.time}"
    for p in request.postings:
        yield f"  {p.account} {p.minutes:+d} minutes"
