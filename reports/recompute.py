"""``timebank audit report``: check a published half-yearly report against the public log.

From the document's bytes and the log's key alone: the document is canonical JSON; its
checkpoint is signed by the log's key; the leaves up to that checkpoint hash to its root, and
every public figure recomputed from them (``reports.public``) equals the document's; the rest
of the log up to the checkpoint served now hashes to that signed root, and holds the ``report``
entry of this half with the document's SHA-256 and the same checkpoint. Each difference is
named: the figure, the document's bytes, or the checkpoint it is anchored at.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from audit.bundle import compare_keys
from audit.client import LogClient
from audit.parallel import default_workers, map_chunks
from audit.report import AuditReport, Policy, check_checkpoint
from ledger.entry import canonical_json
from ledger.errors import LedgerError
from ledger.merkle import Frontier
from ledger.note import Checkpoint
from reports.public import BadHalf, flatten, half_bounds, log_time
from reports.runs import RUN, BundleLog, HttpLeaves, LeafSource, Run, count_runs, push
from reports.summed import SummedFigures

FORMAT = "timebank-halfyear-report/v1"
ROOT_DIFFERS = "the log's leaves do not hash to the anchored checkpoint's root"


def _describe(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


@dataclass
class Recount:
    """The figures recomputed from the leaves, the leaves' tree, the ``report`` entries of
    the half (seq, body) and what was found wrong as (seq, order, where, what)."""

    figures: SummedFigures
    frontier: Frontier = field(default_factory=Frontier)
    anchors: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    found: list[tuple[int, int, str, str]] = field(default_factory=list)


def plan_runs(source: LeafSource, size: int, checkpoint: int) -> list[Run]:
    """Runs of leaves [0, size): cut every ``RUN`` leaves and at the anchored checkpoint."""
    cuts = sorted({*range(0, size, RUN), min(checkpoint, size), size})
    offsets = source.plan(cuts)
    return [
        Run(a, b, a < checkpoint, offset, stop)
        for a, b, offset, stop in zip(cuts, cuts[1:], offsets, offsets[1:], strict=False)
    ]


def recount(
    source: LeafSource,
    size: int,
    checkpoint: Checkpoint,
    bank: str,
    start: datetime,
    end: datetime,
    entry_id: str,
    workers: int,
) -> Recount:
    """Hash the leaves [0, size) into the tree, look for the entries ``entry_id`` and count the
    leaves below the anchored checkpoint: ``workers`` processes each read, hash and count
    their own runs of leaves (``reports.runs``); the runs' subtrees are combined in order."""
    counted = Recount(SummedFigures(bank, start, end))
    frontier = counted.frontier
    work = partial(count_runs, source, bank, start, end, entry_id)
    runs = ([run] for run in plan_runs(source, size, checkpoint.size))
    for part in map_chunks(runs, work, workers):
        for level, node in part.nodes:
            push(frontier, level, node)
        if part.run.end == checkpoint.size and frontier.root() != checkpoint.root:
            counted.found.append((checkpoint.size - 1, 1, "checkpoint", ROOT_DIFFERS))
        if part.figures is not None:
            counted.figures.merge(part.figures)
        counted.anchors.extend(part.anchors)
        counted.found.extend(part.found)
    return counted


def verify_report(
    data: bytes, client: LogClient | BundleLog, policy: Policy, workers: int | None = None
) -> AuditReport:
    """Check ``data`` against the log served at ``client`` or downloaded as a bundle.
    ``workers``: processes reading, hashing and counting runs of leaves (default: one per CPU,
    up to 4, for large logs); the figures are sums, so runs are counted in any order."""
    report = AuditReport()
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        report.add("document", f"is not JSON: {exc}")
        return report
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        report.add("document", f"is not a {FORMAT} document")
        return report
    try:
        canonical = canonical_json(document) == data
    except LedgerError:
        canonical = False
    if not canonical:
        report.add("document", "its bytes are not the canonical JSON (RFC 8785) that is hashed")
    sha256 = hashlib.sha256(data).hexdigest()
    bank, half = str(document.get("bank")), str(document.get("half"))
    report.what = f"report {half} of bank {bank}"
    try:
        start, end = half_bounds(half, str(document.get("timezone")))
    except BadHalf as exc:
        report.add("half", str(exc))
        return report
    for name, moment in (("start", start), ("end", end)):
        if document.get(name) != log_time(moment):
            report.add(
                name, f"the document says {document.get(name)!r}, {half} gives {log_time(moment)!r}"
            )
    anchored = document.get("checkpoint")
    if not isinstance(anchored, dict) or not isinstance(anchored.get("note"), str):
        report.add("checkpoint", "the document carries no signed checkpoint")
        return report
    # The log's signature on the anchored checkpoint; witnesses cosign the served one, which
    # the leaves below show extends it.
    log_only = Policy(policy.key, member_overdraft=policy.member_overdraft)
    opened = check_checkpoint(anchored["note"], log_only, report, "checkpoint")
    if opened is None:
        return report
    checkpoint = opened[0]
    if anchored.get("size") != checkpoint.size:
        report.add(
            "checkpoint.size",
            f"is {anchored.get('size')}, the signed checkpoint's {checkpoint.size}",
        )
    if not compare_keys(client.key(), policy, report, "key"):
        return report
    served = check_checkpoint(client.checkpoint(), policy, report, "served checkpoint")
    if served is None:
        return report
    latest = served[0]
    report.checkpoint = latest
    if latest.size < checkpoint.size:
        report.add(
            "checkpoint",
            f"the log serves size {latest.size}, less than the anchored {checkpoint.size}",
        )
        return report
    if workers is None:
        workers = default_workers(checkpoint.size)
    entry_id = f"report:{bank}:{half}"
    source = (
        client.source() if isinstance(client, BundleLog) else HttpLeaves(client.url, client.timeout)
    )
    counted = recount(source, latest.size, checkpoint, bank, start, end, entry_id, workers)
    figures, frontier, anchors = counted.figures, counted.frontier, counted.anchors
    for _, _, where, what in sorted(counted.found):
        report.add(where, what)
    if frontier.root() != latest.root:
        report.add(
            "served checkpoint", "the log's leaves do not hash to the served checkpoint's root"
        )
    report.entries = latest.size
    mine = flatten(figures.figures())
    theirs = flatten(document.get("public"))
    for name in sorted(set(mine) | set(theirs)):
        if mine.get(name, "(absent)") != theirs.get(name, "(absent)"):
            report.add(
                f"public.{name}",
                f"the document says {_describe(theirs.get(name, '(absent)'))}, "
                f"the log gives {_describe(mine.get(name, '(absent)'))}",
            )
    if not anchors:
        report.add(
            "report entry", f"no entry {entry_id} in the log after checkpoint {checkpoint.size}"
        )
        return report
    seq, body = anchors[0]
    if body.get("sha256") != sha256:
        report.add(
            "sha256",
            f"the document's SHA-256 is {sha256}; entry {seq} anchors {body.get('sha256')}",
        )
    if body.get("tree_size") != checkpoint.size:
        report.add(
            "checkpoint",
            f"the document was computed at checkpoint {checkpoint.size}; entry {seq} anchors "
            f"checkpoint {body.get('tree_size')}",
        )
    report.notes.append(
        f"{len(mine)} public figures recomputed from entries [0, {checkpoint.size}); the "
        "attested figures need the bank's private data and are not recomputed"
    )
    report.details.append(f"anchored by entry {seq} ({entry_id}), SHA-256 {body.get('sha256')}")
    return report
