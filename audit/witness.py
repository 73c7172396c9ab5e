"""A transparency-log witness: C2SP tlog-witness ``add-checkpoint``, cosigning with
tlog-cosignature/v1.

A witness is configured with the verifier keys of the logs it watches (the key name is the
log's origin). For each origin it remembers the latest checkpoint it cosigned, and it cosigns
a new one only if the log proves it consistent with that one, so once a witness has seen a
tree, the log can never get it to cosign a rollback or a different history (a split view).

The protocol (https://c2sp.org/tlog-witness): the request body is ``old <size>\\n``, up to 63
base64 consistency-proof lines, an empty line, then the signed checkpoint. Answers:

* 400 malformed request, or old size larger than the checkpoint's size
* 403 no signature by a trusted key for the origin
* 404 unknown origin
* 409 old size is not the size the witness last cosigned (body: that size, as
  ``text/x.tlog.size``), or the same size with a different root
* 422 the consistency proof does not verify
* 200 the cosignature line(s)

State is one file per origin in a directory, replaced atomically (write to a temporary file,
fsync, rename, fsync the directory) before any cosignature leaves the witness; checking the
old size and persisting the new checkpoint happen under one lock per origin, so concurrent
requests can never roll the witness back. A lock file keeps a second witness process off the
same directory. Requests that carry a valid log signature but fail the proof are kept in
``evidence/``: they may prove the log misbehaved.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import logging
import math
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

from ledger.errors import KeyFormatError, LedgerError, ProofVerificationError
from ledger.merkle import EMPTY_ROOT, verify_consistency
from ledger.note import (
    COSIGNATURE_V1,
    ED25519,
    Checkpoint,
    Note,
    NoteSignature,
    Signer,
    Verifier,
    check_cosignature,
    cosign,
)

log = logging.getLogger(__name__)

MAX_PROOF_LINES = 63
MAX_REQUEST_BYTES = 1 << 20
SIZE_CONTENT_TYPE = "text/x.tlog.size"


class WitnessError(Exception):
    """The witness refuses a request (``web.statuses`` gives the HTTP status the protocol
    requires for each)."""

    slug = "witness-bad-request"

    def __init__(self, message: str) -> None:
        super().__init__(message)


class MalformedRequest(WitnessError):
    slug = "witness-bad-request"


class UntrustedSignature(WitnessError):
    slug = "witness-untrusted-signature"


class UnknownLog(WitnessError):
    slug = "witness-unknown-log"


class SizeConflict(WitnessError):
    """409: the body is the witness's current size for the origin."""

    slug = "witness-size-conflict"

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size


class BadProof(WitnessError):
    slug = "witness-bad-proof"


class RateLimited(WitnessError):
    """429: a log sent more checkpoints than ``RATE_PER_SECOND`` (burst ``BURST``)."""

    slug = "witness-rate-limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# A log appends in batches and submits its newest checkpoint after each: a few a second at
# most. The budget is per log (origin), spent only by requests its key signed, so a flood of
# one log's old checkpoints cannot keep the witness busy, nor starve another log.
RATE_PER_SECOND = 10.0
BURST = 64


class TokenBucket:
    """``rate`` requests a second on average, ``burst`` at once; not thread-safe alone."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.at = float(burst), now

    def take(self, now: float) -> float:
        """0 if a request may pass now, else the seconds until one may."""
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class WitnessStateError(LedgerError):
    """The witness's state directory is unusable (locked by another process, or corrupt)."""


# ---------------------------------------------------------------- keys


def generate_witness_key(name: str, out: Path) -> Signer:
    """Create a witness key file (mode 0600, never overwriting) and return the signer."""
    signer = Signer.generate(name, COSIGNATURE_V1)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (signer.to_text() + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    _fsync_dir(out.parent)
    return signer


def load_witness_key(path: Path) -> Signer:
    """A ``PRIVATE+KEY+<name>+<id>+<base64>`` file, readable only by its owner."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFormatError(f"cannot read witness key {path}: {exc}") from exc
    if mode & 0o077:
        raise KeyFormatError(
            f"witness key {path} is readable by others (mode {mode:o}); run chmod 600 on it"
        )
    return Signer.from_text(text, key_type=COSIGNATURE_V1)


def parse_log_keys(keys: Iterable[str]) -> dict[str, list[Verifier]]:
    """Log verifier keys by origin (a log's key name is its origin)."""
    logs: dict[str, list[Verifier]] = {}
    for text in keys:
        verifier = Verifier.from_text(text)
        if verifier.key_type != ED25519:
            raise KeyFormatError(f"log key {verifier.name} is not an Ed25519 (0x01) note key")
        known = logs.setdefault(verifier.name, [])
        if verifier not in known:
            known.append(verifier)
    return logs


# ---------------------------------------------------------------- requests


@dataclass(frozen=True)
class AddCheckpoint:
    old_size: int
    proof: tuple[bytes, ...]
    note: Note
    checkpoint: Checkpoint


def _decimal(text: str, what: str) -> int:
    if not text.isascii() or not text.isdigit() or (text != "0" and text.startswith("0")):
        raise MalformedRequest(f"{what} {text[:30]!r} is not a decimal number")
    return int(text)


def parse_add_checkpoint(body: bytes) -> AddCheckpoint:
    """Parse an ``add-checkpoint`` body; MalformedRequest (400) says what is wrong."""
    if len(body) > MAX_REQUEST_BYTES:
        raise MalformedRequest("request body is too large")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedRequest("request body is not UTF-8") from exc
    head, sep, note_text = text.partition("\n\n")
    if not sep:
        raise MalformedRequest("request has no empty line before the checkpoint")
    lines = head.split("\n")
    if not lines[0].startswith("old "):
        raise MalformedRequest("request must start with an 'old <size>' line")
    old_size = _decimal(lines[0][4:], "old size")
    proof_lines = lines[1:]
    if len(proof_lines) > MAX_PROOF_LINES:
        raise MalformedRequest(f"more than {MAX_PROOF_LINES} consistency proof lines")
    proof = []
    for line in proof_lines:
        try:
            digest = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MalformedRequest("a consistency proof line is not base64") from exc
        if len(digest) != 32:
            raise MalformedRequest("a consistency proof line is not a 32-byte hash")
        proof.append(digest)
    try:
        note = Note.parse(note_text)
        checkpoint = Checkpoint.parse_body(note.text)
    except LedgerError as exc:
        raise MalformedRequest(f"checkpoint is malformed: {exc}") from exc
    return AddCheckpoint(old_size, tuple(proof), note, checkpoint)


# ---------------------------------------------------------------- state


@dataclass(frozen=True)
class Cosigned:
    """The latest checkpoint a witness cosigned for one origin, as a note with its cosignature."""

    note: str
    checkpoint: Checkpoint


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class WitnessState:
    """One file per origin under ``directory``; atomic replacement; one process at a time."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        (directory / "evidence").mkdir(exist_ok=True, mode=0o700)
        self._lock_fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(self._lock_fd)
            raise WitnessStateError(
                f"another witness process is using {directory}; stop it first"
            ) from exc

    def close(self) -> None:
        if self._lock_fd >= 0:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = -1

    def _path(self, origin: str) -> Path:
        return self.directory / (quote(origin, safe="") + ".checkpoint")

    def load(self, origin: str) -> Cosigned | None:
        path = self._path(origin)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            checkpoint = Checkpoint.parse_body(Note.parse(text).text)
        except LedgerError as exc:  # never silently start over: that would allow a rollback
            raise WitnessStateError(f"witness state {path} is corrupt: {exc}") from exc
        if checkpoint.origin != origin:
            raise WitnessStateError(f"witness state {path} holds origin {checkpoint.origin!r}")
        return Cosigned(text, checkpoint)

    def save(self, origin: str, note: str, previous: Cosigned | None = None) -> None:
        """``previous`` is what the witness checked against; this directory's lock already
        keeps other processes out, so it needs no compare-and-set."""
        path = self._path(origin)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, note.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        _fsync_dir(self.directory)

    def keep_evidence(self, origin: str, reason: str, body: bytes) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        name = f"{quote(origin, safe='')}-{stamp}-{time.monotonic_ns() % 10**9}.txt"
        try:
            (self.directory / "evidence" / name).write_bytes(
                f"# {reason}\n".encode() + body.replace(b"\r", b"")
            )
        except OSError as exc:  # evidence is best effort; the refusal still stands
            log.warning("could not keep witness evidence: %s", exc)


class WitnessStore(Protocol):
    """Where a witness keeps what it cosigned: ``WitnessState`` (files) or a database table
    (``federation.witnessed``). ``save`` must refuse (``SizeConflict``) if the origin's state
    is no longer ``previous``, unless one process alone can write it."""

    def load(self, origin: str) -> Cosigned | None: ...

    def save(self, origin: str, note: str, previous: Cosigned | None = None) -> None: ...

    def keep_evidence(self, origin: str, reason: str, body: bytes) -> None: ...


Logs = Mapping[str, list[Verifier]]


# ---------------------------------------------------------------- the witness


class Witness:
    """``logs`` is the fixed set of logs watched, or a function giving the current set (a
    bank witnessing for its peers, who come and go); each origin's state is in ``state``."""

    def __init__(
        self,
        signer: Signer,
        logs: Logs | Callable[[], Logs],
        state: WitnessStore,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if signer.key_type != COSIGNATURE_V1:
            raise KeyFormatError("a witness signs with a tlog-cosignature/v1 (0x04) key")
        if not callable(logs):
            if not logs:
                raise KeyFormatError("a witness needs at least one log key (--log)")
            for origin in logs:
                if len(quote(origin, safe="")) > 200:
                    raise KeyFormatError(f"log origin {origin[:40]!r}… is too long")
        self.signer = signer
        self._logs = logs
        self.state = state
        self.clock = clock
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._buckets: dict[str, TokenBucket] = {}
        for origin in self.logs:  # fail at start, not on the first request, if state is corrupt
            state.load(origin)

    @property
    def logs(self) -> Logs:
        return self._logs() if callable(self._logs) else self._logs

    def _lock(self, origin: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(origin, threading.Lock())

    def _bucket(self, origin: str) -> TokenBucket:
        with self._guard:
            if origin not in self._buckets:
                self._buckets[origin] = TokenBucket(RATE_PER_SECOND, BURST, self.clock())
            return self._buckets[origin]

    @property
    def verifier_key(self) -> str:
        return self.signer.verifier.to_text()

    def latest(self, origin: str) -> str | None:
        """The latest checkpoint cosigned for ``origin``, with the cosignature, or None."""
        if origin not in self.logs:
            raise UnknownLog(f"this witness does not watch a log with origin {origin!r}")
        with self._lock(origin):
            cosigned = self.state.load(origin)
        return cosigned.note if cosigned else None

    def add_checkpoint(self, body: bytes) -> str:
        """Handle one ``add-checkpoint`` request; the cosignature line(s), or a WitnessError."""
        request = parse_add_checkpoint(body)
        checkpoint, note = request.checkpoint, request.note
        trusted = self.logs.get(checkpoint.origin)
        if trusted is None:
            raise UnknownLog(f"this witness does not watch a log with origin {checkpoint.origin!r}")
        signatures = _trusted_signatures(note, trusted)
        if not signatures:
            raise UntrustedSignature(
                f"the checkpoint carries no valid signature by a trusted key for "
                f"{checkpoint.origin!r}"
            )
        with self._lock(checkpoint.origin):
            wait = self._bucket(checkpoint.origin).take(self.clock())
        if wait:
            raise RateLimited(
                f"too many checkpoints from {checkpoint.origin!r}; retry in {wait:.1f} s",
                max(1, math.ceil(wait)),
            )
        if request.old_size > checkpoint.size:
            raise MalformedRequest(
                f"old size {request.old_size} is larger than the checkpoint size {checkpoint.size}"
            )
        with self._lock(checkpoint.origin):
            stored = self.state.load(checkpoint.origin)
            stored_size = stored.checkpoint.size if stored else 0
            if request.old_size != stored_size:
                raise SizeConflict(
                    f"old size {request.old_size} is not the size this witness last cosigned "
                    f"({stored_size})",
                    stored_size,
                )
            self._check_consistency(request, stored, body)
            timestamp = max(int(self.clock()), _timestamp_of(stored, self.signer))
            line = cosign(note.text, self.signer, timestamp).line()
            kept = Note(note.text, tuple(signatures)).render() + line
            self.state.save(checkpoint.origin, kept, stored)
        return line

    def _check_consistency(
        self, request: AddCheckpoint, stored: Cosigned | None, body: bytes
    ) -> None:
        checkpoint = request.checkpoint
        if stored is not None and checkpoint.size == stored.checkpoint.size:
            if request.proof:
                raise BadProof("the proof must be empty when the sizes are equal")
            if checkpoint.root != stored.checkpoint.root:
                self.state.keep_evidence(checkpoint.origin, "same size, different root", body)
                raise SizeConflict(
                    f"a different root was cosigned for size {checkpoint.size}",
                    stored.checkpoint.size,
                )
            return
        if request.old_size == 0:
            if request.proof:
                raise BadProof("the proof must be empty when the old size is 0")
            if checkpoint.size == 0 and checkpoint.root != EMPTY_ROOT:
                raise BadProof("an empty tree's root is SHA-256 of nothing")
            return
        assert stored is not None  # old_size == stored size > 0
        try:
            verify_consistency(
                stored.checkpoint.size,
                checkpoint.size,
                stored.checkpoint.root,
                checkpoint.root,
                request.proof,
            )
        except ProofVerificationError as exc:
            self.state.keep_evidence(checkpoint.origin, f"bad consistency proof: {exc}", body)
            raise BadProof(f"consistency proof does not verify: {exc}") from exc


def _trusted_signatures(note: Note, trusted: list[Verifier]) -> list[NoteSignature]:
    """The note's signatures that verify under a trusted key; others are ignored."""
    text = note.text.encode()
    return [
        sig
        for sig in note.signatures
        for v in trusted
        if sig.name == v.name and sig.key_id == v.key_id and v.check(text, sig.signature)
    ]


def _timestamp_of(stored: Cosigned | None, signer: Signer) -> int:
    """Our last cosignature's time, so that our timestamps never go backwards."""
    if stored is None:
        return 0
    return check_cosignature(Note.parse(stored.note), signer.verifier) or 0
