"""The monthly settlement between two peer banks, cosigned by both (docs/federation.md#settlement).

H (``Settling.propose``, ``timebank peers settle``) computes the month's document: its own
cut-off and what its members sent from its own log; R's cut-off from R's public log (read whole
and checked against R's log key, ``audit.public_log``) and what R's members sent as H's log
credited it. H signs it and sends it to R, signed (RFC 9421). R (``Settling.countersign``)
recomputes the same from its own log and H's public log, refuses naming the first figure that
differs, else signs, appends its ``settlement`` entry (both signatures) and answers with its
signature and the entry's tlog-proof; H checks both and appends its own. Ids are derived
(``settlement:<the other bank's origin>:<month>``): a retry finds the entries already written.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime

from audit.public_log import PublicLog, fetch_log, read_log
from audit.report import AuditError
from care.errors import CareError, WrongState
from federation.peers import Peer, Peers
from federation.transfers import PeerUnavailable, Post, log_time, open_proof
from ledger.entry import JSON, Entry
from ledger.errors import IdConflict, LedgerError, ProofRequestError
from ledger.kinds import Settlement, TransferIn, TransferOut, TransferSettled, TransferVoid
from ledger.kinds.settlement import (
    BankSignature,
    CutOff,
    SettlementDocument,
    month_end,
    settlement_id,
)
from ledger.log import Log
from ledger.merkle import root_of
from ledger.note import Checkpoint, Note, Signer

PATH = "/v1/federation/settlements"  # where a peer takes a proposal (signed, RFC 9421)

FetchLog = Callable[[Peer], PublicLog]
Witnessed = Callable[[str], str | None]  # a peer log's origin → the checkpoint we cosigned


def no_witnessing(_: str) -> str | None:
    return None


class SettlementRefused(CareError):
    """A settlement this bank will not propose or sign; ``slug`` says why."""

    slug = "settlement-refused"
    zh = "结算被拒绝"

    def __init__(self, slug: str, message: str, zh: str, field: str) -> None:
        super().__init__(message, field=field, zh=zh)
        self.slug = slug


class SettlementConflict(WrongState):
    """Another settlement of the same month with this peer is already signed (409)."""

    slug = "settlement-conflict"
    zh = "该月已与对方银行结算，内容不同"


@dataclass(frozen=True)
class Settled:
    """A month settled: the document, our entry's index and the peer's."""

    document: SettlementDocument
    seq: int
    peer_index: int | None  # None when our entry was already there (read back)


def fetch_peer_log(peer: Peer) -> PublicLog:
    """The peer's whole log from its public API, checked against its registered log key."""
    return fetch_log(peer.url, peer.log_key)


class Settling:
    def __init__(
        self,
        log: Log,
        peers: Peers,
        signer: Signer,
        post: Post,
        clock: Callable[[], datetime],
        fetch: FetchLog = fetch_peer_log,
        witnessed: Witnessed = no_witnessing,
    ) -> None:
        self.log, self.peers, self.signer, self.post = log, peers, signer, post
        self.clock, self.fetch, self.witnessed = clock, fetch, witnessed

    # ---------------------------------------------------------------- H: propose

    def propose(self, peer_name: str, month: str) -> Settled:
        peer = next((p for p in self.peers.list() if p.name == peer_name), None)
        if peer is None:
            raise SettlementRefused(
                "unknown-peer", f"no peer bank {peer_name}", "没有该对方银行", "peer"
            )
        self._month_over(month)
        entry_id = settlement_id(peer.log_origin, month)
        found = self.log.entries_by_id([entry_id]).get(entry_id)
        if found is not None:
            return Settled(Settlement.from_entry(found.request).document, found.seq, None)
        document = self.document(peer, month)
        ours = BankSignature.make(self.log.origin, document, self.signer)
        body = json.dumps({"document": document.to_json(), "signature": ours.to_json()})
        try:
            status, answer = self.post(peer, PATH, body.encode())
        except OSError as exc:
            raise PeerUnavailable(f"{peer.name} did not answer: {exc}", field="peer") from exc
        if status != 200:
            slug = str(answer.get("type", "")).rsplit(":", 1)[-1] or f"http-{status}"
            detail = str(answer.get("detail_en") or answer.get("detail") or "")
            field = str(answer.get("field") or "peer")
            if status == 409:
                raise SettlementConflict(
                    f"{peer.name} answered {status} {slug}: {detail}", field=field
                )
            if status >= 500 or status == 401:
                raise PeerUnavailable(
                    f"{peer.name} answered {status} {slug}: {detail}", field="peer"
                )
            raise SettlementRefused(
                slug, f"{peer.name} refused: {detail}", "对方银行拒绝了结算", field
            )
        return self._finish(peer, document, ours, answer)

    def _finish(
        self,
        peer: Peer,
        document: SettlementDocument,
        ours: BankSignature,
        answer: dict[str, object],
    ) -> Settled:
        try:
            theirs = BankSignature.from_json(answer.get("signature"), "signature")
            entry = open_proof(str(answer.get("proof", "")), peer, "proof")
            held = Settlement.from_entry(entry.request)
        except (LedgerError, CareError) as exc:
            raise PeerUnavailable(
                f"{peer.name}'s answer does not hold: {exc}", field="peer"
            ) from exc
        if not theirs.holds(document, peer.request_key) or theirs.origin != peer.log_origin:
            raise PeerUnavailable(f"{peer.name}'s signature does not verify", field="peer")
        if held.document != document or ours not in held.signatures:
            raise PeerUnavailable(f"{peer.name}'s entry is not this settlement", field="peer")
        settlement = Settlement(peer.log_origin, document, _ordered(document, ours, theirs))
        with suppress(IdConflict):  # a concurrent run appended it first: read it back below
            self.log.append(settlement.to_request())
        found = self.log.entries_by_id([settlement.id])[settlement.id]
        return Settled(document, found.seq, entry.seq)

    # ---------------------------------------------------------------- R: countersign

    def countersign(self, peer: Peer, document_json: JSON, signature_json: JSON) -> dict[str, JSON]:
        """Our signature and the tlog-proof of our settlement entry, or a refusal naming the
        figure that differs from our recomputation. The same proposal again gets the same."""
        try:
            document = SettlementDocument.from_json(document_json)
            theirs = BankSignature.from_json(signature_json, "signature")
        except LedgerError as exc:
            raise SettlementRefused(
                "bad-settlement",
                str(exc),
                "结算文件格式不正确",
                getattr(exc, "field", None) or "document",
            ) from exc
        origins = {b.origin for b in document.banks}
        if origins != {self.log.origin, peer.log_origin}:
            raise SettlementRefused(
                "not-for-us",
                f"the settlement is not between {peer.log_origin} and {self.log.origin}",
                "结算不是本行与该对方银行之间的",
                "document.banks",
            )
        if theirs.origin != peer.log_origin or not theirs.holds(document, peer.request_key):
            raise SettlementRefused(
                "bad-signature",
                f"the signature is not {peer.name}'s over this document",
                "签名不是对方银行对该文件的签名",
                "signature",
            )
        self._month_over(document.month)
        entry_id = settlement_id(peer.log_origin, document.month)
        found = self.log.entries_by_id([entry_id]).get(entry_id)
        if found is None:
            expected = self.document(peer, document.month)
            _compare(document, expected)
            ours = BankSignature.make(self.log.origin, document, self.signer)
            settlement = Settlement(peer.log_origin, document, _ordered(document, ours, theirs))
            with suppress(IdConflict):  # a concurrent proposal won: compared below
                self.log.append(settlement.to_request())
            found = self.log.entries_by_id([entry_id])[entry_id]
        held = Settlement.from_entry(found.request)
        if held.document != document:
            raise SettlementConflict(
                f"{document.month} is settled with {peer.name} already, with another document "
                f"(our entry {found.seq})",
                field="document",
            )
        ours = next(s for s in held.signatures if s.origin == self.log.origin)
        try:
            proof = self.log.receipt(found.seq)
        except ProofRequestError as exc:  # the served checkpoint awaits its witnesses
            raise PeerUnavailable(f"signed, but not yet in our signed tree: {exc}") from exc
        return {"signature": ours.to_json(), "proof": proof}

    # ---------------------------------------------------------------- both: the figures

    def _month_over(self, month: str) -> None:
        try:
            end = month_end(month)
        except LedgerError as exc:
            raise SettlementRefused("bad-month", str(exc), "月份格式应为 YYYY-MM", "month") from exc
        if log_time(self.clock()) < end:
            raise SettlementRefused(
                "month-not-over",
                f"{month} is not over yet (it ends at {end})",
                "该月尚未结束",
                "month",
            )

    def document(self, peer: Peer, month: str) -> SettlementDocument:
        """The month's document as this bank computes it: its own log, and the peer's cut-off
        from the peer's public log."""
        own = self._own_log()
        size, root = own.cutoff(month)
        sent = self._sent(own, peer, size)
        try:
            theirs = self.fetch(peer)
        except AuditError as exc:
            raise PeerUnavailable(f"{peer.name}'s log cannot be read: {exc}", field="peer") from exc
        self._as_witnessed(peer, theirs)
        peer_size, peer_root = theirs.cutoff(month)
        received = 0
        for entry in own.entries:
            if entry.request.kind == TransferIn.kind:
                credit = TransferIn.from_entry(entry.request)
                if credit.from_origin == peer.log_origin and credit.from_index < peer_size:
                    received += credit.minutes
        return SettlementDocument.of(
            month,
            CutOff(self.log.origin, size, root, sent),
            CutOff(peer.log_origin, peer_size, peer_root, received),
        )

    def _as_witnessed(self, peer: Peer, theirs: PublicLog) -> None:
        """The peer's log as served now must extend the tree we cosigned for it as its
        witness (docs/federation.md#mutual-witnessing): else it shows us another history."""
        note = self.witnessed(peer.log_origin)
        if note is None:
            return
        cosigned = Checkpoint.parse_body(Note.parse(note).text)
        if cosigned.size > theirs.checkpoint.size or cosigned.root != root_of(
            theirs.hashes[: cosigned.size]
        ):
            raise SettlementRefused(
                "split-view",
                f"{peer.name}'s log as served now is not the one we cosigned at size "
                f"{cosigned.size}: not the history it showed its witness",
                "对方银行现在提供的日志与本行见证过的不一致",
                "peer",
            )

    def _own_log(self) -> PublicLog:
        """Our log up to its latest signed tree (not only the one its witnesses cosigned)."""
        note = self.log.checkpoint_at(self.log.size()) or self.log.checkpoint()
        checkpoint = Checkpoint.parse_body(Note.parse(note).text)
        leaves: list[bytes] = []
        while len(leaves) < checkpoint.size:
            leaves.extend(leaf.data for leaf in self.log.leaves(len(leaves), checkpoint.size))
        return read_log(leaves, checkpoint)

    def _sent(self, own: PublicLog, peer: Peer, size: int) -> int:
        """Minutes of our transfer_outs to ``peer`` before the cut-off that it credited (our
        transfer_settled); refused if one of them is still open."""
        closed: dict[str, Entry] = {}
        for entry in own.entries:
            if entry.request.kind in (TransferSettled.kind, TransferVoid.kind):
                closed[str(entry.request.body.get("transfer"))] = entry
        sent = 0
        for entry in own.entries[:size]:
            if entry.request.kind != TransferOut.kind:
                continue
            out = TransferOut.from_entry(entry.request)
            if out.to_origin != peer.log_origin:
                continue
            closing = closed.get(out.transfer)
            if closing is None:
                raise SettlementRefused(
                    "transfers-open",
                    f"transfer {out.transfer} (index {entry.seq}) is still held: finish it "
                    "first (timebank peers transfers retry)",
                    "本月仍有未完成的跨行转移，请先完成",
                    "month",
                )
            if closing.request.kind == TransferSettled.kind:
                sent += out.minutes
        return sent


def _ordered(
    document: SettlementDocument, one: BankSignature, other: BankSignature
) -> tuple[BankSignature, BankSignature]:
    first, second = sorted((one, other), key=lambda s: s.origin)
    if (first.origin, second.origin) != tuple(b.origin for b in document.banks):
        raise SettlementRefused(
            "bad-signature", "signatures of other banks", "签名银行不符", "signature"
        )
    return first, second


def _compare(proposed: SettlementDocument, expected: SettlementDocument) -> None:
    """Refuse naming the first figure of ``proposed`` that is not ours."""
    for i, (theirs, ours) in enumerate(zip(proposed.banks, expected.banks, strict=True)):
        for name, a, b in (
            ("cutoff_size", theirs.size, ours.size),
            ("cutoff_root", theirs.root, ours.root),
            ("sent", theirs.sent, ours.sent),
        ):
            if a != b:
                raise SettlementRefused(
                    "settlement-differs",
                    f"{ours.origin}'s {name}: the proposal says {a}, our recomputation {b}",
                    f"结算数字与本行计算不符（{ours.origin} 的 {name}：对方 {a}，本行 {b}）",
                    f"document.banks[{i}].{name}",
                )
    if proposed.net_minutes != expected.net_minutes:
        raise SettlementRefused(
            "settlement-differs",
            f"net_minutes: the proposal says {proposed.net_minutes}, our recomputation "
            f"{expected.net_minutes}",
            f"净额与本行计算不符（对方 {proposed.net_minutes}，本行 {expected.net_minutes}）",
            "document.net_minutes",
        )
