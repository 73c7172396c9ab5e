"""Transfers between two district banks' logs (通存通兑), two-phase and idempotent.

The sending bank H appends ``transfer_out`` and sends the receiving bank R its tlog-proof with
the receiving member's id in R (a signed request, ``federation.signing``); R checks the proof
against H's log key, appends ``transfer_in`` under an id derived from H's entry and answers with
its own tlog-proof; H checks that and appends ``transfer_settled``, or ``transfer_void`` when R
refuses. Every entry id is derived, so any step retried gives the same result and never a second
credit. H's log names R's member only by a commitment, SHA-256 of ``<transfer>:<member id>``:
R checks it, H's public log learns nothing. docs/federation.md#transfers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from accounts.errors import Forbidden, NotFound
from accounts.model import MemberStatus, Principal
from accounts.service import AccountsService
from care.errors import CareError, InsufficientBalance
from federation.consistency import SeenCheckpoints, SplitView, Unchecked
from federation.failpoints import failpoint
from federation.identity import Identities, Sender
from federation.in_flight import InFlight
from federation.peers import Peer, Peers
from federation.transfer_storage import UNSENT, OpenTransfer, TransferStore
from ledger import AppendResult
from ledger.entry import Entry, EntryRequest
from ledger.errors import EntryError, IdConflict, LedgerError, ProofRequestError
from ledger.errors import InsufficientBalance as LedgerInsufficient
from ledger.kinds import TransferIn, TransferOut, TransferRefusal, TransferSettled, TransferVoid
from ledger.kinds.interbank import REFUSALS
from ledger.log import Log
from ledger.merkle import leaf_hash, verify_inclusion
from ledger.note import Checkpoint, Note, TlogProof, open_checkpoint

HOLD = timedelta(hours=24)  # how long R takes a transfer_out; R refuses it `expired` after
UNSENT_AFTER = timedelta(minutes=10)  # a remembered transfer still without transfer_out: unsent
PATH = "/v1/federation/transfers"  # where a peer takes a transfer (signed, RFC 9421)
# R's refusals after which H voids: final answers about this transfer, never "try later"
FINAL_REFUSALS = REFUSALS  # a bad proof is not final: R records nothing for it


REFUSAL_TEXT = {  # slug: (English, Chinese, the field at fault)
    "not-for-us": ("the transfer is for another bank's log", "转移不是给本行的", "proof"),
    "wrong-member": (
        "the member id is not the one the transfer names",
        "会员编号与转移不符",
        "to_member_id",
    ),
    "expired": ("the transfer expired before it arrived", "转移已过期", "proof"),
    "unknown-member": (
        "no active member with this id here",
        "本行没有该会员或会员未激活",
        "to_member_id",
    ),
    "not-related": (
        "the receiving member is neither the sender nor a confirmed relative of the sender",
        "收款会员既不是转出人本人，也不是其经确认的亲属",
        "to_member_id",
    ),
}


class TransferRefused(CareError):
    """A transfer this bank will not make or take; ``slug`` says why (FINAL_REFUSALS)."""

    slug = "transfer-refused"
    zh = "跨行转移被拒绝"

    def __init__(self, slug: str, message: str, zh: str, field: str) -> None:
        super().__init__(message, field=field, zh=zh)
        self.slug = slug


class PeerUnavailable(CareError):
    """The peer did not answer, or answered with something we cannot trust: the transfer
    stays pending (its minutes held) and the same request may be retried."""

    slug = "peer-unavailable"
    zh = "对方时间银行暂时无法完成转移，请稍后重试"


def transfer_name(member_account: str, key: str) -> str:
    """The transfer's 32 hex digits, derived from the member and the client's key."""
    return hashlib.sha256(f"transfer\n{member_account}\n{key}".encode()).hexdigest()[:32]


def commitment(transfer: str, member_id: str) -> str:
    """What H's log says of R's member: a hash only R (which knows the id) can check."""
    return hashlib.sha256(f"{transfer}:{member_id}".encode()).hexdigest()


def utc_clock() -> datetime:
    return datetime.now(UTC)


def log_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def open_proof(text: str, peer: Peer, field: str) -> Entry:
    """The entry a peer's tlog-proof proves is in the peer's log (its key, its origin)."""
    return open_proven(text, peer, field)[0]


def open_proven(text: str, peer: Peer, field: str) -> tuple[Entry, Checkpoint, Note]:
    """``open_proof``, with the checkpoint it is proven against and its signed note."""
    try:
        proof = TlogProof.parse(text)
        checkpoint, note = open_checkpoint(proof.checkpoint, peer.log_key, peer.log_origin)
        if proof.extra is None:
            raise LedgerError("the proof carries no entry")
        verify_inclusion(
            leaf_hash(proof.extra), proof.index, checkpoint.size, proof.hashes, checkpoint.root
        )
        entry = Entry.from_leaf(proof.extra)
    except LedgerError as exc:
        raise TransferRefused(
            "bad-transfer",
            f"the proof does not hold against {peer.name}'s log: {exc}",
            "转移凭证无法通过对方日志的验证",
            field,
        ) from exc
    if entry.seq != proof.index:
        raise TransferRefused(
            "bad-transfer", "the proof's entry is not at its index", "凭证与条目不符", field
        )
    return entry, checkpoint, note


@dataclass(frozen=True)
class Outcome:
    """Where a transfer stands in the sending bank's log."""

    transfer: str
    status: str  # settled, void or pending
    out_seq: int
    minutes: int
    peer: str
    closed_seq: int | None = None  # the transfer_settled or transfer_void
    peer_index: int | None = None  # the peer's transfer_in
    reason: str | None = None  # why a void or a pending transfer is so
    peer_failed: bool = False  # pending because the peer is down or refuses us as a whole


Post = Callable[[Peer, str, bytes], tuple[int, dict[str, object]]]


class Receiving:
    """R's side: take a peer's ``transfer_out`` and credit the member it names, once."""

    def __init__(
        self,
        log: Log,
        accounts: AccountsService,
        origin: str,
        clock: Callable[[], datetime],
        seen: SeenCheckpoints,
    ) -> None:
        self.log, self.accounts, self.origin, self.clock = log, accounts, origin, clock
        self.seen = seen
        self.identities = Identities(accounts)

    def receive(self, peer: Peer, proof: str, to_member_id: str, sender: Sender) -> str:
        """Our tlog-proof of the ``transfer_in`` for the proven ``transfer_out``, or
        ``TransferRefused``. Each of the peer's entries gets one answer, kept in our log (a
        ``transfer_in`` or a ``transfer_refused`` under the same derived id): a repeat gets it
        again, whatever changed since (the member registered, the hold expired). The proof's
        checkpoint must be consistent with what we saw of the peer's log before (else
        ``split-view``, nothing appended: not final); ``sender`` says who sends (identity
        commitments, ``federation.identity``)."""
        entry, checkpoint, note = open_proven(proof, peer, "proof")
        try:
            self.seen.check(peer, note, checkpoint, proof)
        except SplitView as exc:
            raise TransferRefused(
                "split-view",
                f"the proof's checkpoint contradicts one {peer.name} showed us before: {exc}",
                "凭证所依据的检查点与对方银行此前给出的不一致（分叉视图）",
                "proof",
            ) from exc
        except Unchecked as exc:
            raise PeerUnavailable(str(exc), field="proof") from exc
        try:
            out = TransferOut.from_entry(entry.request)
        except LedgerError as exc:
            raise TransferRefused(
                "bad-transfer", f"the entry is not a transfer_out: {exc}", "条目不是转出", "proof"
            ) from exc
        leaf = leaf_hash(entry.leaf()).hex()
        answer_id = f"transfer-in:{peer.name}:{entry.seq}"
        if answer_id not in self.log.entries_by_id([answer_id]):
            reason, member_account = self._check(out, to_member_id, peer, sender)
            if reason is not None:
                answer: EntryRequest = TransferRefusal(
                    out.transfer, peer.name, peer.log_origin, entry.seq, leaf, reason
                ).to_request()
            else:
                answer = TransferIn(
                    out.transfer,
                    member_account,
                    peer.name,
                    out.minutes,
                    peer.log_origin,
                    entry.seq,
                    leaf,
                ).to_request()
            with suppress(IdConflict):  # a concurrent delivery answered first: it stands
                self.log.append(answer)
                failpoint("after-transfer-in" if reason is None else "after-transfer-refused")
        return self._answer(answer_id)

    def _check(
        self, out: TransferOut, to_member_id: str, peer: Peer, sender: Sender
    ) -> tuple[str | None, str]:
        """(why we refuse, or None; the member's account)."""
        if out.to_origin != self.origin:
            return "not-for-us", ""
        if commitment(out.transfer, to_member_id) != out.to:
            return "wrong-member", ""
        if out.expires < log_time(self.clock()):
            return "expired", ""
        try:
            member = self.accounts.member(to_member_id)
        except NotFound:
            return "unknown-member", ""
        if member.status is not MemberStatus.ACTIVE:
            return "unknown-member", ""
        if not self.identities.related(sender, peer.log_origin, out.transfer, member.id):
            return "not-related", ""
        return None, member.ledger_account

    def _answer(self, entry_id: str) -> str:
        found = self.log.entries_by_id([entry_id])[entry_id]
        if found.request.kind == TransferRefusal.kind:
            reason = TransferRefusal.from_entry(found.request).reason
            message, zh, field = REFUSAL_TEXT[reason]
            raise TransferRefused(reason, message, zh, field)
        try:
            return self.log.receipt(found.seq)
        except ProofRequestError as exc:  # the served checkpoint awaits its witnesses' quorum
            raise PeerUnavailable(
                f"credited, but our signed tree does not cover it yet: {exc}", field="proof"
            ) from exc


class Delivering:
    """H's side after the hold: deliver a transfer to its peer and settle or void it. The
    retry worker of ``timebank serve`` (``federation.transfer_worker``) and the operator's
    ``timebank peers transfers retry`` use this part alone. One delivery of a transfer at a time
    in a process (``in_flight``); another process delivering it at the same moment appends the
    same entries under the same derived ids, so nothing is written twice."""

    def __init__(
        self,
        log: Log,
        peers: Peers,
        post: Post,
        store: TransferStore,
        accounts: AccountsService,
        clock: Callable[[], datetime] = utc_clock,
    ) -> None:
        self.log, self.peers, self.post, self.store, self.clock = log, peers, post, store, clock
        self.identities = Identities(accounts)  # who sends, for the peer's check
        self.in_flight = InFlight()

    def retry(self) -> list[Outcome]:
        """Deliver again every transfer still open (its peer was down, or its answer could
        not be checked); those found closed are marked so and not reported."""
        outcomes = []
        for row in self.store.open():
            outcome = self.revisit(row, wait=True)
            if outcome is not None:
                outcomes.append(outcome)
        return outcomes

    def revisit(self, row: OpenTransfer, wait: bool) -> Outcome | None:
        """Deliver an open transfer again; None when there was nothing to deliver (it is
        closed in the log, it was never held, or ``wait`` is False and this process is
        delivering it already)."""
        with self.in_flight.hold(row.transfer, wait) as alone:
            if not alone:
                return None
            out_id = f"transfer-out:{row.transfer}"
            found = self.log.entries_by_id([out_id]).get(out_id)
            if found is None:  # not held (refused, or its request died before the hold)
                if self.clock() - row.created_at > UNSENT_AFTER:
                    self.store.close(row.transfer, UNSENT)
                return None
            out = TransferOut.from_entry(found.request)
            done = self._closed(out, found.seq)
            if done is not None:
                self.store.close(row.transfer, done.status)
                return None
            return self._closing(self._deliver(out, found, row.to_member_id))

    def finish(self, transfer: str, to_member_id: str) -> Outcome:
        """Deliver a held transfer and close it; a closed one is only read back."""
        with self.in_flight.hold(transfer, wait=True):
            out_id = f"transfer-out:{transfer}"
            found = self.log.entries_by_id([out_id]).get(out_id)
            if found is None:
                raise TransferRefused(
                    "unknown-transfer", f"no transfer {transfer}", "没有该转移", "transfer"
                )
            out = TransferOut.from_entry(found.request)
            done = self._closed(out, found.seq)
            return self._closing(done or self._deliver(out, found, to_member_id))

    def _closing(self, outcome: Outcome) -> Outcome:
        if outcome.status != "pending":
            self.store.close(outcome.transfer, outcome.status)
        return outcome

    def _deliver(self, out: TransferOut, found: Entry, to_member_id: str) -> Outcome:
        peer = next((p for p in self.peers.list() if p.name == out.peer), None)
        if peer is None:
            return self._pending(out, found.seq, f"peer {out.peer} is no longer registered")
        if commitment(out.transfer, to_member_id) != out.to:
            raise TransferRefused(
                "wrong-member",
                "not the member this transfer names",
                "会员编号与转移不符",
                "to_member_id",
            )
        try:
            receipt = self.log.receipt(found.seq)
        except ProofRequestError:  # the served checkpoint awaits its witnesses' quorum
            return self._pending(out, found.seq, "our signed tree does not cover it yet")
        sender = self.identities.sender(self.log.origin, out.transfer, out.member)
        body = json.dumps(
            {"proof": receipt, "to_member_id": to_member_id, "sender": sender.to_json()}
        )
        try:
            status, answer = self.post(peer, PATH, body.encode())
        except OSError as exc:
            return self._pending(out, found.seq, f"{peer.name} did not answer: {exc}", True)
        if status == 200 and isinstance(answer.get("proof"), str):
            return self._settle(out, found, peer, str(answer["proof"]))
        slug = str(answer.get("type", "")).rsplit(":", 1)[-1]
        if status == 422 and slug in FINAL_REFUSALS:
            failpoint("after-peer-refusal")
            void = TransferVoid.of(out, found.seq, "expired" if slug == "expired" else "refused")
            result = self._append(void.to_request())
            return Outcome(
                out.transfer, "void", found.seq, out.minutes, out.peer, result.seq, None, slug
            )
        # the peer is down or refuses us as a whole (5xx, 429, 401): it is tried less often
        unwell = status >= 500 or status in (401, 408, 429)
        return self._pending(out, found.seq, f"{peer.name} answered {status}", unwell)

    def _settle(self, out: TransferOut, found: Entry, peer: Peer, proof: str) -> Outcome:
        try:
            entry = open_proof(proof, peer, "proof")
            credit = TransferIn.from_entry(entry.request)
        except (TransferRefused, LedgerError) as exc:
            return self._pending(out, found.seq, f"{peer.name}'s proof does not hold: {exc}")
        quoted = (credit.transfer, credit.from_origin, credit.from_index, credit.from_leaf_hash)
        ours = (out.transfer, self.log.origin, found.seq, leaf_hash(found.leaf()).hex())
        if quoted != ours or credit.minutes != out.minutes:
            return self._pending(out, found.seq, f"{peer.name}'s transfer_in quotes another entry")
        failpoint("after-peer-proof")
        settled = TransferSettled(
            out.transfer, found.seq, peer.log_origin, entry.seq, leaf_hash(entry.leaf()).hex()
        )
        result = self._append(settled.to_request())
        return Outcome(
            out.transfer, "settled", found.seq, out.minutes, out.peer, result.seq, entry.seq
        )

    def _closed(self, out: TransferOut, out_seq: int) -> Outcome | None:
        ids = [f"transfer-settled:{out.transfer}", f"transfer-void:{out.transfer}"]
        found = self.log.entries_by_id(ids)
        if ids[0] in found:
            settled = TransferSettled.from_entry(found[ids[0]].request)
            return Outcome(
                out.transfer,
                "settled",
                out_seq,
                out.minutes,
                out.peer,
                found[ids[0]].seq,
                settled.to_index,
            )
        if ids[1] in found:
            void = TransferVoid.from_entry(found[ids[1]].request)
            return Outcome(
                out.transfer,
                "void",
                out_seq,
                out.minutes,
                out.peer,
                found[ids[1]].seq,
                None,
                void.reason,
            )
        return None

    def _pending(
        self, out: TransferOut, out_seq: int, reason: str, peer_failed: bool = False
    ) -> Outcome:
        if out.expires < log_time(self.clock()):
            # R may have credited before the expiry and its answer been lost: only R can say,
            # so the hold stays until it answers (a credit, or its refusal `expired`)
            reason += f"; held past its expiry {out.expires} until {out.peer} answers"
        return Outcome(
            out.transfer, "pending", out_seq, out.minutes, out.peer, None, None, reason, peer_failed
        )

    def _append(self, request: EntryRequest) -> AppendResult:
        try:
            return self.log.append(request)
        except LedgerInsufficient as exc:
            raise InsufficientBalance(
                f"not enough minutes: {exc.balance} available, {-exc.change} needed",
                field="minutes",
            ) from exc
        except EntryError as exc:
            raise CareError(exc.template, field=exc.field, **exc.values) from exc


class Sending(Delivering):
    """H's side: hold a member's minutes for a peer, deliver them, settle or void."""

    def __init__(
        self,
        log: Log,
        accounts: AccountsService,
        peers: Peers,
        post: Post,
        store: TransferStore,
        clock: Callable[[], datetime],
    ) -> None:
        super().__init__(log, peers, post, store, accounts, clock)
        self.accounts = accounts

    def send(
        self,
        principal: Principal,
        from_member_id: str,
        peer_name: str,
        to_member_id: str,
        minutes: int,
        key: str,
    ) -> Outcome:
        """Move ``minutes`` of the member to member ``to_member_id`` of bank ``peer_name``.
        The same ``key`` with the same request finishes the same transfer, never a second."""
        member, access = self.accounts.member_access(principal, from_member_id, "from_member_id")
        if access not in ("self", "proxy"):
            raise Forbidden("only the member or their family proxy sends their minutes")
        if member.status is not MemberStatus.ACTIVE:
            raise CareError(f"member {member.id} is not active", field="from_member_id")
        if not isinstance(minutes, int) or minutes <= 0:
            raise CareError("minutes must be a positive whole number", field="minutes")
        peer = next((p for p in self.peers.list() if p.name == peer_name), None)
        if peer is None:
            raise TransferRefused(
                "unknown-peer", f"no peer bank {peer_name}", "没有该对方银行", "peer"
            )
        transfer = transfer_name(member.ledger_account, key)
        out_id = f"transfer-out:{transfer}"
        held = self.log.entries_by_id([out_id]).get(out_id)
        if held is None:
            out = TransferOut(
                transfer,
                member.ledger_account,
                peer.name,
                minutes,
                peer.log_origin,
                commitment(transfer, to_member_id),
                log_time(self.clock() + HOLD),
                self.accounts.protector.pseudonym(out_id, principal.user_id or ""),
            )
            self.store.remember(transfer, peer.name, to_member_id)  # first: a retry needs it
            try:
                self._append(out.to_request())
            except CareError:  # not held (not enough minutes): nothing for the worker to do
                if out_id not in self.log.entries_by_id([out_id]):
                    self.store.close(transfer, UNSENT)
                raise
            failpoint("after-transfer-out")
        return self.finish(transfer, to_member_id)
