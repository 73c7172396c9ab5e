"""An in-memory ledger for unit tests of the care and accounts use cases.

It keeps the log's promises that the use cases rely on, with the ledger's own pure rules
(``ledger.entry``, ``ledger.postings``): an id is appended once (the same content again is a
replay, other content an ``IdConflict``), a ceiling is applied against the balances of the
moment, per-kind posting rules and balance floors refuse what the real log refuses, and a
reversal must negate an entry that exists; receipts are real C2SP tlog-proofs over an
in-memory tree signed with a test key. No SQL, no sequencer, no witnesses: the HTTP tests
cover the real log.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ledger import AppendResult, Entry, EntryRequest
from ledger.entry import ZERO_HASH, canonical_json
from ledger.errors import IdConflict, PostingRuleViolation
from ledger.merkle import MemoryTree, leaf_hash
from ledger.note import Checkpoint, Signer, TlogProof, sign_checkpoint
from ledger.postings import apply_postings, check_postings, check_reversal


@dataclass
class FakeLedger:
    member_overdraft: int = 0
    entries: list[Entry] = field(default_factory=list)
    balance_of: dict[str, int] = field(default_factory=dict)
    _by_id: dict[str, tuple[EntryRequest, AppendResult]] = field(default_factory=dict)
    _reversed: set[int] = field(default_factory=set)
    signer: Signer = field(default_factory=lambda: Signer.generate("timebank.test/fake"))
    tree: MemoryTree = field(default_factory=MemoryTree)

    def append(self, request: EntryRequest) -> AppendResult:
        known = self._by_id.get(request.id)
        if known is not None:
            first, result = known
            if canonical_json(_content(first)) != canonical_json(_content(request)):
                raise IdConflict(request.id, result.seq)
            return AppendResult(result.seq, result.id, result.leaf_hash, result.time, 0, True)
        if request.ceiling is not None:
            request = request.ceiling.apply(request, self.balance_of)
        request.validate()
        check_postings(request)
        target = request.body.get("reverses") if request.kind == "reversal" else None
        if request.kind == "reversal":
            if not isinstance(target, int) or target in self._reversed:
                raise PostingRuleViolation("not a reversible entry", field="body.reverses")
            original = self.entries[target].request if 0 <= target < len(self.entries) else None
            check_reversal(request, original, target)
        balances = dict(self.balance_of)
        apply_postings(balances, request.postings, self.member_overdraft)
        seq = len(self.entries)
        prev = leaf_hash(self.entries[-1].leaf()) if self.entries else ZERO_HASH
        entry = Entry(seq, prev, datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), request)
        self.entries.append(entry)
        self.tree.append(leaf_hash(entry.leaf()))
        self.balance_of = balances
        if isinstance(target, int):
            self._reversed.add(target)
        result = AppendResult(seq, request.id, leaf_hash(entry.leaf()), entry.time, seq + 1)
        self._by_id[request.id] = (request, result)
        return result

    def balances(self, accounts: list[str], max_age: float = 0.0) -> dict[str, int]:
        return {a: self.balance_of.get(a, 0) for a in accounts}

    def cached_balances(self, accounts: list[str], max_age: float) -> dict[str, int] | None:
        return self.balances(accounts)  # held in memory, always current

    def balances_after(self, points: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        return {
            (account, seq): sum(
                p.minutes
                for e in self.entries[: seq + 1]
                for p in e.request.postings
                if p.account == account
            )
            for account, seq in points
        }

    def history(
        self, accounts: list[str], limit: int = 50, before_seq: int | None = None
    ) -> list[Entry]:
        wanted = set(accounts)
        found = [
            e
            for e in reversed(self.entries)
            if (before_seq is None or e.seq < before_seq)
            and any(p.account in wanted for p in e.request.postings)
        ]
        return found[:limit]

    def entry(self, seq: int) -> Entry | None:
        return self.entries[seq] if 0 <= seq < len(self.entries) else None

    def entries_by_id(self, ids: list[str]) -> dict[str, Entry]:
        found = {i: self._by_id[i][1].seq for i in ids if i in self._by_id}
        return {i: self.entries[seq] for i, seq in found.items()}

    def receipt(self, index: int) -> str:
        size = self.tree.size
        checkpoint = sign_checkpoint(
            Checkpoint(self.signer.name, size, self.tree.root(size)), self.signer
        )
        proof = tuple(self.tree.inclusion_proof(index, size))
        return TlogProof(index, proof, checkpoint, self.entries[index].leaf()).render()

    def receipts(self, indexes: Sequence[int]) -> list[str]:
        size = self.tree.size
        checkpoint = sign_checkpoint(
            Checkpoint(self.signer.name, size, self.tree.root(size)), self.signer
        )
        return [
            TlogProof(
                i, tuple(self.tree.inclusion_proof(i, size)), checkpoint, self.entries[i].leaf()
            ).render()
            for i in indexes
            if 0 <= i < size
        ]

    def kinds(self) -> list[str]:
        return [e.request.kind for e in self.entries]


def _content(request: EntryRequest) -> object:
    """What must match for a repeat to be a replay (a ceiling's outcome may differ)."""
    body = dict(request.body)
    if request.ceiling is not None:
        body.pop(request.ceiling.note, None)
    postings = [(p.account, p.minutes) for p in request.postings]
    if request.ceiling is not None:
        postings = []
    return {"kind": request.kind, "id": request.id, "body": body, "postings": postings}
