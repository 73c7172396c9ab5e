"""Signed statements and service certificates (志愿服务证明), checked offline.

A statement lists the entries of the log that moved a member's minutes in a period; a
certificate sums the member's verified service up to the end of a period, with the star level.
Both are one JSON object signed by the bank with an Ed25519 key of its own (the statement key,
published at ``GET /v1/statements/key``), over the RFC 8785 canonical JSON of the object
without its ``signature`` member, after the prefix ``timebank-signed-document/v1\\n``.

Every entry carries its leaf (``leaf``, base64) and its inclusion proof (``proof``) in the one
signed checkpoint the document carries (``checkpoint``): together they are a
``c2sp.org/tlog-proof@v1`` receipt, checked with the log's key exactly as
``timebank audit receipt`` checks one. So a reader trusts the two public keys, not the server.

``verify_document`` checks the signature, every receipt, that each entry is what the document
says (seq, id, kind, time, the member's minutes) and inside the period, and that the totals add
up; each failure names what failed. What the receipts cannot prove is that no entry was left
out: that rests on the bank's signature.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from datetime import date, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any

from audit.receipt import verify_receipt
from audit.report import AuditReport, Policy
from ledger.entry import Entry, canonical_json
from ledger.errors import LedgerError
from ledger.leaf_decoding import decode_leaf
from ledger.note import TlogProof, Verifier
from ledger.postings import hold_account

STATEMENT = "timebank-statement/v1"
CERTIFICATE = "timebank-certificate/v1"
SIGNING_PREFIX = b"timebank-signed-document/v1\n"
SERVICE_KINDS = frozenset({"deposit", "correction"})  # as partners.points counts them
STAR_NAMES = ("一星", "二星", "三星", "四星", "五星")


def signed_bytes(document: Mapping[str, Any]) -> bytes:
    """What the bank signs: the prefix, then the canonical JSON without ``signature``."""
    return SIGNING_PREFIX + canonical_json({k: v for k, v in document.items() if k != "signature"})


def period_bounds(start: str, end: str) -> tuple[str, str]:
    """The log times ``[from 00:00 UTC, the day after to 00:00 UTC)`` of a period of days."""
    after = date.fromisoformat(end) + timedelta(days=1)
    return f"{date.fromisoformat(start).isoformat()}T00:00:00.000000Z", (
        f"{after.isoformat()}T00:00:00.000000Z"
    )


def hours_text(minutes: int) -> str:
    """Minutes as hours with two decimals, rounded down (as the points code shows hours)."""
    return str((Decimal(minutes) / 60).quantize(Decimal("0.01"), rounding=ROUND_DOWN))


def star_level(minutes: int, thresholds: list[int]) -> int:
    return sum(1 for hours in thresholds if minutes >= hours * 60)


def own_accounts(account: str) -> tuple[str, str]:
    """The member's account and its hold account: a statement's minutes move either."""
    return account, hold_account(account)


def _b64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise ValueError(f"{what} is not a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"{what} is not valid base64") from exc


def verify_document(text: str, statement_key: Verifier, policy: Policy) -> AuditReport:
    """Check a signed statement or certificate offline; each problem names what failed."""
    report = AuditReport()
    report.what = "signed document"
    try:
        document = json.loads(text)
    except ValueError as exc:
        report.add("document", f"is not JSON: {exc}")
        return report
    if not isinstance(document, dict):
        report.add("document", "is not a JSON object")
        return report
    kind = document.get("format")
    if kind not in (STATEMENT, CERTIFICATE):
        report.add("format", f"is {kind!r}, not {STATEMENT} or {CERTIFICATE}")
        return report
    report.what = "statement" if kind == STATEMENT else "certificate"
    _check_signature(document, statement_key, report)
    try:
        entries = _check_entries(document, policy, report)
    except (KeyError, TypeError, ValueError) as exc:
        report.add("document", f"is malformed: {exc}")
        return report
    if entries is None:
        return report
    try:
        if kind == STATEMENT:
            _check_statement_totals(document, entries, report)
        else:
            _check_certificate_totals(document, entries, report)
    except (KeyError, TypeError, ValueError) as exc:
        report.add("totals", f"are malformed: {exc}")
    report.entries = len(entries)
    if report.ok:
        account = document.get("account")
        period = document.get("period", {})
        report.what = (
            f"{report.what} of {account} for {period.get('from')} to {period.get('to')}: "
            f"signature and {len(entries)} receipts verify"
        )
    return report


def _check_signature(document: dict[str, Any], key: Verifier, report: AuditReport) -> None:
    signature = document.get("signature")
    if not isinstance(signature, dict):
        report.add("signature", "is missing")
        return
    if signature.get("key") != key.to_text():
        report.add(
            "signature",
            f"names the key {signature.get('key')!r}, not the statement key you supplied",
        )
    try:
        value = _b64(signature.get("value"), "signature.value")
        message = signed_bytes(document)
    except (ValueError, LedgerError) as exc:
        report.add("signature", str(exc))
        return
    if not key.check(message, value):
        report.add(
            "signature",
            "does not verify with the bank's statement key: the document "
            "was changed after it was signed, or signed by another key",
        )


def _check_entries(
    document: dict[str, Any], policy: Policy, report: AuditReport
) -> list[tuple[dict[str, Any], Entry]] | None:
    account = document["account"]
    if not isinstance(account, str):
        raise TypeError("account is not a string")
    try:
        own = own_accounts(account)
    except ValueError as exc:
        report.add("account", str(exc))
        return None
    checkpoint = document["checkpoint"]
    if not isinstance(checkpoint, str):
        raise TypeError("checkpoint is not a string")
    period = document["period"]
    start, end = period_bounds(period["from"], period["to"])
    if document["format"] == CERTIFICATE:
        start = ""  # cumulative: every verified entry up to the end of the period
    found: list[tuple[dict[str, Any], Entry]] = []
    seen: set[int] = set()
    for i, item in enumerate(document["entries"]):
        where = f"entries[{i}]"
        seq = item["seq"]
        if not isinstance(seq, int) or seq in seen:
            report.add(where, f"seq {seq!r} is not a new whole number")
            continue
        seen.add(seq)
        try:
            leaf = _b64(item["leaf"], f"{where}.leaf")
            hashes = tuple(_b64(h, f"{where}.proof") for h in item["proof"])
            receipt = TlogProof(seq, hashes, checkpoint, leaf).render()
        except ValueError as exc:
            report.add(where, str(exc))
            continue
        checked = verify_receipt(receipt, policy)
        if report.checkpoint is None:
            report.checkpoint = checked.checkpoint
        for problem in checked.problems:
            report.add(f"{where} receipt", f"{problem.where}: {problem.message}")
        try:
            entry = decode_leaf(leaf)
        except LedgerError:
            continue  # reported by the receipt check
        request = entry.request
        minutes = sum(p.minutes for p in request.postings if p.account in own)
        claimed = {
            "id": request.id,
            "kind": request.kind,
            "time": entry.time,
            "minutes": minutes,
        }
        for name, value in claimed.items():
            if item.get(name) != value:
                report.add(
                    where, f"{name} is {item.get(name)!r} but the log's entry says {value!r}"
                )
        if not any(p.account in own for p in request.postings):
            report.add(where, f"the entry does not touch the account {account}")
        if not start <= entry.time < end:
            report.add(where, f"the entry's time {entry.time} is outside the period")
        found.append((item, entry))
    return found


def _check_statement_totals(
    document: dict[str, Any], entries: list[tuple[dict[str, Any], Entry]], report: AuditReport
) -> None:
    own = own_accounts(document["account"])
    minutes = [sum(p.minutes for p in e.request.postings if p.account in own) for _, e in entries]
    expected = {
        "entries": len(entries),
        "credited": sum(m for m in minutes if m > 0),
        "debited": -sum(m for m in minutes if m < 0),
        "net": sum(minutes),
    }
    totals = document["totals"]
    for name, value in expected.items():
        if totals.get(name) != value:
            report.add(
                "totals", f"{name} is {totals.get(name)!r} but the entries add up to {value}"
            )


def _check_certificate_totals(
    document: dict[str, Any], entries: list[tuple[dict[str, Any], Entry]], report: AuditReport
) -> None:
    account = document["account"]
    start, _ = period_bounds(document["period"]["from"], document["period"]["to"])
    by_seq = {entry.seq: entry for _, entry in entries}
    cumulative = in_period = 0
    for i, (_, entry) in enumerate(entries):
        kind = entry.request.kind
        if kind == "reversal":
            undone = by_seq.get(int(entry.request.body.get("reverses", -1)))
            if undone is None or undone.request.kind not in SERVICE_KINDS:
                report.add(f"entries[{i}]", "a reversal of an entry that is not verified service")
                continue
        elif kind not in SERVICE_KINDS:
            report.add(f"entries[{i}]", f"a {kind} entry is not verified service")
            continue
        minutes = sum(p.minutes for p in entry.request.postings if p.account == account)
        cumulative += minutes
        if entry.time >= start:
            in_period += minutes
    service = document["service"]
    thresholds = service["star_hours"]
    expected: dict[str, Any] = {
        "cumulative_minutes": cumulative,
        "cumulative_hours": hours_text(cumulative),
        "period_minutes": in_period,
        "period_hours": hours_text(in_period),
    }
    if thresholds is not None:
        level = star_level(cumulative, [int(h) for h in thresholds])
        expected["star_level"] = level
        expected["star_name"] = STAR_NAMES[level - 1] if level else None
    else:
        expected["star_level"] = None
        expected["star_name"] = None
    for name, value in expected.items():
        if service.get(name) != value:
            report.add(
                f"service.{name}", f"is {service.get(name)!r} but the entries add up to {value!r}"
            )
