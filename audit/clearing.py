"""``timebank audit clearing``: the books between two district banks agree, from their two
public logs alone (docs/federation.md#checking-clearing-auditors).

Both logs are read whole and checked (``audit.public_log``). Then, each way (sender X, receiver
Y): every ``transfer_out`` of X to Y's origin has exactly one answer in Y quoting its index and
leaf hash (a ``transfer_in`` of the same transfer and minutes, which X's ``transfer_settled``
quotes back; or a ``transfer_refused``, which X's ``transfer_void`` of the same minutes
follows), and no answer in Y quotes anything else; X's ``due_to`` for Y, less the transfers
still in flight, is what Y's ``due_from`` for X holds. Every ``settlement`` is in both logs
with the same document, both banks' signatures hold, and its figures are recomputed: each
cut-off (size, root, the month's end between its entries) and what each bank sent. Each
problem names the entry (origin, index) and the check. The entries are read with
``ledger.kinds``' readers; every figure is the auditor's own recount.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from audit.public_log import PublicLog
from audit.report import AuditReport
from ledger.entry import Entry, EntryRequest, canonical_json
from ledger.errors import LedgerError
from ledger.kinds import Settlement, TransferIn, TransferOut, TransferSettled, TransferVoid
from ledger.kinds.interbank import TransferRefusal
from ledger.kinds.settlement import month_end
from ledger.note import Verifier
from ledger.postings import DUE_FROM, DUE_TO

T = TypeVar("T")


@dataclass
class Way:
    """One direction, X → Y, as read from the two logs."""

    sender: PublicLog
    receiver: PublicLog
    outs: dict[int, TransferOut] = field(default_factory=dict)  # X's index → its entry
    settled: dict[str, tuple[int, TransferSettled]] = field(default_factory=dict)
    voids: dict[str, tuple[int, TransferVoid]] = field(default_factory=dict)
    answers: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))
    credited: dict[int, int] = field(default_factory=dict)  # X's index → minutes Y credited
    open: dict[int, int] = field(default_factory=dict)  # X's index → minutes still in flight
    due_to: int = 0  # X's due_to balance for Y
    due_from: int = 0  # Y's due_from balance for X


def check_clearing(
    one: PublicLog, other: PublicLog, request_keys: dict[str, Verifier]
) -> AuditReport:
    """``request_keys``: each bank's request key by origin (checks settlement signatures)."""
    report = AuditReport()
    ways = [_read(one, other, report), _read(other, one, report)]
    for way in ways:
        _match(way, report)
        _mirror(way, report)
    _settlements(one, other, ways, request_keys, report)
    outs = sum(len(w.outs) for w in ways)
    report.what = (
        f"clearing between {one.origin} (size {one.checkpoint.size}) and {other.origin} "
        f"(size {other.checkpoint.size}): {outs} transfer{'s' if outs != 1 else ''} checked"
    )
    return report


def _typed(
    log: PublicLog, entry: Entry, reader: Callable[[EntryRequest], T], report: AuditReport
) -> T | None:
    try:
        return reader(entry.request)
    except LedgerError as exc:
        report.add(log.where(entry.seq), f"{entry.request.kind}: malformed: {exc}")
        return None


def _read(x: PublicLog, y: PublicLog, report: AuditReport) -> Way:
    way = Way(x, y)
    for entry in x.entries:
        kind = entry.request.kind
        if kind == TransferOut.kind:
            out = _typed(x, entry, TransferOut.from_entry, report)
            if isinstance(out, TransferOut) and out.to_origin == y.origin:
                way.outs[entry.seq] = out
                way.due_to += out.minutes
        elif kind == TransferSettled.kind:
            settled = _typed(x, entry, TransferSettled.from_entry, report)
            if isinstance(settled, TransferSettled) and settled.to_origin == y.origin:
                way.settled[settled.transfer] = (entry.seq, settled)
        elif kind == TransferVoid.kind:
            void = _typed(x, entry, TransferVoid.from_entry, report)
            if isinstance(void, TransferVoid):
                way.voids[void.transfer] = (entry.seq, void)
    for transfer, (seq, void) in list(way.voids.items()):
        out = way.outs.get(void.out_index)
        if out is None or out.transfer != transfer:
            if any(o.transfer == transfer for o in way.outs.values()):
                report.add(x.where(seq), "transfer_void: out_index is not its transfer_out's")
            del way.voids[transfer]  # a void of a transfer to another bank
        else:
            way.due_to -= void.minutes
    for entry in y.entries:
        if entry.request.kind in (TransferIn.kind, TransferRefusal.kind):
            answer: TransferIn | TransferRefusal | None
            if entry.request.kind == TransferIn.kind:
                answer = _typed(y, entry, TransferIn.from_entry, report)
            else:
                answer = _typed(y, entry, TransferRefusal.from_entry, report)
            if isinstance(answer, TransferIn | TransferRefusal) and answer.from_origin == x.origin:
                way.answers[answer.from_index].append(entry.seq)
                if isinstance(answer, TransferIn):
                    way.due_from += answer.minutes
    _accounts_only_by_transfers(x, report)
    return way


def _accounts_only_by_transfers(log: PublicLog, report: AuditReport) -> None:
    moving = (TransferOut.kind, TransferIn.kind, TransferVoid.kind)
    for entry in log.entries:
        roles = {p.account.split(":")[1] for p in entry.request.postings if ":" in p.account}
        if roles & {DUE_TO, DUE_FROM} and entry.request.kind not in moving:
            report.add(log.where(entry.seq), f"{entry.request.kind}: moves a peer bank's account")


def _match(way: Way, report: AuditReport) -> None:
    x, y = way.sender, way.receiver
    for index, out in way.outs.items():
        where = x.where(index)
        answers = way.answers.get(index, [])
        settled = way.settled.get(out.transfer)
        void = way.voids.get(out.transfer)
        if len(answers) > 1:
            found = ", ".join(str(a) for a in answers)
            report.add(
                where, f"transfer_out: answered {len(answers)} times in {y.origin} ({found})"
            )
            continue
        if not answers:
            if settled is not None or void is not None:
                closing = "transfer_settled" if settled else "transfer_void"
                report.add(
                    where,
                    f"transfer_out: no transfer_in or transfer_refused in {y.origin} answers it, "
                    f"yet {closing} at index {(settled or void)[0]} closes it",  # type: ignore[index]
                )
            else:
                way.open[index] = out.minutes
            continue
        at = answers[0]
        answer = y.entries[at].request
        leaf = x.hashes[index].hex()
        quoted = answer.body.get("from_leaf_hash")
        if quoted != leaf or answer.body.get("transfer") != out.transfer:
            credits = ""
            credited = max((p.minutes for p in answer.postings), default=0)
            if answer.kind == TransferIn.kind and credited != out.minutes:
                credits = f"; it credits {credited} minutes, this holds {out.minutes}"
            report.add(
                where,
                f"transfer_out: {y.origin} index {at} ({answer.kind}) quotes leaf hash "
                f"{str(quoted)[:16]}… of transfer {answer.body.get('transfer')}, this entry's is "
                f"{leaf[:16]}… of transfer {out.transfer}{credits}",
            )
            continue
        if answer.kind == TransferIn.kind:
            minutes = TransferIn.from_entry(answer).minutes
            if minutes != out.minutes:
                report.add(
                    where,
                    f"transfer_out: {out.minutes} minutes, {y.origin} index {at} credits {minutes}",
                )
            way.credited[index] = minutes
            if void is not None:
                report.add(x.where(void[0]), f"transfer_void: {y.origin} index {at} credited it")
            if settled is None:
                way.open[index] = out.minutes  # credited, the proof not yet back: in flight
            elif (settled[1].to_index, settled[1].to_leaf_hash) != (at, y.hashes[at].hex()):
                report.add(
                    x.where(settled[0]),
                    f"transfer_settled: quotes {y.origin} index {settled[1].to_index} leaf hash "
                    f"{settled[1].to_leaf_hash[:16]}…, its transfer_in is index {at} leaf hash "
                    f"{y.hashes[at].hex()[:16]}…",
                )
        else:
            if settled is not None:
                report.add(
                    x.where(settled[0]), f"transfer_settled: {y.origin} index {at} refused it"
                )
            if void is None:
                way.open[index] = out.minutes  # refused, the void not yet written: in flight
            elif void[1].minutes != out.minutes:
                report.add(
                    x.where(void[0]),
                    f"transfer_void: gives back {void[1].minutes} "
                    f"minutes of a {out.minutes}-minute transfer_out",
                )
    for index, answers in way.answers.items():
        if index not in way.outs:
            for at in answers:
                report.add(
                    y.where(at),
                    f"{y.entries[at].request.kind}: quotes {x.origin} index {index}, which is "
                    f"not a transfer_out to {y.origin}",
                )


def _mirror(way: Way, report: AuditReport) -> None:
    """X's due_to for Y, less the minutes still in flight, is minus Y's due_from for X."""
    in_flight = sum(m for i, m in way.open.items() if i not in way.credited)
    if way.due_to - in_flight != way.due_from:
        report.add(
            f"{way.sender.origin} checkpoint {way.sender.checkpoint.size}",
            f"due_to mirror: due_to for {way.receiver.origin} is {way.due_to} minutes "
            f"({in_flight} in flight), {way.receiver.origin}'s due_from for it is "
            f"{-way.due_from} (credited {way.due_from})",
        )
    for index, minutes in sorted(way.open.items()):
        state = "credited, not yet settled" if index in way.credited else "not yet answered"
        report.notes.append(
            f"{way.sender.where(index)}: transfer_out of {minutes} minutes in flight ({state})"
        )


def _settlements(
    one: PublicLog,
    other: PublicLog,
    ways: list[Way],
    keys: dict[str, Verifier],
    report: AuditReport,
) -> None:
    found: dict[str, dict[str, tuple[int, Settlement]]] = defaultdict(dict)
    for log, peer in ((one, other), (other, one)):
        for entry in log.entries:
            if entry.request.kind != Settlement.kind:
                continue
            made = _typed(log, entry, Settlement.from_entry, report)
            if made is None or made.peer_origin != peer.origin:
                continue
            if {b.origin for b in made.document.banks} != {log.origin, peer.origin}:
                report.add(log.where(entry.seq), "settlement: names a bank other than these two")
                continue
            found[made.document.month][log.origin] = (entry.seq, made)
    by_sender = {w.sender.origin: w for w in ways}
    for month, sides in sorted(found.items()):
        for log in (one, other):
            if log.origin not in sides:
                index, _ = next(iter(sides.values()))
                holder = next(o for o in sides)
                report.add(
                    f"{holder} index {index}",
                    f"settlement {month}: {log.origin} holds no settlement of this month",
                )
        for origin, (index, made) in sides.items():
            _settlement(f"{origin} index {index}", made, one, other, by_sender, keys, report)
        if len(sides) == 2:
            (_, a), (index, b) = sides[one.origin], sides[other.origin]
            if canonical_json(a.document.to_json()) != canonical_json(b.document.to_json()):
                report.add(
                    other.where(index),
                    f"settlement {month}: its document differs from {one.origin}'s",
                )


def _settlement(
    where: str,
    made: Settlement,
    one: PublicLog,
    other: PublicLog,
    by_sender: dict[str, Way],
    keys: dict[str, Verifier],
    report: AuditReport,
) -> None:
    document = made.document
    label = f"settlement {document.month}"
    for signature in made.signatures:
        key = keys.get(signature.origin)
        if key is None or not signature.holds(document, key):
            report.add(where, f"{label}: {signature.origin}'s signature does not verify")
    end = month_end(document.month)
    for log in (one, other):
        side = document.side(log.origin)
        size, root = log.cutoff(document.month)
        if (side.size, side.root) != (size, root):
            report.add(
                where,
                f"{label}: {log.origin}'s cut-off is size {side.size} root {side.root[:16]}…, its "
                f"log has size {size} root {root[:16]}… at {end}",
            )
            continue
        way = by_sender[log.origin]
        sent = sum(m for i, m in way.credited.items() if i < size)
        if side.sent != sent:
            report.add(
                where,
                f"{label}: {log.origin} sent {side.sent} minutes, its transfer_outs before the "
                f"cut-off credited in {way.receiver.origin} sum to {sent}",
            )
        for index in sorted(i for i in way.open if i < size):
            report.add(log.where(index), f"transfer_out: still open, before {label}'s cut-off")
    first, second = document.banks
    if document.net_minutes != first.sent - second.sent:
        report.add(
            where,
            f"{label}: net_minutes is {document.net_minutes}, sent {first.sent} - "
            f"{second.sent} = {first.sent - second.sent}",
        )
