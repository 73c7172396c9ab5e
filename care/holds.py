"""Held minutes checked against the requests that hold them, and the repair of interrupted steps.

A redemption request holds its elder's minutes from its first assignment until it is
completed (``redeem:<request>``) or cancelled (``release:<request>``). The request's state
and the ledger entry commit separately (the log has its own writer), so a process killed
between the two can leave a hold that no open request accounts for, a completed request whose
redemption was not posted, or a verified record without its deposit. ``hold_discrepancies``
finds the first kind from the database alone (``timebank verify`` runs it);
``CareService.repair`` re-drives every interrupted step with the same derived entry ids, so
running it twice, or while the original step completes after all, posts nothing twice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

from accounts.storage import AccountsStore
from care.model import RequestStatus
from care.repo import redeeming_requests
from ledger.postings import hold_account

OPEN_STATES = (RequestStatus.OPEN.value, RequestStatus.ASSIGNED.value)


def hold_discrepancies(
    store: AccountsStore, balances: Callable[[Sequence[str]], dict[str, int]]
) -> list[str]:
    """Every elder whose hold account differs from the minutes their open requests hold."""
    with store.snapshot() as tx:
        rows = redeeming_requests(tx)
    expected: dict[str, int] = defaultdict(int)
    for row in rows:
        expected[row.ledger_account] += row.hold_minutes if row.status in OPEN_STATES else 0
    held = balances(sorted(hold_account(a) for a in expected))
    return [
        f"{hold_account(account)} holds {held.get(hold_account(account), 0)} minutes, "
        f"but its open requests hold {minutes} (run: timebank admin repair)"
        for account, minutes in sorted(expected.items())
        if held.get(hold_account(account), 0) != minutes
    ]
