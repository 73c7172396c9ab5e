"""A peer's checkpoint must be consistent with every checkpoint of its log this bank has seen.

What this bank has seen of a peer's log is one checkpoint per peer, the one its witness holds
for that log (``federation_witnessed``): the peer's own submissions move it on (the witness,
``audit.witness``), and so does every checkpoint a delivered transfer is proven against
(``SeenCheckpoints.check``, used by ``federation.transfers.Receiving``). Either way the new
checkpoint is checked against the held one with an RFC 6962 consistency proof, fetched from
the peer's public API (``GET /v1/log/proof/consistency``): a larger tree must extend the held
one (and then replaces it, cosigned by our witness key, by compare-and-set), a smaller one
must be a prefix of it, the same size must have the same root. A checkpoint signed by the
peer's log key that fails this is a split view: kept as evidence and in the audit trail, like
the witness's own (``federation.witnessing``), and the transfer is refused, nothing posted.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from urllib.parse import urlencode

from audit.witness import Cosigned, SizeConflict, Witness
from federation.peers import Peer
from federation.witnessing import SAME_SIZE
from ledger.errors import ProofVerificationError
from ledger.merkle import verify_consistency
from ledger.note import Checkpoint, Note, check_cosignature, cosign

CONSISTENCY_PATH = "/v1/log/proof/consistency"
TIMEOUT = 10.0
ATTEMPTS = 5  # compare-and-set rounds when other deliveries move the held checkpoint meanwhile

# (peer, first, second) -> the proof's hashes; OSError or ValueError when it cannot be had
Fetch = Callable[[Peer, int, int], list[bytes]]


class SplitView(Exception):
    """The peer's signed checkpoint contradicts one we hold for its log."""


class Unchecked(Exception):
    """The consistency could not be checked now (the peer did not answer with a proof)."""


def fetch_consistency(peer: Peer, first: int, second: int) -> list[bytes]:
    """The RFC 6962 consistency proof ``first`` → ``second`` from the peer's public API."""
    url = f"{peer.url}{CONSISTENCY_PATH}?{urlencode({'first': first, 'second': second})}"
    request = urllib.request.Request(url, headers={"User-Agent": "timebank-federation"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310 - check_url
        data = json.loads(response.read(1 << 20))
    hashes = data.get("hashes") if isinstance(data, dict) else None
    if not isinstance(hashes, list) or not all(isinstance(h, str) for h in hashes):
        raise ValueError("the answer has no list of hashes")
    try:
        return [base64.b64decode(h, validate=True) for h in hashes]
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"a hash is not base64: {exc}") from exc


class SeenCheckpoints:
    """Checks a peer's checkpoint against what our witness holds for its log, and moves that
    on when the new one extends it."""

    def __init__(
        self,
        witness: Witness,
        fetch: Fetch = fetch_consistency,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.witness, self.fetch, self.clock = witness, fetch, clock

    def check(self, peer: Peer, note: Note, checkpoint: Checkpoint, evidence: str) -> None:
        """Return if ``checkpoint`` (signed by the peer's log key: ``note``) is consistent with
        the one held for the peer's log; SplitView (recorded) if not; Unchecked if no proof
        could be had. ``evidence`` is kept with a split view (the delivery's proof)."""
        origin = peer.log_origin
        for _ in range(ATTEMPTS):
            held = self.witness.state.load(origin)
            if held is None or held.checkpoint.size == 0:
                if self._hold(peer, note, held):
                    return
                continue
            m, n = held.checkpoint.size, checkpoint.size
            if n == m:
                if checkpoint.root != held.checkpoint.root:
                    self._split(origin, SAME_SIZE, evidence, held, [])
                return
            first, second = (n, m) if n < m else (m, n)
            try:
                proof = self.fetch(peer, first, second)
            except (OSError, ValueError) as exc:
                raise Unchecked(
                    f"{peer.name} gave no consistency proof {first} → {second}: {exc}"
                ) from exc
            roots = (
                (checkpoint.root, held.checkpoint.root)
                if n < m
                else (held.checkpoint.root, checkpoint.root)
            )
            try:
                verify_consistency(first, second, roots[0], roots[1], proof)
            except ProofVerificationError as exc:
                reason = f"bad consistency proof: {exc}"
                self._split(origin, reason, evidence, held, proof)
            if n < m or self._hold(peer, note, held):
                return
        raise Unchecked(f"what we hold for {origin} kept changing; try again")

    def _hold(self, peer: Peer, note: Note, held: Cosigned | None) -> bool:
        """Keep ``note`` as the latest seen, cosigned by our witness key, if nothing moved the
        held one since we read it; False when something did."""
        signer = self.witness.signer
        log_key = peer.log_key
        text = note.text.encode()
        own = tuple(
            s
            for s in note.signatures
            if s.name == log_key.name
            and s.key_id == log_key.key_id
            and log_key.check(text, s.signature)
        )
        last = check_cosignature(Note.parse(held.note), signer.verifier) if held else None
        timestamp = max(int(self.clock()), last or 0)
        kept = Note(note.text, own).render() + cosign(note.text, signer, timestamp).line()
        try:
            self.witness.state.save(peer.log_origin, kept, held)
        except SizeConflict:
            return False
        return True

    def _split(
        self, origin: str, reason: str, evidence: str, held: Cosigned, proof: list[bytes]
    ) -> None:
        record = (
            f"delivered transfer proof:\n{evidence}\n"
            f"held checkpoint:\n{held.note}\n"
            f"consistency proof from the peer: {[base64.b64encode(h).decode() for h in proof]}\n"
        )
        self.witness.state.keep_evidence(origin, reason, record.encode())
        raise SplitView(reason)
