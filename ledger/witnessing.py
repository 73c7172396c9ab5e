"""The log's side of witnessing: submit checkpoints to witnesses, keep their cosignatures.

Configured witnesses (``TIMEBANK_WITNESSES``: entries ``url=<submission prefix> key=<vkey>``
separated by ``;`` or newlines) each get a background thread. After checkpoints are signed
(the log wakes the threads after each append, and they also poll), a thread submits the
newest checkpoint with C2SP tlog-witness ``POST <url>/add-checkpoint``, proving it consistent
with the size that witness last acknowledged (a 409 tells us that size; we retry from it). A
valid tlog-cosignature/v1 line is stored in ``log_cosignatures``.

The append path never waits for a witness: threads use timeouts and back off exponentially
while a witness is down or refuses, and a witness's failure is only logged.

Serving: :func:`served_checkpoint` returns the latest checkpoint with the valid cosignatures of
the witnesses configured now appended. With a quorum ``N`` (``TIMEBANK_WITNESS_QUORUM``) it
serves the newest checkpoint that has at least ``N`` valid cosignatures by witnesses configured
now, so that clients with a witness policy can verify what they are given; until one exists it
serves the newest checkpoint as it is. A witness removed from the configuration (perhaps
because its key leaked) neither counts towards the quorum nor is served, though its stored
cosignatures stay in ``log_cosignatures`` (append-only).

Standard library and ``ledger`` only (HTTP with ``urllib``).
"""

from __future__ import annotations

import base64
import logging
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ledger.errors import LedgerError
from ledger.note import COSIGNATURE_V1, Note, Verifier, check_cosignature

if TYPE_CHECKING:
    from ledger.storage import LedgerStore, Snapshot

log = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 64 * 1024
_URL = re.compile(r"^https?://[^\s/?#]+(/[^\s?#]*)?\Z")


class WitnessConfigError(ValueError):
    """A witness entry in the configuration is unusable."""


@dataclass(frozen=True)
class WitnessEndpoint:
    """A witness: its submission prefix and its tlog-cosignature/v1 verifier key."""

    url: str
    verifier: Verifier

    @property
    def key(self) -> str:
        return self.verifier.to_text()

    @property
    def add_checkpoint_url(self) -> str:
        return self.url.rstrip("/") + "/add-checkpoint"


def parse_witnesses(text: str) -> tuple[WitnessEndpoint, ...]:
    """``url=<URL> key=<vkey>`` entries separated by ``;`` or newlines (blank ones ignored)."""
    endpoints: list[WitnessEndpoint] = []
    for number, entry in enumerate((e.strip() for e in re.split(r"[;\n]", text)), start=1):
        if not entry:
            continue
        fields: dict[str, str] = {}
        for token in entry.split():
            name, sep, value = token.partition("=")
            if not sep or name not in ("url", "key") or name in fields:
                raise WitnessConfigError(
                    f"witness {number}: expected 'url=<URL> key=<vkey>', got {token[:40]!r}"
                )
            fields[name] = value
        if set(fields) != {"url", "key"}:
            raise WitnessConfigError(f"witness {number}: needs both url= and key=")
        if not _URL.match(fields["url"]):
            raise WitnessConfigError(f"witness {number}: url must be http(s)://host[/path]")
        try:
            verifier = Verifier.from_text(fields["key"])
        except LedgerError as exc:
            raise WitnessConfigError(f"witness {number}: {exc}") from exc
        if verifier.key_type != COSIGNATURE_V1:
            raise WitnessConfigError(
                f"witness {number}: key must be a tlog-cosignature/v1 (0x04) key"
            )
        if any(e.verifier == verifier for e in endpoints):
            raise WitnessConfigError(f"witness {number}: key {verifier.name} is listed twice")
        endpoints.append(WitnessEndpoint(fields["url"], verifier))
    return tuple(endpoints)


# ---------------------------------------------------------------- serving


def cosigned(
    note: str, cosignatures: Iterable[tuple[str, str]], witnesses: Collection[str]
) -> tuple[str, int]:
    """``note`` with the cosignature lines of ``witnesses`` (verifier keys as text: those
    configured now) that verify on it appended, and how many."""
    lines: list[str] = []
    for key, line in cosignatures:
        if key not in witnesses:  # removed from the configuration, or never in it
            continue
        try:
            witness = Verifier.from_text(key)
            if witness.key_type != COSIGNATURE_V1:
                continue
            if check_cosignature(Note.parse(note + line), witness) is not None:
                lines.append(line)
        except LedgerError:
            continue
    return note + "".join(lines), len(lines)


def served_checkpoint(db: Snapshot, quorum: int, witnesses: Collection[str]) -> str | None:
    """The checkpoint to serve, with the cosignatures of ``witnesses`` (the verifier keys, as
    text, of the witnesses configured now); None for an empty log. See the module doc."""
    latest = db.latest_checkpoint()
    if latest is None:
        return None
    size, note = latest
    if quorum > 0 and witnesses:
        for candidate in db.cosigned_sizes(quorum, sorted(witnesses)):
            text = note if candidate == size else db.checkpoint_note(candidate)
            if text is None:
                continue
            served, count = cosigned(text, db.cosignatures(candidate), witnesses)
            if count >= quorum:
                return served
    if not witnesses:
        return note
    return cosigned(note, db.cosignatures(size), witnesses)[0]


# ---------------------------------------------------------------- submitting


class WitnessRefused(LedgerError):
    pass


ProofSource = Callable[[int, int], Sequence[bytes]]


class Witnessing:
    """One background thread per witness; ``wake()`` after appends; ``stop()`` on close."""

    def __init__(
        self,
        store: LedgerStore,
        witnesses: Sequence[WitnessEndpoint],
        proof: ProofSource,
        *,
        timeout: float = 5.0,
        interval: float = 5.0,
        max_backoff: float = 300.0,
    ) -> None:
        self.workers = [_Worker(store, w, proof, timeout, interval, max_backoff) for w in witnesses]

    @property
    def cosignatures_stored(self) -> int:
        """How many cosignatures this process has stored: a served checkpoint is stale when
        this moved since it was read."""
        return sum(worker.cosignatures_stored for worker in self.workers)

    def start(self) -> None:
        for worker in self.workers:
            if not worker.is_alive():
                worker.wake.set()  # submit the current checkpoint right away
                worker.start()

    def wake(self) -> None:
        for worker in self.workers:
            worker.wake.set()

    def stop(self) -> None:
        for worker in self.workers:
            worker.stopping.set()
            worker.wake.set()
        for worker in self.workers:
            if worker.is_alive():
                worker.join(worker.timeout + 1.0)


class _Worker(threading.Thread):
    def __init__(
        self,
        store: LedgerStore,
        witness: WitnessEndpoint,
        proof: ProofSource,
        timeout: float,
        interval: float,
        max_backoff: float,
    ) -> None:
        super().__init__(name=f"timebank-witness-{witness.verifier.name}", daemon=True)
        self.store = store
        self.witness = witness
        self.proof = proof
        self.timeout = timeout
        self.interval = interval
        self.max_backoff = max_backoff
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.acked: int | None = None  # the size the witness holds, as far as we know
        self.stored: int | None = None  # the size we hold this witness's cosignature for
        self.cosignatures_stored = 0
        self.failures = 0

    def run(self) -> None:
        delay = 0.0
        while not self.stopping.is_set():
            if delay:  # backing off: appends do not wake us early
                self.stopping.wait(delay)
            else:
                self.wake.wait(self.interval)
            self.wake.clear()
            if self.stopping.is_set():
                return
            try:
                self.sync()
            except Exception as exc:  # a witness never takes the log down; log and back off
                self.failures += 1
                delay = min(self.max_backoff, 2.0 ** min(self.failures - 1, 16))
                log.warning(
                    "witness %s: %s (retrying in %.0f s)",
                    self.witness.verifier.name,
                    exc if isinstance(exc, LedgerError | OSError) else type(exc).__name__,
                    delay,
                )
            else:
                self.failures = 0
                delay = 0.0

    def sync(self) -> None:
        """Bring the witness up to the newest checkpoint, storing its cosignature."""
        with self.store.read() as db:
            latest = db.latest_checkpoint()
            if self.acked is None:
                self.acked = db.last_cosigned_size(self.witness.key)
                self.stored = self.acked or None
        if latest is None:
            return
        size, note = latest
        if self.stored == size:
            return
        for _ in range(3):
            old = self.acked or 0
            if old > size:
                log.warning(
                    "witness %s holds size %d, beyond this log's %d (was the database restored?)",
                    self.witness.verifier.name,
                    old,
                    size,
                )
                return
            status, body = self._submit(old, size, note)
            if status == 200:
                line = self._cosignature(note, body)
                with self.store.write() as db:
                    db.add_cosignature(size, self.witness.key, line)
                self.acked = self.stored = size
                self.cosignatures_stored += 1
                return
            if status != 409:
                raise WitnessRefused(f"refused size {size} from old {old}: HTTP {status} {body!r}")
            held = _size(body)
            if held == old:
                raise WitnessRefused(
                    f"holds a different tree of size {old} than this log (split view?)"
                )
            self.acked = held
            if held > size:
                return
        raise WitnessRefused("the witness's size kept changing under us")

    def _submit(self, old: int, size: int, note: str) -> tuple[int, str]:
        proof = self.proof(old, size) if 0 < old < size else []
        lines = "".join(base64.b64encode(h).decode() + "\n" for h in proof)
        request = urllib.request.Request(  # noqa: S310 - http(s) only (parse_witnesses)
            self.witness.add_checkpoint_url,
            data=f"old {old}\n{lines}\n{note}".encode(),
            method="POST",
            headers={"Content-Type": "text/plain; charset=utf-8", "User-Agent": "timebank-log"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return int(response.status), _text(response.read(MAX_RESPONSE_BYTES))
        except urllib.error.HTTPError as exc:
            with exc:
                return int(exc.code), _text(exc.read(MAX_RESPONSE_BYTES))

    def _cosignature(self, note: str, body: str) -> str:
        for line in body.splitlines(keepends=True):
            if not line.endswith("\n"):
                line += "\n"
            try:
                if check_cosignature(Note.parse(note + line), self.witness.verifier) is not None:
                    return line
            except LedgerError:
                continue
        raise WitnessRefused("answered 200 without a valid cosignature by its key")


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _size(body: str) -> int:
    text = body.strip()
    if not text.isdigit():
        raise WitnessRefused(f"answered 409 without a size: {body[:40]!r}")
    return int(text)
