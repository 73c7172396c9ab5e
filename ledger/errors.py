"""Errors raised by the ledger.

The hierarchy, one precise type per failure domain::

    LedgerError
    ├── EntryError                 an entry a client asked for cannot be appended
    │   ├── MalformedEntry         not encodable / wrong shape (names the field)
    │   ├── UnbalancedPostings     postings do not sum to zero
    │   ├── PostingRuleViolation   postings not allowed for the entry's kind
    │   ├── InsufficientBalance    a member account would go below its floor
    │   └── IdConflict             the id was used before with a different entry
    ├── ProofError                 a Merkle proof request or verification failed
    │   ├── ProofRequestError      indices out of range (e.g. beyond the tree)
    │   └── ProofVerificationError the proof does not prove what it claims
    ├── NoteError                  signed-note parsing or signature verification failed
    │   └── UnknownKey             no verifier for the key that signed
    ├── KeyFormatError             a signing or verifier key is malformed or unreadable
    └── CheckpointConflict         the log refused to sign a checkpoint inconsistent with its last

Verification of a whole database does not raise these; it collects every problem into a
report (see ``ledger.verify``).
"""

from __future__ import annotations


class LedgerError(Exception):
    """Base of every ledger error."""


class EntryError(LedgerError):
    """An entry cannot be appended. ``field`` names the part at fault where there is one."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class MalformedEntry(EntryError):
    pass


class UnbalancedPostings(EntryError):
    pass


class PostingRuleViolation(EntryError):
    pass


class InsufficientBalance(EntryError):
    def __init__(self, account: str, balance: int, change: int, floor: int) -> None:
        super().__init__(
            f"account {account} has {balance} minutes; "
            f"posting {change} would take it below {floor}",
            field="postings",
        )
        self.account = account
        self.balance = balance
        self.change = change
        self.floor = floor


class IdConflict(EntryError):
    def __init__(self, entry_id: str, seq: int) -> None:
        super().__init__(
            f"id {entry_id!r} was already appended at seq {seq} with a different entry",
            field="id",
        )
        self.entry_id = entry_id
        self.seq = seq


class ProofError(LedgerError):
    pass


class ProofRequestError(ProofError):
    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ProofVerificationError(ProofError):
    pass


class NoteError(LedgerError):
    pass


class UnknownKey(NoteError):
    pass


class KeyFormatError(LedgerError):
    pass


class CheckpointConflict(LedgerError):
    pass
