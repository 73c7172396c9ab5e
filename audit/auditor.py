"""The auditor: check a Timebank log holding only its public key — offline, online, receipts.

Nothing here trusts the operator. The auditor brings the log's verifier key (and, optionally,
a witness policy: which witness keys, how many cosignatures required); everything else —
leaves, checkpoints, proofs — is checked against that key and the Merkle tree.

* ``export_bundle``: fetch the key, the latest checkpoint (with cosignatures) and every leaf
  over the public HTTP API into a self-contained directory with a ``manifest.json`` of
  SHA-256 hashes.
* ``verify_bundle``: offline. Manifest hashes; the key is the one supplied; the checkpoint's
  signature and the witness quorum; every leaf through ``ledger.replay`` (canonical form, hash
  chain, seq order, time order, double-entry rules, balance floors, reversals); the Merkle
  root equals the signed root and the size matches.
* ``verify_online``: the same over HTTP, incrementally: a state file remembers the last
  verified checkpoint and the replay state; the next run checks the new checkpoint is
  consistent with it (``/v1/log/proof/consistency``) and replays only the new leaves
  (``full=True`` replays everything). It also compares the checkpoint it is shown with the
  remembered one and with the ones witnesses cosigned (``GET <witness>/checkpoint``): two
  signed checkpoints that cannot both be true — same size with different roots, or no valid
  consistency proof between them — are a **fork** (a split view), and both signed notes are
  written out as evidence.
* The **audit trail** (with an auditor's bearer token, ``GET /v1/audit/events``): export and
  online audits fetch every event the token may see; the chain is checked (``audit.trail``)
  and so is every ``seal`` entry in the leaves against it. An auditor sees its own bank's
  events (and those of no bank): with ``shared_trail`` the events of other banks are treated
  as not visible, otherwise a missing event is a problem. See ``check_trail``.
* **Deposits** (``deposit_problems``): every deposit refers to a record (a SHA-256 digest), was
  confirmed and verified by two different people, carries the verifier's signature, and issues
  exactly ``(minutes × weight + 500) // 1000`` minutes.
* ``verify_receipt``: a C2SP tlog-proof receipt, offline. Timebank receipts carry the entry's
  leaf bytes in the ``extra`` line (base64), so the receipt alone shows *what* was logged:
  the leaf must decode to an entry with that index, and its hash must be included in the
  signed (and, per policy, cosigned) checkpoint.

Every report lists every problem found (``seq N``, ``checkpoint N``, ``manifest``, …) with a
reason; the CLI exits non-zero if there is any.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import itertools
import json
import multiprocessing
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast

from audit.trail import ZERO, AuditEvent, Seal, check_chain, check_seals
from ledger.entry import Entry, EntryRequest
from ledger.errors import LedgerError
from ledger.merkle import EMPTY_ROOT, leaf_hash, verify_consistency, verify_inclusion
from ledger.note import (
    Checkpoint,
    Note,
    TlogProof,
    Verifier,
    check_cosignature,
    open_checkpoint,
)
from ledger.postings import ISSUANCE, POOL, check_postings, parse_account
from ledger.replay import Fields, Problem, Replay, ReplayState, decode, decode_leaf

BUNDLE_FORMAT = "timebank-audit-bundle/v1"
STATE_FORMAT = "timebank-audit-state/v1"
KEY_FILE, CHECKPOINT_FILE, LEAVES_FILE, MANIFEST_FILE = (
    "key.txt",
    "checkpoint.txt",
    "leaves.txt",
    "manifest.json",
)
BUNDLE_FILES = (KEY_FILE, CHECKPOINT_FILE, LEAVES_FILE)
EVENTS_FILE = "audit-events.jsonl"  # only in bundles exported with an auditor's token
PAGE = 1000  # leaves asked for per request (the server may answer with fewer)
EVENTS_PAGE = 1000  # audit events asked for per request (the most the server gives)
PARALLEL_LEAVES = 30_000  # runs replaying more leaves than this decode them in parallel
CHUNK_LINES = 4000
FUTURE_SLACK = 600  # seconds a cosignature's timestamp may be ahead of our clock


T = TypeVar("T")
R = TypeVar("R")


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
class AuditReport:
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    entries: int = 0  # leaves replayed in this run
    what: str = ""  # what was checked, for the summary line
    trail: str = ""  # what of the audit trail was checked, for the summary line
    checkpoint: Checkpoint | None = None
    cosigners: list[str] = field(default_factory=list)
    evidence: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, where: str, message: str) -> None:
        self.problems.append(Problem(where, message))

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
    try:
        return Verifier.from_text(text)
    except LedgerError as exc:
        raise AuditError(f"bad key {value[:60]!r}: {exc}") from exc


# ---------------------------------------------------------------- checkpoints


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


# ---------------------------------------------------------------- HTTP


class LogClient:
    """The log's public read API (``/v1/log/*``) over urllib."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise AuditError(f"--url must be an http(s) URL, not {url!r}")
        self.url = url.rstrip("/")
        self.timeout = timeout

    def get(self, path: str, **params: int | str) -> bytes:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        return fetch(f"{self.url}{path}{query}", self.timeout)

    def key(self) -> str:
        return self.get("/v1/log/key").decode("utf-8", "replace").strip()

    def checkpoint(self) -> str:
        return self.get("/v1/log/checkpoint").decode("utf-8", "replace")

    def consistency(self, first: int, second: int) -> list[bytes]:
        body = _json(self.get("/v1/log/proof/consistency", first=first, second=second))
        return _hashes(body)

    def inclusion(self, index: int, size: int) -> list[bytes]:
        body = _json(self.get("/v1/log/proof/inclusion", index=index, tree_size=size))
        return _hashes(body)

    def leaves(self, start: int, end: int) -> list[bytes]:
        """Leaves from ``start`` (at least one, at most ``end - start``), checked for shape."""
        body = _json(self.get("/v1/log/leaves", start=start, end=end))
        items = body.get("leaves") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items or len(items) > end - start:
            raise AuditError(f"log answered leaves [{start}, {end}) with a malformed page")
        out = []
        for offset, item in enumerate(items):
            if not isinstance(item, dict) or item.get("index") != start + offset:
                raise AuditError(f"log answered leaves from {start} out of order")
            try:
                out.append(base64.b64decode(str(item.get("data")), validate=True))
            except (binascii.Error, ValueError) as exc:
                raise AuditError(f"leaf {start + offset} is not base64") from exc
        return out

    def audit_events(self, token: str) -> Iterator[dict[str, Any]]:
        """Every audit event ``token`` (an auditor's) may read, in seq order, as served:
        ``/v1/audit/events`` paged with ``after_seq``."""
        headers = {"Authorization": f"Bearer {token}"}
        after = -1
        while True:
            query = urllib.parse.urlencode({"after_seq": after, "limit": EVENTS_PAGE})
            page = _json(fetch(f"{self.url}/v1/audit/events?{query}", self.timeout, headers))
            if not isinstance(page, list) or len(page) > EVENTS_PAGE:
                raise AuditError("the log answered /v1/audit/events with a malformed page")
            for item in page:
                seq = item.get("seq") if isinstance(item, dict) else None
                if not isinstance(seq, int) or isinstance(seq, bool) or seq <= after:
                    raise AuditError(
                        f"the log answered audit events after seq {after} out of order"
                    )
                after = seq
                yield item
            if len(page) < EVENTS_PAGE:
                return

    def iter_leaves(self, start: int, end: int, workers: int = 4) -> Iterator[tuple[int, bytes]]:
        """Leaves ``[start, end)`` in order, fetching a few pages ahead in parallel."""
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="audit-fetch") as pool:
            pending: list[tuple[int, int, Future[list[bytes]]]] = []
            next_start = start

            def fill() -> None:
                nonlocal next_start
                while next_start < end and len(pending) < workers * 2:
                    stop = min(end, next_start + PAGE)
                    pending.append((next_start, stop, pool.submit(self.leaves, next_start, stop)))
                    next_start = stop

            fill()
            while pending:
                page_start, page_end, future = pending.pop(0)
                got = future.result()
                index = page_start
                for leaf in got:
                    yield index, leaf
                    index += 1
                while index < page_end:  # a short page: fetch the rest of it here
                    for leaf in self.leaves(index, page_end):
                        yield index, leaf
                        index += 1
                fill()


def fetch(url: str, timeout: float, headers: Mapping[str, str] | None = None) -> bytes:
    request = urllib.request.Request(  # noqa: S310 - http(s) only (LogClient)
        url, headers={"User-Agent": "timebank-auditor", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return bytes(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            detail = exc.read(2000).decode("utf-8", "replace")
        with contextlib.suppress(ValueError, AttributeError):
            detail = str(json.loads(detail).get("detail", detail))
        raise AuditError(f"GET {url}: HTTP {exc.code}: {detail.strip()[:300]}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise AuditError(f"GET {url}: {exc}") from exc


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError as exc:
        raise AuditError("the log answered with something that is not JSON") from exc


def _hashes(body: Any) -> list[bytes]:
    hashes = body.get("hashes") if isinstance(body, dict) else None
    if not isinstance(hashes, list):
        raise AuditError("the log answered a proof request without hashes")
    try:
        return [base64.b64decode(str(h), validate=True) for h in hashes]
    except (binascii.Error, ValueError) as exc:
        raise AuditError("a proof hash is not base64") from exc


# ---------------------------------------------------------------- deposits and seals

RECORD_DIGEST = re.compile(r"[0-9a-f]{64}")
_DEPOSIT, _SEAL = b'"kind":"deposit"', b'"kind":"seal"'

Extra = tuple[tuple[str, ...], tuple[int, bytes] | None]
"""What the auditor checks in a leaf beyond the replay: problems of a deposit, and what a seal
claims (audit count, head). Plain tuples, so worker processes send them cheaply."""


def _text_field(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    return value if isinstance(value, str) and value.strip() else None


def _positive(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


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
    problems = []
    record = body.get("record")
    if not isinstance(record, str) or not RECORD_DIGEST.fullmatch(record):
        problems.append(
            "deposit does not refer to a record: body.record is not a SHA-256 digest "
            "(64 lower-case hex digits)"
        )
    confirmed_by = _text_field(body, "confirmed_by")
    verified_by = _text_field(body, "verified_by")
    if confirmed_by is None:
        problems.append("deposit does not say who confirmed the service (body.confirmed_by)")
    if _text_field(body, "confirmed_as") is None:
        problems.append("deposit does not say how the service was confirmed (body.confirmed_as)")
    if verified_by is None:
        problems.append("deposit does not say who verified the record (body.verified_by)")
    if confirmed_by is not None and confirmed_by == verified_by:
        problems.append(
            f"deposit was confirmed and verified by the same user {confirmed_by} "
            "(two different people must)"
        )
    signers = [s.get("by") for s in signatures if s.get("role") == "verifier"]
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
    for sig in signatures:
        if sig.get("role") == "volunteer" and not (sig.get("key") and sig.get("sig")):
            problems.append("deposit's volunteer signature lacks its device key or signature")
    minutes, weight = _positive(body.get("minutes")), _positive(body.get("weight"))
    if minutes is None or weight is None:
        problems.append("deposit's body.minutes and body.weight are not positive integers")
    roles = [(parse_account(account)[1], moved) for account, moved in postings]
    issued = -sum(moved for role, moved in roles if role == ISSUANCE)
    if minutes is not None and weight is not None:
        expected = (minutes * weight + 500) // 1000
        if issued != expected:
            problems.append(
                f"deposit issues {issued} minutes, but {minutes} minutes at weight "
                f"{weight}‰ are {expected}"
            )
    to_pool = body.get("to_pool")
    pooled = sum(moved for role, moved in roles if role == POOL)
    if isinstance(to_pool, int) and not isinstance(to_pool, bool) and pooled != to_pool:
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
    """The auditor's own per-leaf checks (deposits, seals); None for every other leaf.

    Runs in worker processes next to ``ledger.replay.decode``, on the plain JSON (the replay
    decides whether the leaf is a valid, canonical entry, and reports it if not): a leaf whose
    fields do not even have the right shapes is left to the replay alone."""
    if _DEPOSIT not in leaf and _SEAL not in leaf:
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
        return ((claim,), None) if isinstance(claim, str) else ((), claim)
    if (
        kind != "deposit"
        or not isinstance(signatures, list)
        or not isinstance(raw.get("postings"), list)
    ):
        return None
    postings = []
    for posting in raw["postings"]:
        account = posting.get("account") if isinstance(posting, dict) else None
        minutes = posting.get("minutes") if isinstance(posting, dict) else None
        if not isinstance(account, str) or ":" not in account or type(minutes) is not int:
            return None
        postings.append((account, minutes))
    if not all(isinstance(sig, dict) for sig in signatures):
        return None
    found = _deposit_problems(body, signatures, postings)
    return (tuple(found), None) if found else None


@dataclass
class LeafRules:
    """Collects what :func:`leaf_rules` found, in leaf order, into the report."""

    report: AuditReport
    seals: list[Seal] = field(default_factory=list)

    def apply(self, position: int, extra: Extra | None) -> None:
        if extra is None:
            return
        problems, claim = extra
        for message in problems:
            self.report.add(f"seq {position}", message)
        if claim is not None:
            self.seals.append(Seal(position, claim[0], claim[1]))


# ---------------------------------------------------------------- the audit trail


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


# ---------------------------------------------------------------- bundles


def _write_atomic(path: Path, data: bytes) -> None:
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
        _write_atomic(out / name, data)
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
        _write_atomic(out / EVENTS_FILE, data)
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
    _write_atomic(out / MANIFEST_FILE, (json.dumps(manifest, indent=2) + "\n").encode())
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
    _compare_keys(key_bytes.decode("utf-8", "replace"), policy, report, f"file {KEY_FILE}")
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
        workers = _default_workers(leaves_path.stat().st_size // 500)
    with open(leaves_path, "rb") as f:
        for position, (is_base64, leaf, extra) in enumerate(_decoded_lines(f, digest, workers)):
            if not is_base64:
                report.add(f"seq {position}", f"line {position + 1} of {LEAVES_FILE} is not base64")
            replay.apply(position, leaf)
            rules.apply(position, extra)
            hashes += leaf[0]
    _check_hash(report, manifest, LEAVES_FILE, digest.hexdigest())
    replay.finish(lambda seqs: _bundle_originals(leaves_path, seqs, bytes(hashes)))
    report.entries = replay.size
    if checkpoint is not None:
        _check_root(report, checkpoint, replay)
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


def decode_lines(lines: list[bytes]) -> list[tuple[bool, Fields, Extra | None]]:
    """Lines of ``leaves.txt`` → (was it base64, the decoded leaf, ``leaf_rules``); runs in
    worker processes."""
    out = []
    for line in lines:
        try:
            leaf, is_base64 = binascii.a2b_base64(line.rstrip(b"\n"), strict_mode=True), True
        except binascii.Error:
            leaf, is_base64 = line, False
        # a plain tuple: it pickles several times faster than the named one
        out.append((is_base64, cast(Fields, tuple(decode(leaf))), leaf_rules(leaf)))
    return out


def decode_leaves(leaves: list[bytes]) -> list[tuple[Fields, Extra | None]]:
    """Leaf bytes → (decoded leaf as a plain tuple, ``leaf_rules``); runs in worker processes."""
    return [(cast(Fields, tuple(decode(leaf))), leaf_rules(leaf)) for leaf in leaves]


def _in_chunks(items: Iterable[T]) -> Iterator[list[T]]:
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == CHUNK_LINES:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _map_chunks(
    chunks: Iterable[list[T]], work: Callable[[list[T]], list[R]], workers: int
) -> Iterator[R]:
    """``work`` over each chunk, results in order; with ``workers`` > 1 in that many
    processes, a few chunks ahead, so memory stays bounded however large the log."""
    if workers <= 1:
        for chunk in chunks:
            yield from work(chunk)
        return
    context = multiprocessing.get_context("spawn")  # no fork: callers may hold threads
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending: deque[Future[list[R]]] = deque()
        for chunk in chunks:
            pending.append(pool.submit(work, chunk))
            if len(pending) >= workers * 3:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()


def _decoded_lines(
    lines: Iterable[bytes], digest: Any, workers: int
) -> Iterator[tuple[bool, Fields, Extra | None]]:
    """``decode_lines`` over a file, in order, hashing the lines for the manifest."""

    def hashed() -> Iterator[bytes]:
        for line in lines:
            digest.update(line)
            yield line

    return _map_chunks(_in_chunks(hashed()), decode_lines, workers)


def _default_workers(leaves: int) -> int:
    return min(os.cpu_count() or 1, 4) if leaves > PARALLEL_LEAVES else 1


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


def _compare_keys(served: str, policy: Policy, report: AuditReport, where: str) -> bool:
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


def _check_root(report: AuditReport, checkpoint: Checkpoint, replay: Replay) -> None:
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


# ---------------------------------------------------------------- online


@dataclass
class AuditState:
    """What an online auditor remembers between runs (one file per log)."""

    key: str
    checkpoint: str  # the last verified signed checkpoint, as served (with cosignatures)
    replay: ReplayState
    seal: Seal | None = None  # the last seal entry in the replayed leaves

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
        except (KeyError, TypeError, ValueError, LedgerError) as exc:
            raise AuditError(f"the state file {path} is damaged: {exc}") from exc
        return state

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(path, (json.dumps(self.to_json(), indent=1) + "\n").encode())


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
    if not _compare_keys(client.key(), policy, report, "key"):
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
    if resume and state is not None and state.seal is not None:
        rules.seals.append(state.seal)
    hashes = bytearray()
    if workers is None:
        workers = _default_workers(checkpoint.size - start)
    try:
        pages = _in_chunks(leaf for _, leaf in client.iter_leaves(start, checkpoint.size))
        for index, (leaf, extra) in enumerate(_map_chunks(pages, decode_leaves, workers), start):
            replay.apply(index, leaf)
            rules.apply(index, extra)
            hashes += leaf[0]
        replay.finish(
            lambda seqs: _online_originals(client, seqs, start, bytes(hashes), checkpoint)
        )
    except AuditError as exc:
        report.add("log", str(exc))
        return report
    report.entries = replay.size - start
    _check_root(report, checkpoint, replay)
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
        AuditState(policy.key.to_text(), served_text, replay.state(), last_seal).save(state_path)
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


# ---------------------------------------------------------------- receipts


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
