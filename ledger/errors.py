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

A message is English with ``%(name)s`` where a value goes, the values given apart
(``ProofRequestError("start %(start)s is beyond the tree (size %(size)s)", field="start",
start=9, size=3)``), as ``accounts.errors`` has it: ``template`` and ``values`` let the web
layer translate the message whole and fill the values in after (``web.i18n.ledger_detail``);
``str()`` is the English with the values in.
"""

from __future__ import annotations

from typing import Any


def N_(message: str) -> str:
    """Marks a message for the catalog (``pybabel extract -k N_``)."""
    return message


class LedgerError(Exception):
    """Base of every ledger error. ``field`` names the part at fault where there is one."""

    def __init__(self, message: str, *, field: str | None = None, **values: Any) -> None:
        self.template = message
        self.values: dict[str, Any] = values  # numbers and codes, shown as they are
        self.field = field
        try:
            super().__init__(message % values if values else message)
        except (KeyError, ValueError, TypeError):  # a value quoted in the text holds a stray %
            super().__init__(message)


class EntryError(LedgerError):
    """An entry cannot be appended."""


class MalformedEntry(EntryError):
    pass


class UnbalancedPostings(EntryError):
    pass


class PostingRuleViolation(EntryError):
    pass


class InsufficientBalance(EntryError):
    def __init__(self, account: str, balance: int, change: int, floor: int) -> None:
        super().__init__(
            N_(
                "account %(account)s has %(balance)s minutes; posting %(change)s would take it "
                "below %(floor)s"
            ),
            field="postings",
            account=account,
            balance=balance,
            change=change,
            floor=floor,
        )
        self.account = account
        self.balance = balance
        self.change = change
        self.floor = floor


class IdConflict(EntryError):
    def __init__(self, entry_id: str, seq: int) -> None:
        super().__init__(
            N_("id %(id)s was already appended at seq %(seq)s with a different entry"),
            field="id",
            id=repr(entry_id),
            seq=seq,
        )
        self.entry_id = entry_id
        self.seq = seq


class ProofError(LedgerError):
    pass


class ProofRequestError(ProofError):
    pass


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
