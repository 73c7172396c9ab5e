"""The Timebank log: canonical entries, hash chain, RFC 6962 tree, signed checkpoints, postings.

The ledger's public API is what this package exports; other packages import these names (or
the pure modules ``entry``, ``postings``, ``merkle``, ``note``, ``replay``, ``keys``,
``config``, ``errors``), never ``ledger.storage``, ``ledger.batch_writer`` or
``ledger.sequencer``, which are how the log is kept, not what it promises (an import-linter
contract says so).
"""

from ledger.batch_writer import AppendResult, Clock, utc_now
from ledger.entry import Entry, EntryRequest, Posting
from ledger.log import Log
from ledger.port import LedgerPort
from ledger.storage import LedgerStore
from ledger.storage_totals import BankTotals, fill_facts
from ledger.verify import Report, format_report, verify_store

__all__ = [
    "AppendResult",
    "BankTotals",
    "Clock",
    "Entry",
    "EntryRequest",
    "LedgerPort",
    "LedgerStore",
    "Log",
    "Posting",
    "Report",
    "fill_facts",
    "format_report",
    "utc_now",
    "verify_store",
]
