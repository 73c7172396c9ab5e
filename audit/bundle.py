"""Offline audits: ``export_bundle`` writes a self-contained directory (key, checkpoint, leaves,
events, ``manifest.json`` of SHA-256 hashes); ``verify_bundle`` checks it holding only the key."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from audit.client import LogClient
from audit.parallel import decoded_lines, default_workers
from audit.report import AuditError, AuditReport, Policy, check_checkpoint
from audit.rules import LeafRules
from audit.trail import AuditEvent
from audit.trail_checks import check_trail, parse_events
from ledger.errors import LedgerError
from ledger.merkle import EMPTY_ROOT, leaf_hash
from ledger.note import (
    Checkpoint,
    Note,
    Verifier,
)
from ledger.replay import Replay

BUNDLE_FORMAT = "timebank-audit-bundle/v1"


KEY_FILE, CHECKPOINT_FILE, LEAVES_FILE, MANIFEST_FILE = (
    "key.txt",
    "checkpoint.txt",
    "leaves.txt",
    "manifest.json",
)


BUNDLE_FILES = (KEY_FILE, CHECKPOINT_FILE, LEAVES_FILE)


EVENTS_FILE = "audit-events.jsonl"  # only in bundles exported with an auditor's token


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@dataclass(frozen=True)
class Export:
    """What ``export_bundle`` wrote."""

    size: int  # leaves
    manifest: Path
    events: int | None  # audit events, None without a token


def export_bundle(url: str, out: Path, timeout: float = 30.0, token: str | None = None) -> Export:
    """Write the log at ``url`` into ``out`` (which must be empty or new).

    With an auditor's bearer ``token`` the bundle also holds every audit event it may read
    (``audit-events.jsonl``, fetched after the leaves, so every seal in them is covered)."""
    client = LogClient(url, timeout)
    if out.exists() and any(out.iterdir()):
        raise AuditError(f"{out} is not empty; export into a new directory")
    out.mkdir(parents=True, exist_ok=True)
    key = client.key() + "\n"
    checkpoint_text = client.checkpoint()
    try:
        size = Checkpoint.parse_body(Note.parse(checkpoint_text).text).size
    except LedgerError as exc:
        raise AuditError(f"the log serves a malformed checkpoint: {exc}") from exc
    files: dict[str, dict[str, Any]] = {}
    for name, data in ((KEY_FILE, key.encode()), (CHECKPOINT_FILE, checkpoint_text.encode())):
        write_atomic(out / name, data)
        files[name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    digest, length = hashlib.sha256(), 0
    tmp = out / f".{LEAVES_FILE}.tmp"
    with open(tmp, "wb") as f:
        for _, leaf in client.iter_leaves(0, size):
            line = base64.b64encode(leaf) + b"\n"
            f.write(line)
            digest.update(line)
            length += len(line)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out / LEAVES_FILE)
    files[LEAVES_FILE] = {"sha256": digest.hexdigest(), "bytes": length}
    events = None
    if token is not None:
        lines = [
            json.dumps(event, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n"
            for event in client.audit_events(token)
        ]
        data = "".join(lines).encode()
        write_atomic(out / EVENTS_FILE, data)
        files[EVENTS_FILE] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        events = len(lines)
    manifest: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "source": url,
        "exported_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tree_size": size,
        "audit_events": events,
        "files": files,
    }
    write_atomic(out / MANIFEST_FILE, (json.dumps(manifest, indent=2) + "\n").encode())
    return Export(size, out / MANIFEST_FILE, events)


def _load_manifest(directory: Path, report: AuditReport) -> dict[str, Any] | None:
    try:
        manifest: Any = json.loads((directory / MANIFEST_FILE).read_bytes())
    except (OSError, ValueError) as exc:
        report.add("manifest", f"cannot read {MANIFEST_FILE}: {exc}")
        return None
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != BUNDLE_FORMAT
        or not isinstance(manifest.get("files"), dict)
    ):
        report.add("manifest", f"{MANIFEST_FILE} is not a {BUNDLE_FORMAT} manifest")
        return None
    checked: dict[str, Any] = manifest
    for name in BUNDLE_FILES:
        entry = checked["files"].get(name)
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            report.add("manifest", f"{MANIFEST_FILE} does not list {name}")
    return checked


def _check_hash(report: AuditReport, manifest: Mapping[str, Any], name: str, sha256: str) -> None:
    entry = manifest["files"].get(name)
    if isinstance(entry, dict) and entry.get("sha256") != sha256:
        report.add(f"file {name}", "SHA-256 does not match the manifest (the file was changed)")


def verify_bundle(
    directory: Path,
    policy: Policy,
    workers: int | None = None,
    *,
    shared_trail: bool = False,
    require_audit: bool = False,
) -> AuditReport:
    """Verify an export bundle offline; see the module docstring for the checks
    (``shared_trail``, ``require_audit``: see :func:`check_trail`).

    The per-leaf half of the replay (decoding, canonical form, posting rules) runs in
    ``workers`` processes (default: one per CPU for big bundles); the
    sequential half (chain, order, balances, tree) in this one. Both halves are
    ``ledger.replay``'s, so the result is the same either way.
    """
    report = AuditReport()
    manifest = _load_manifest(directory, report)
    if manifest is None:
        return report
    try:
        key_bytes = (directory / KEY_FILE).read_bytes()
        checkpoint_bytes = (directory / CHECKPOINT_FILE).read_bytes()
    except OSError as exc:
        report.add("bundle", f"missing file: {exc}")
        return report
    _check_hash(report, manifest, KEY_FILE, hashlib.sha256(key_bytes).hexdigest())
    _check_hash(report, manifest, CHECKPOINT_FILE, hashlib.sha256(checkpoint_bytes).hexdigest())
    compare_keys(key_bytes.decode("utf-8", "replace"), policy, report, f"file {KEY_FILE}")
    opened = check_checkpoint(checkpoint_bytes.decode("utf-8", "replace"), policy, report)
    checkpoint = opened[0] if opened else None
    report.checkpoint = checkpoint
    leaves_path = directory / LEAVES_FILE
    if not leaves_path.is_file():
        report.add("bundle", f"missing file: {LEAVES_FILE}")
        return report
    sizes = {checkpoint.size} if checkpoint else set()
    replay = Replay(policy.member_overdraft, root_sizes=sizes, problems=report.problems)
    rules = LeafRules(report)
    hashes = bytearray()
    digest = hashlib.sha256()
    if workers is None:  # about 500 bytes a line
        workers = default_workers(leaves_path.stat().st_size // 500)
    with open(leaves_path, "rb") as f:
        for position, (is_base64, leaf, extra) in enumerate(decoded_lines(f, digest, workers)):
            if not is_base64:
                report.add(f"seq {position}", f"line {position + 1} of {LEAVES_FILE} is not base64")
            replay.apply(position, leaf)
            rules.apply(position, extra)
            hashes += leaf[0]
    _check_hash(report, manifest, LEAVES_FILE, digest.hexdigest())
    replay.finish(lambda seqs: _bundle_originals(leaves_path, seqs, bytes(hashes)))
    rules.finish(replay.balances)
    report.entries = replay.size
    if checkpoint is not None:
        check_root(report, checkpoint, replay)
    events = _bundle_events(directory, manifest, report)
    check_trail(events, rules.seals, report, shared=shared_trail, required=require_audit)
    return report


def _bundle_events(
    directory: Path, manifest: Mapping[str, Any], report: AuditReport
) -> list[AuditEvent] | None:
    """The bundle's audit events; None if it was exported without them."""
    path = directory / EVENTS_FILE
    listed = EVENTS_FILE in manifest["files"]
    if not listed and not path.exists():
        return None
    if not listed:
        report.add("manifest", f"{MANIFEST_FILE} does not list {EVENTS_FILE}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        report.add("bundle", f"missing file: {exc}")
        return []
    _check_hash(report, manifest, EVENTS_FILE, hashlib.sha256(data).hexdigest())
    return parse_events(data.splitlines(), report, f"file {EVENTS_FILE}")


def _bundle_originals(path: Path, seqs: Sequence[int], hashes: bytes) -> dict[int, bytes]:
    """Leaves ``seqs`` read again from the bundle, kept only if they hash as replayed."""
    wanted, found = set(seqs), {}
    with open(path, "rb") as f:
        for position, line in enumerate(f):
            if position in wanted:
                try:
                    leaf = binascii.a2b_base64(line.rstrip(b"\n"), strict_mode=True)
                except binascii.Error:
                    continue
                if leaf_hash(leaf) == hashes[position * 32 : position * 32 + 32]:
                    found[position] = leaf
                if len(found) == len(wanted):
                    break
    return found


def compare_keys(served: str, policy: Policy, report: AuditReport, where: str) -> bool:
    try:
        same = Verifier.from_text(served.strip()) == policy.key
    except LedgerError:
        same = False
    if not same:
        report.add(
            where,
            f"the log's key is {served.strip()[:120]!r}, not the key you supplied "
            f"({policy.key.to_text()}): refusing to trust it",
        )
    return same


def check_root(report: AuditReport, checkpoint: Checkpoint, replay: Replay) -> None:
    where = f"checkpoint {checkpoint.size}"
    if replay.size != checkpoint.size:
        report.add(
            where,
            f"the signed checkpoint covers {checkpoint.size} entries but there are {replay.size}",
        )
    root = replay.roots.get(checkpoint.size, EMPTY_ROOT if checkpoint.size == 0 else None)
    if root is not None and root != checkpoint.root:
        report.add(
            where,
            "signed root does not match the leaves: an entry was changed, removed, inserted or "
            "moved (see the seq problems above), or the checkpoint was replaced",
        )
