"""Online audits: incremental over HTTP with a saved state (last checkpoint and replay state),
consistency proofs, and fork detection against what witnesses cosigned."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from audit.bundle import check_root, compare_keys, write_atomic
from audit.client import LogClient, fetch
from audit.devices import DeviceBook
from audit.holds import HoldBook
from audit.parallel import decode_leaves, default_workers, in_chunks, map_chunks
from audit.report import AuditError, AuditReport, Policy, check_checkpoint
from audit.rules import LeafRules
from audit.trail import AuditEvent, Seal
from audit.trail_checks import check_trail
from ledger.errors import LedgerError
from ledger.merkle import EMPTY_ROOT, leaf_hash, verify_consistency, verify_inclusion
from ledger.note import (
    Checkpoint,
    Note,
    Verifier,
    check_cosignature,
    open_checkpoint,
)
from ledger.replay import Replay, ReplayState

STATE_FORMAT = "timebank-audit-state/v1"


@dataclass
class AuditState:
    """What an online auditor remembers between runs (one file per log)."""

    key: str
    checkpoint: str  # the last verified signed checkpoint, as served (with cosignatures)
    replay: ReplayState
    seal: Seal | None = None  # the last seal entry in the replayed leaves
    holds: HoldBook | None = None  # open holds (None in a state saved before holds were kept)
    devices: DeviceBook | None = None  # device keys (None in a state saved before they were)

    def to_json(self) -> dict[str, Any]:
        seal = self.seal
        return {
            "format": STATE_FORMAT,
            "key": self.key,
            "checkpoint": self.checkpoint,
            "replay": self.replay.to_json(),
            "audit_seal": None
            if seal is None
            else {
                "seq": seal.ledger_seq,
                "count": seal.count,
                "head": base64.b64encode(seal.head).decode(),
            },
            "holds": None if self.holds is None else self.holds.to_json(),
            "devices": None if self.devices is None else self.devices.to_json(),
            "saved_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }

    @classmethod
    def load(cls, path: Path) -> AuditState | None:
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise AuditError(f"cannot read the state file {path}: {exc}") from exc
        try:
            if data["format"] != STATE_FORMAT:
                raise ValueError(f"format is not {STATE_FORMAT}")
            state = cls(
                str(data["key"]), str(data["checkpoint"]), ReplayState.from_json(data["replay"])
            )
            Verifier.from_text(state.key)
            remembered = Checkpoint.parse_body(Note.parse(state.checkpoint).text)
            if remembered.size != state.replay.size:
                raise ValueError("its checkpoint and replay state disagree on the size")
            seal = data.get("audit_seal")
            if seal is not None:
                state.seal = Seal(
                    int(seal["seq"]),
                    int(seal["count"]),
                    base64.b64decode(seal["head"], validate=True),
                )
                if not 0 <= state.seal.ledger_seq < remembered.size or len(state.seal.head) != 32:
                    raise ValueError("its audit seal is not one of the verified entries")
            if data.get("holds") is not None:
                state.holds = HoldBook.from_json(data["holds"])
            if data.get("devices") is not None:
                state.devices = DeviceBook.from_json(data["devices"])
        except (KeyError, TypeError, ValueError, LedgerError) as exc:
            raise AuditError(f"the state file {path} is damaged: {exc}") from exc
        return state

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, (json.dumps(self.to_json(), indent=1) + "\n").encode())


@dataclass(frozen=True)
class View:
    """A signed checkpoint seen somewhere other than the log's answer right now."""

    label: str
    note: str


def verify_online(
    url: str,
    policy: Policy,
    *,
    state_path: Path | None = None,
    full: bool = False,
    witness_urls: Sequence[str] = (),
    evidence_dir: Path | None = None,
    timeout: float = 30.0,
    workers: int | None = None,
    token: str | None = None,
    shared_trail: bool = False,
    require_audit: bool = False,
) -> AuditReport:
    """Verify the log at ``url``; see the module docstring (``workers``: see verify_bundle).

    With an auditor's ``token``, every audit event is fetched after the leaves and checked
    against the seals replayed now and the last one remembered in the state file (see
    :func:`check_trail` for ``shared_trail`` and ``require_audit``)."""
    report = AuditReport()
    client = LogClient(url, timeout)
    if not compare_keys(client.key(), policy, report, "key"):
        return report
    served_text = client.checkpoint()
    opened = check_checkpoint(served_text, policy, report)
    if opened is None:
        return report
    checkpoint, _ = opened
    report.checkpoint = checkpoint
    state = AuditState.load(state_path) if state_path else None
    if state is not None and Verifier.from_text(state.key) != policy.key:
        raise AuditError(f"the state file {state_path} was made for another log key")
    evidence_dir = evidence_dir or (
        state_path.parent / "evidence" if state_path else Path("audit-evidence")
    )
    views = [View("remembered from the last verified run", state.checkpoint)] if state else []
    views += _witness_views(witness_urls, policy, report, timeout)
    forked = False
    for view in views:
        if not _consistent(view, served_text, checkpoint, client, policy, report, evidence_dir):
            forked = True
    remembered = (
        Checkpoint.parse_body(Note.parse(state.checkpoint).text) if state is not None else None
    )
    if remembered is not None and remembered.size > checkpoint.size and not full:
        report.what = "nothing new to replay"
        return report
    resume = (
        state is not None
        # an older state: replay everything once to build the books
        and state.holds is not None
        and state.devices is not None
        and remembered is not None
        and not full
        and not forked
        and remembered.size <= checkpoint.size
    )
    start = remembered.size if resume and remembered is not None else 0
    sizes = {checkpoint.size} | ({remembered.size} if remembered else set())
    replay = Replay(
        policy.member_overdraft,
        state=state.replay if resume and state is not None else None,
        root_sizes=sizes,
        problems=report.problems,
    )
    rules = LeafRules(report)
    if resume and state is not None:
        if state.seal is not None:
            rules.seals.append(state.seal)
        if state.holds is not None:
            rules.holds = state.holds
        if state.devices is not None:
            rules.devices = state.devices
    hashes = bytearray()
    if workers is None:
        workers = default_workers(checkpoint.size - start)
    try:
        pages = in_chunks(leaf for _, leaf in client.iter_leaves(start, checkpoint.size))
        for index, (leaf, extra) in enumerate(map_chunks(pages, decode_leaves, workers), start):
            replay.apply(index, leaf)
            rules.apply(index, extra)
            hashes += leaf[0]
        replay.finish(
            lambda seqs: _online_originals(client, seqs, start, bytes(hashes), checkpoint)
        )
        rules.finish(replay.balances)
    except AuditError as exc:
        report.add("log", str(exc))
        return report
    report.entries = replay.size - start
    check_root(report, checkpoint, replay)
    if (
        remembered is not None
        and start == 0
        and not forked
        and replay.roots.get(remembered.size, remembered.root) != remembered.root
    ):
        report.add(
            f"checkpoint {remembered.size}",
            "the leaves now served hash to a different root than the one verified before",
        )
    # after the leaves: every seal replayed covers events that exist by now
    events = None
    if token is not None:
        try:
            events = [AuditEvent.from_json(e) for e in client.audit_events(token)]
        except AuditError as exc:
            report.add("audit trail", f"cannot read the audit events: {exc}")
        except (KeyError, TypeError, ValueError) as exc:
            report.add("audit trail", f"the log serves a malformed audit event: {exc}")
    if token is None or events is not None:
        check_trail(events, rules.seals, report, shared=shared_trail, required=require_audit)
    if resume:
        new = checkpoint.size - start
        report.what = (
            f"{new} new {'entry' if new == 1 else 'entries'} replayed (resumed from size {start})"
        )
    if report.ok and state_path is not None:
        last_seal = rules.seals[-1] if rules.seals else None
        AuditState(
            policy.key.to_text(),
            served_text,
            replay.state(),
            last_seal,
            rules.holds,
            rules.devices,
        ).save(state_path)
    return report


def _witness_views(
    urls: Sequence[str], policy: Policy, report: AuditReport, timeout: float
) -> list[View]:
    views = []
    for url in urls:
        query = urllib.parse.urlencode({"origin": policy.origin})
        try:
            text = fetch(f"{url.rstrip('/')}/checkpoint?{query}", timeout).decode("utf-8")
        except (AuditError, UnicodeDecodeError) as exc:
            report.notes.append(f"witness {url}: no checkpoint to compare with ({exc})")
            continue
        try:
            note = Note.parse(text)
        except LedgerError as exc:
            report.add(f"witness {url}", f"answered a malformed checkpoint: {exc}")
            continue
        if policy.witnesses and not any(
            check_cosignature(note, w) is not None for w in policy.witnesses
        ):
            report.add(f"witness {url}", "its checkpoint carries no cosignature by a --witness key")
            continue
        views.append(View(f"cosigned by the witness at {url}", text))
    return views


def _consistent(
    view: View,
    served_text: str,
    served: Checkpoint,
    client: LogClient,
    policy: Policy,
    report: AuditReport,
    evidence_dir: Path,
) -> bool:
    """False (and a fork reported, with evidence) if ``view`` and the served checkpoint
    cannot both be checkpoints of one append-only log."""
    try:
        other, _ = open_checkpoint(view.note, policy.key, policy.origin)
    except LedgerError as exc:
        report.add("checkpoint", f"the checkpoint {view.label} does not verify: {exc}")
        return True
    small, large = sorted((other, served), key=lambda c: c.size)
    reason = None
    if other.size == served.size:
        if other.root != served.root:
            reason = f"two signed checkpoints of size {served.size} with different roots"
    elif small.size == 0:
        if small.root != EMPTY_ROOT:
            reason = "a signed empty tree with a root that is not SHA-256 of nothing"
    else:
        try:
            proof = client.consistency(small.size, large.size)
            verify_consistency(small.size, large.size, small.root, large.root, proof)
        except (AuditError, LedgerError) as exc:
            reason = f"no valid consistency proof from size {small.size} to {large.size} ({exc})"
        if reason is None and other.size > served.size:
            report.notes.append(
                f"the log serves size {served.size}, older than the size {other.size} "
                f"{view.label} (consistent)"
            )
    if reason is None:
        return True
    path = _write_evidence(evidence_dir, view, served_text, reason)
    report.evidence.append(path)
    report.add(
        f"checkpoint {served.size}",
        f"FORK (split view): the checkpoint served now and the one {view.label} cannot both "
        f"be true: {reason}; both signed notes are in {path}",
    )
    return False


def _write_evidence(directory: Path, view: View, served: str, reason: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    path = directory / f"fork-{stamp}"
    path.mkdir(parents=True, exist_ok=True)
    (path / "checkpoint-seen-before.txt").write_text(view.note, encoding="utf-8")
    (path / "checkpoint-served-now.txt").write_text(served, encoding="utf-8")
    (path / "README.txt").write_text(
        "Two checkpoints signed by the same log key that cannot both be true.\n"
        f"Reason: {reason}\n"
        f"checkpoint-seen-before.txt: {view.label}\n"
        "checkpoint-served-now.txt: served by the log in this run\n"
        "Both verify with the log's public key; together they prove the log showed different "
        "histories (a split view).\n",
        encoding="utf-8",
    )
    return path


def _online_originals(
    client: LogClient, seqs: Sequence[int], start: int, hashes: bytes, checkpoint: Checkpoint
) -> dict[int, bytes]:
    """Leaves named by reversals, fetched again and authenticated: against the hashes just
    replayed, or (before ``start``) by an inclusion proof in the verified checkpoint."""
    found: dict[int, bytes] = {}
    for seq in seqs:
        try:
            leaf = client.leaves(seq, seq + 1)[0]
            if seq >= start:
                offset = (seq - start) * 32
                if leaf_hash(leaf) == hashes[offset : offset + 32]:
                    found[seq] = leaf
            else:
                proof = client.inclusion(seq, checkpoint.size)
                verify_inclusion(leaf_hash(leaf), seq, checkpoint.size, proof, checkpoint.root)
                found[seq] = leaf
        except (AuditError, LedgerError):
            continue
    return found
