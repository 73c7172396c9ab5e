"""The audit trail against the log: the events' hash chain, and every ``seal`` leaf's claim
(count and head) matching the events the auditor was shown."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Sequence

from audit.report import AuditReport
from audit.trail import ZERO, AuditEvent, Seal, check_chain, check_seals
from ledger.replay import Problem


def _ranges(seqs: Sequence[int], limit: int = 8) -> str:
    """``[3, 4, 5, 9]`` → ``"3–5, 9"`` (at most ``limit`` ranges, then how many more)."""
    runs: list[str] = []
    groups = [
        [seq for _, seq in group]
        for _, group in itertools.groupby(enumerate(seqs), lambda p: p[1] - p[0])
    ]
    for group in groups[:limit]:
        runs.append(str(group[0]) if len(group) == 1 else f"{group[0]}–{group[-1]}")
    if len(groups) > limit:
        runs.append(f"and {len(groups) - limit} more ranges")
    return ", ".join(runs)


def _events_are(seqs: Sequence[int]) -> str:
    """``"audit event 4 is"`` or ``"audit events 4–6, 9 are"``."""
    if len(seqs) == 1:
        return f"audit event {seqs[0]} is"
    return f"audit events {_ranges(seqs)} are"


def _problem(text: str) -> Problem:
    where, _, message = text.partition(": ")
    return Problem(where, message)


def check_trail(
    events: Sequence[AuditEvent] | None,
    seals: Sequence[Seal],
    report: AuditReport,
    *,
    shared: bool = False,
    required: bool = False,
) -> None:
    """Check the audit events against their chain and every seal in the log; see
    docs/auditing.md (section 3, and "Banks sharing a log") for what is and cannot be concluded.

    ``events`` None means the audit had no events (no auditor's token). Seals must never
    cover fewer events than an earlier seal, whatever the events. Then, with the **whole
    trail** (``shared`` false): ``audit.trail.check_chain`` and ``check_seals`` — a missing
    event is a problem. With a **shared trail** (other banks' events are not visible to this
    auditor): each event's ``prev`` is checked against the event before it where that one is
    visible, and each seal whose last event is visible against that event's hash; missing
    events are noted, since the chain cannot be checked across them.
    """
    _check_seal_order(seals, report)
    if events is None:
        message = "no audit events (no auditor's --token): the audit trail was not checked"
        if seals:
            entries = "entry" if len(seals) == 1 else "entries"
            message += f", nor the {len(seals)} seal {entries} in the log against it"
        if required:
            report.add("audit trail", message)
        else:
            report.notes.append(message)
        return
    seqs = [e.seq for e in events]
    visible = set(seqs)
    last = max(seqs, default=-1)
    missing = [seq for seq in range(last + 1) if seq not in visible]
    if shared:
        checked = _check_visible(events, seals, report)
    else:
        problems, heads = check_chain(events)
        report.problems.extend(_problem(p) for p in problems)
        report.problems.extend(_problem(p) for p in check_seals(seals, heads))
        checked = len(seals)
        if missing:
            report.notes.append(
                f"{_events_are(missing)} missing from what this auditor sees. "
                "If other banks share this log, they may be theirs (an auditor sees its own "
                "bank's events): verify with --shared-trail to check only the events you can "
                "see; the chain then cannot be checked end-to-end"
            )
    sealed = max((seal.count for seal in seals), default=0)
    unsealed = [seq for seq in seqs if seq >= sealed]
    if unsealed:
        report.notes.append(
            f"{len(unsealed)} audit {'event' if len(unsealed) == 1 else 'events'} from seq "
            f"{unsealed[0]} on {'is' if len(unsealed) == 1 else 'are'} not sealed into the "
            "log yet (the next seal covers them)"
        )
    report.trail = (
        f"audit trail: {len(events)} {'event' if len(events) == 1 else 'events'}, "
        f"{checked} of {len(seals)} {'seal' if len(seals) == 1 else 'seals'} checked"
    )
    if shared:
        report.trail += f" ({len(missing)} not visible)" if missing else ""


def _check_seal_order(seals: Sequence[Seal], report: AuditReport) -> None:
    for before, after in itertools.pairwise(seals):
        if after.count < before.count:
            report.add(
                f"seq {after.ledger_seq}",
                f"seal covers {after.count} audit events, fewer than the {before.count} "
                f"sealed by seq {before.ledger_seq} (the trail was cut back)",
            )


def _check_visible(events: Sequence[AuditEvent], seals: Sequence[Seal], report: AuditReport) -> int:
    """The shared-trail checks; returns how many seals could be checked."""
    hashes: dict[int, bytes] = {}
    last = -1
    for event in events:
        where = f"audit event {event.seq}"
        if event.seq <= last:
            report.add(where, f"comes after audit event {last} (events reordered or duplicated)")
            continue
        if event.seq == 0 and event.prev != ZERO:
            report.add(where, "prev of the first event is not 32 zero bytes")
        elif event.seq - 1 in hashes and event.prev != hashes[event.seq - 1]:
            report.add(where, "prev does not match the hash of the event before it")
        hashes[event.seq] = event.hash()
        last = event.seq
    invisible = []
    for seal in seals:
        head = hashes.get(seal.count - 1) if seal.count else ZERO
        if head is None:
            invisible.append(seal.ledger_seq)
        elif head != seal.head:
            report.add(
                f"seq {seal.ledger_seq}",
                f"sealed audit head at count {seal.count} differs from the trail (audit event "
                f"{seal.count - 1} or one before it was edited, removed, inserted or reordered)",
            )
    missing = [seq for seq in range(last + 1) if seq not in hashes]
    if missing:
        report.notes.append(
            f"shared trail: {_events_are(missing)} not visible to this auditor "
            "(another bank's, or removed): the chain is checked between consecutive visible "
            "events and at seals, not end-to-end"
        )
    if invisible:
        report.notes.append(
            f"shared trail: {len(invisible)} {'seal ends' if len(invisible) == 1 else 'seals end'} "
            f"at an audit event this auditor cannot see (seq {_ranges(invisible, 4)}): not checked"
        )
    return len(seals) - len(invisible)


def parse_events(lines: Iterable[bytes], report: AuditReport, where: str) -> list[AuditEvent]:
    """Audit events, one JSON object a line (as ``/v1/audit/events`` serves them)."""
    events = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            if not isinstance(raw, dict):
                raise TypeError("not a JSON object")
            events.append(AuditEvent.from_json(raw))
        except (KeyError, TypeError, ValueError) as exc:
            report.add(where, f"line {number} is not an audit event ({type(exc).__name__}: {exc})")
    return events
