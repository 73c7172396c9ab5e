"""What the auditor trusts (``Policy``: the log's key, the witnesses and their quorum) and what
it says (``AuditReport``: every problem found, where, and why)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ledger.errors import LedgerError
from ledger.note import (
    Checkpoint,
    Note,
    Verifier,
    check_cosignature,
    open_checkpoint,
)
from ledger.replay import Findings

FUTURE_SLACK = 600  # seconds a cosignature's timestamp may be ahead of our clock


class AuditError(Exception):
    """The audit could not run (bad arguments, unreadable files, an unreachable log)."""


@dataclass(frozen=True)
class Policy:
    """What the auditor trusts: the log's key, and which witnesses (how many) must cosign."""

    key: Verifier
    witnesses: tuple[Verifier, ...] = ()
    quorum: int = 0
    member_overdraft: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.quorum <= len(self.witnesses):
            raise AuditError(
                f"quorum {self.quorum} needs at least that many --witness keys "
                f"({len(self.witnesses)} given)"
            )

    @property
    def origin(self) -> str:
        return self.key.name  # a Timebank log signs with a key named after its origin


@dataclass
class AuditReport(Findings):
    """What an audit found and what it checked, printed by ``lines`` for the CLI."""

    notes: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    entries: int = 0  # leaves replayed in this run
    what: str = ""  # what was checked, for the summary line
    trail: str = ""  # what of the audit trail was checked, for the summary line
    checkpoint: Checkpoint | None = None
    cosigners: list[str] = field(default_factory=list)
    evidence: list[Path] = field(default_factory=list)

    def lines(self) -> Iterator[str]:
        cp = self.checkpoint
        what = self.what or f"{self.entries} {'entry' if self.entries == 1 else 'entries'} replayed"
        if self.trail:
            what += f"; {self.trail}"
        if cp is not None:
            what += f"; checkpoint {cp.origin} size {cp.size} root {cp.root.hex()}"
        if self.ok:
            yield f"OK: {what}"
        else:
            count = len(self.problems)
            yield f"FAILED: {count} {'problem' if count == 1 else 'problems'} ({what})"
        if self.cosigners:
            yield f"  cosigned by: {', '.join(self.cosigners)}"
        for problem in self.problems:
            yield f"  {problem}"
        for detail in self.details:
            yield f"  {detail}"
        for note in self.notes:
            yield f"  note: {note}"
        for path in self.evidence:
            yield f"  evidence: {path}"


def read_key(value: str) -> Verifier:
    """A verifier key given as text, or as the path of a file holding it."""
    text = value
    path = Path(value)
    if "+" not in value or path.is_file():
        try:
            text = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise AuditError(f"cannot read key file {value}: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise AuditError(f"key file {value} is not a verifier key (not UTF-8 text)") from exc
    try:
        return Verifier.from_text(text)
    except LedgerError as exc:
        raise AuditError(f"bad key {value[:60]!r}: {exc}") from exc


def check_checkpoint(
    text: str, policy: Policy, report: AuditReport, label: str = "checkpoint"
) -> tuple[Checkpoint, Note] | None:
    """Require the log's signature for its origin and the witness quorum; report what fails."""
    try:
        checkpoint, note = open_checkpoint(text, policy.key, policy.origin)
    except LedgerError as exc:
        report.add(label, f"does not verify with the log key you supplied: {exc}")
        return None
    where = f"checkpoint {checkpoint.size}"
    now = int(time.time())
    cosigners = []
    for witness in policy.witnesses:
        timestamp = check_cosignature(note, witness)
        if timestamp is None:
            continue
        if timestamp > now + FUTURE_SLACK:
            report.notes.append(f"cosignature by {witness.name} is dated in the future; ignored")
            continue
        cosigners.append(witness.name)
    report.cosigners = cosigners
    if len(cosigners) < policy.quorum:
        report.add(
            where,
            f"only {len(cosigners)} of the {policy.quorum} witness cosignatures your policy "
            f"requires verify ({', '.join(cosigners) or 'none'})",
        )
    return checkpoint, note
