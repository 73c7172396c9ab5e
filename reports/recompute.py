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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from audit.bundle import compare_keys
from audit.client import LogClient
from audit.parallel import default_workers, in_chunks, map_chunks
from audit.report import AuditReport, Policy, check_checkpoint
from ledger.entry import canonical_json
from ledger.errors import LedgerError
from ledger.merkle import Frontier, leaf_hash
from ledger.note import Checkpoint
from ledger.replay import decode_leaf
from reports.public import BadHalf, flatten, half_bounds, log_time
from reports.summed import SummedFigures

FORMAT = "timebank-halfyear-report/v1"
# Leaves per worker task: each task's partial figures hold every member it saw, and merging
# them costs about as much as counting a few thousand leaves, so tasks are large.
FIGURE_CHUNK = 25_000
ROOT_DIFFERS = "the log's leaves do not hash to the anchored checkpoint's root"


def _describe(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _chunk_figures(
    bank: str, start: datetime, end: datetime, leaves: list[tuple[int, bytes]]
) -> list[tuple[SummedFigures, list[tuple[int, str]]]]:
    """The figures of a run of leaves and the malformed ones; runs in worker processes."""
    figures, malformed = SummedFigures(bank, start, end), []
    for index, leaf in leaves:
        try:
            figures.add_leaf(leaf)
        except ValueError as exc:
            malformed.append((index, str(exc)))
    return [(figures, malformed)]


@dataclass
class Recount:
    """The figures recomputed from the leaves, the leaves' tree, the ``report`` entries of
    the half (seq, body) and what was found wrong as (seq, order, where, what)."""

    figures: SummedFigures
    frontier: Frontier = field(default_factory=Frontier)
    anchors: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    found: list[tuple[int, int, str, str]] = field(default_factory=list)


def recount(
    leaves: Iterable[tuple[int, bytes]],
    checkpoint: Checkpoint,
    bank: str,
    start: datetime,
    end: datetime,
    entry_id: str,
    workers: int,
) -> Recount:
    """Hash every leaf in order and look for the entries ``entry_id``; count the leaves below
    the anchored checkpoint in ``workers`` processes, a run of leaves each."""
    counted = Recount(SummedFigures(bank, start, end))
    frontier, found, marker = counted.frontier, counted.found, entry_id.encode()

    def passed_on() -> Iterator[tuple[int, bytes]]:
        for index, leaf in leaves:
            frontier.append(leaf_hash(leaf))
            if index < checkpoint.size:
                yield index, leaf
                if frontier.size == checkpoint.size and frontier.root() != checkpoint.root:
                    found.append((index, 1, "checkpoint", ROOT_DIFFERS))
            if marker in leaf:
                try:
                    entry = decode_leaf(leaf)
                except LedgerError as exc:
                    found.append((index, 2, f"seq {index}", f"malformed entry: {exc}"))
                    continue
                if entry.request.kind == "report" and entry.request.id == entry_id:
                    counted.anchors.append((index, dict(entry.request.body)))

    work = partial(_chunk_figures, bank, start, end)
    for part, malformed in map_chunks(in_chunks(passed_on(), FIGURE_CHUNK), work, workers):
        counted.figures.merge(part)
        found.extend(
            (index, 0, f"seq {index}", f"malformed entry: {what}") for index, what in malformed
        )
    return counted


def verify_report(
    data: bytes, client: LogClient, policy: Policy, workers: int | None = None
) -> AuditReport:
    """``workers``: processes parsing the leaves (default: one per CPU, up to 4, for large
    logs); the figures are sums, so parts of the log are counted in any order."""
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
    leaves = client.iter_leaves(0, latest.size)
    counted = recount(leaves, checkpoint, bank, start, end, entry_id, workers)
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
