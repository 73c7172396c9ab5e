"""One immutable type per kind of entry the services write: what its body says, written once.

Each type builds its entry with ``to_request()`` and reads one back with ``from_entry()``, which
raises :class:`~ledger.errors.MalformedEntry` naming the field (``body.minutes``, ``postings``)
when the entry does not have the kind's shape. ``from_entry(x.to_request()) == x`` for every
value the services write; older bodies with extra fields (docs/formats.md shows some) read too,
the extras ignored. docs/formats.md#bodies is this module in prose.

The log itself accepts any JSON body (its rules are about postings, ``ledger.postings``); these
types are how the rest of the code writes and reads bodies. Nothing writes ``correction`` or
``registration`` today, so they have no type. The auditor (``audit.rules``) reads deposits
through ``DepositClaims``, the same fields as ``Deposit`` read without refusing any, and judges
them by its own recomputation of the rules on purpose: it must not trust the code it checks.

Kinds and their types::

    deposit     Deposit            reserve     Reserve            redemption  Redemption
    release     Release            refund      Refund             exchange    Exchange
    gift        Gift               donation    Donation           grant       Grant
    reversal    Reversal           approval    Approval           device      Device
    seal        Seal               report      ReportAnchor
    transfer_out TransferOut       transfer_in TransferIn
    transfer_settled TransferSettled   transfer_void TransferVoid
    transfer_refused TransferRefusal   (all five in ledger.kinds.interbank)
    settlement  Settlement (ledger.kinds.settlement)
    policy      BankPolicy (id policy:<bank>:<version>), CatalogueEntry (id service:…)
"""

from __future__ import annotations

from collections.abc import Mapping

from ledger.entry import EntryRequest
from ledger.kinds.facts import Approval, BankPolicy, CatalogueEntry, Device, ReportAnchor, Seal
from ledger.kinds.fields import weighted
from ledger.kinds.interbank import (
    TransferIn,
    TransferOut,
    TransferRefusal,
    TransferSettled,
    TransferVoid,
)
from ledger.kinds.service import (
    Deposit,
    DepositClaims,
    Exchange,
    Redemption,
    Refund,
    Release,
    Reserve,
)
from ledger.kinds.settlement import Settlement
from ledger.kinds.transfers import Donation, Gift, Grant, Reversal

Typed = (
    Deposit
    | Reserve
    | Redemption
    | Release
    | Refund
    | Exchange
    | Gift
    | Donation
    | Grant
    | Reversal
    | BankPolicy
    | CatalogueEntry
    | Approval
    | Device
    | Seal
    | ReportAnchor
    | TransferOut
    | TransferIn
    | TransferSettled
    | TransferVoid
    | TransferRefusal
    | Settlement
)

_TYPES: tuple[type[Typed], ...] = (
    Deposit,
    Reserve,
    Redemption,
    Release,
    Refund,
    Exchange,
    Gift,
    Donation,
    Grant,
    Reversal,
    Approval,
    Device,
    Seal,
    ReportAnchor,
    TransferOut,
    TransferIn,
    TransferSettled,
    TransferVoid,
    TransferRefusal,
    Settlement,
)
_BY_KIND: Mapping[str, type[Typed]] = {t.kind: t for t in _TYPES}


def read(request: EntryRequest) -> Typed | None:
    """The typed view of an entry; None for the kinds without a type (see above)."""
    if request.kind == "policy":
        kind = CatalogueEntry if request.id.startswith("service:") else BankPolicy
        return kind.from_entry(request)
    typed = _BY_KIND.get(request.kind)
    return None if typed is None else typed.from_entry(request)


__all__ = [
    "Approval",
    "BankPolicy",
    "CatalogueEntry",
    "Deposit",
    "DepositClaims",
    "Device",
    "Donation",
    "Exchange",
    "Gift",
    "Grant",
    "Redemption",
    "Refund",
    "Release",
    "ReportAnchor",
    "Reserve",
    "Reversal",
    "Seal",
    "Settlement",
    "TransferIn",
    "TransferOut",
    "TransferRefusal",
    "TransferSettled",
    "TransferVoid",
    "Typed",
    "read",
    "weighted",
]
