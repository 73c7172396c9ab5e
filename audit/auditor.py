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
import json
import multiprocessing
import os
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

from ledger.entry import Entry
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
from ledger.postings import check_postings
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
PAGE = 1000  # leaves asked for per request (the server may answer with fewer)
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


def fetch(url: str, timeout: float) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "timebank-auditor"})  # noqa: S310 - http(s) only (LogClient)
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


# ---------------------------------------------------------------- bundles


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def export_bundle(url: str, out: Path, timeout: float = 30.0) -> tuple[int, Path]:
    """Write the log at ``url`` into ``out`` (which must be empty or new); (size, manifest)."""
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
    manifest = {
        "format": BUNDLE_FORMAT,
        "source": url,
        "exported_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tree_size": size,
        "files": files,
    }
    _write_atomic(out / MANIFEST_FILE, (json.dumps(manifest, indent=2) + "\n").encode())
    return size, out / MANIFEST_FILE


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


def verify_bundle(directory: Path, policy: Policy, workers: int | None = None) -> AuditReport:
    """Verify an export bundle offline; see the module docstring for the checks.

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
    hashes = bytearray()
    digest = hashlib.sha256()
    if workers is None:  # about 500 bytes a line
        workers = _default_workers(leaves_path.stat().st_size // 500)
    with open(leaves_path, "rb") as f:
        for position, (is_base64, leaf) in enumerate(_decoded_lines(f, digest, workers)):
            if not is_base64:
                report.add(f"seq {position}", f"line {position + 1} of {LEAVES_FILE} is not base64")
            replay.apply(position, leaf)
            hashes += leaf[0]
    _check_hash(report, manifest, LEAVES_FILE, digest.hexdigest())
    replay.finish(lambda seqs: _bundle_originals(leaves_path, seqs, bytes(hashes)))
    report.entries = replay.size
    if checkpoint is not None:
        _check_root(report, checkpoint, replay)
    return report


def decode_lines(lines: list[bytes]) -> list[tuple[bool, Fields]]:
    """Lines of ``leaves.txt`` → (was it base64, the decoded leaf); runs in worker processes."""
    out = []
    for line in lines:
        try:
            leaf, is_base64 = binascii.a2b_base64(line.rstrip(b"\n"), strict_mode=True), True
        except binascii.Error:
            leaf, is_base64 = line, False
        # a plain tuple: it pickles several times faster than the named one
        out.append((is_base64, cast(Fields, tuple(decode(leaf)))))
    return out


def decode_leaves(leaves: list[bytes]) -> list[Fields]:
    """Leaf bytes → decoded leaves (plain tuples); runs in worker processes."""
    return [cast(Fields, tuple(decode(leaf))) for leaf in leaves]


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
) -> Iterator[tuple[bool, Fields]]:
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

    def to_json(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "key": self.key,
            "checkpoint": self.checkpoint,
            "replay": self.replay.to_json(),
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
) -> AuditReport:
    """Verify the log at ``url``; see the module docstring (``workers``: see verify_bundle)."""
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
    hashes = bytearray()
    if workers is None:
        workers = _default_workers(checkpoint.size - start)
    try:
        pages = _in_chunks(leaf for _, leaf in client.iter_leaves(start, checkpoint.size))
        for index, leaf in enumerate(_map_chunks(pages, decode_leaves, workers), start):
            replay.apply(index, leaf)
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
    if resume:
        new = checkpoint.size - start
        report.what = (
            f"{new} new {'entry' if new == 1 else 'entries'} replayed (resumed from size {start})"
        )
    if report.ok and state_path is not None:
        AuditState(policy.key.to_text(), served_text, replay.state()).save(state_path)
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
