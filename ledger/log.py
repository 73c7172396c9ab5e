"""The log as one object: append through the sequencer, read checkpoints, leaves and proofs."""

from __future__ import annotations

from dataclasses import dataclass

from ledger.config import Settings
from ledger.entry import EntryRequest
from ledger.errors import ProofRequestError
from ledger.keys import load_or_create_signing_key
from ledger.merkle import (
    EMPTY_ROOT,
    consistency_spans,
    fold_span,
    inclusion_spans,
    nodes_needed,
)
from ledger.note import Checkpoint, Signer, sign_checkpoint
from ledger.sequencer import AppendResult, BatchWriter, Sequencer
from ledger.storage import LedgerStore, Snapshot
from ledger.verify import Report, verify_store

MAX_LEAVES_PER_PAGE = 1000


@dataclass(frozen=True)
class Leaf:
    index: int
    data: bytes


class Log:
    def __init__(self, store: LedgerStore, signer: Signer, origin: str, member_overdraft: int = 0):
        self.store = store
        self.signer = signer
        self.origin = origin
        self.member_overdraft = member_overdraft
        self.sequencer = Sequencer(BatchWriter(store, signer, origin, member_overdraft))

    @classmethod
    def open(cls, settings: Settings) -> Log:
        signer = load_or_create_signing_key(settings.signing_key_file, settings.log_origin)
        return cls(
            LedgerStore(settings.database_url),
            signer,
            settings.log_origin,
            settings.member_overdraft_minutes,
        )

    def close(self) -> None:
        self.sequencer.close()
        self.store.dispose()

    # ------------------------------------------------------------ writes

    def append(self, request: EntryRequest) -> AppendResult:
        return self.sequencer.append(request)

    async def append_async(self, request: EntryRequest) -> AppendResult:
        return await self.sequencer.append_async(request)

    # ------------------------------------------------------------ reads

    @property
    def verifier_key(self) -> str:
        return self.signer.verifier.to_text()

    def checkpoint(self) -> str:
        """The latest signed checkpoint; for an empty log, a freshly signed size-0 one."""
        with self.store.read() as db:
            latest = db.latest_checkpoint()
        if latest is None:
            return sign_checkpoint(Checkpoint(self.origin, 0, EMPTY_ROOT), self.signer)
        return latest[1]

    def size(self) -> int:
        with self.store.read() as db:
            latest = db.latest_checkpoint()
        return latest[0] if latest else 0

    def leaves(self, start: int, end: int) -> list[Leaf]:
        """Leaves [start, end) of the signed tree; a page may be shorter than asked."""
        with self.store.read() as db:
            size = (db.latest_checkpoint() or (0, ""))[0]
            if start < 0:
                raise ProofRequestError("start must not be negative", field="start")
            if end <= start:
                raise ProofRequestError("end must be greater than start", field="end")
            if start >= size:
                raise ProofRequestError(
                    f"start {start} is beyond the tree (size {size})", field="start"
                )
            end = min(end, size, start + MAX_LEAVES_PER_PAGE)
            return [Leaf(i, bytes(d)) for i, d in db.leaves(start, end)]

    def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        with self.store.read() as db:
            self._check_size(db, tree_size, "tree_size")
            if not 0 <= index < tree_size:
                raise ProofRequestError(
                    f"index {index} is not inside a tree of size {tree_size}", field="index"
                )
            spans = inclusion_spans(index, tree_size)
            nodes = db.nodes(sorted(nodes_needed(spans)))
        return [fold_span(s, nodes) for s in spans]

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        with self.store.read() as db:
            self._check_size(db, second, "second")
            spans = consistency_spans(first, second)
            nodes = db.nodes(sorted(nodes_needed(spans)))
        return [fold_span(s, nodes) for s in spans]

    @staticmethod
    def _check_size(db: Snapshot, size: int, field: str) -> None:
        latest = (db.latest_checkpoint() or (0, ""))[0]
        if size < 1:
            raise ProofRequestError(f"{field} must be at least 1", field=field)
        if size > latest:
            raise ProofRequestError(
                f"{field} {size} is beyond the signed tree (size {latest})", field=field
            )

    def balance(self, account: str) -> int:
        with self.store.read() as db:
            return db.balances([account]).get(account, 0)

    def verify(self) -> Report:
        return verify_store(self.store, self.signer.verifier, self.origin, self.member_overdraft)
