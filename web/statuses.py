"""The HTTP status of every domain refusal, in one table for the API and the pages.

The domain packages raise errors with a slug and a message, never an HTTP status; this table
is the one place a refusal becomes a status. A class not listed answers as its nearest listed
base class does (its MRO), so a new error gets its family's status until it is listed.
"""

from __future__ import annotations

from accounts.errors import (
    AccountsError,
    AuthenticationError,
    Conflict,
    Forbidden,
    InvalidInput,
    LoginThrottled,
    NotFound,
    SearchThrottled,
)
from audit.witness import (
    BadProof,
    MalformedRequest,
    RateLimited,
    SizeConflict,
    UnknownLog,
    UntrustedSignature,
    WitnessError,
)
from care.errors import CareError, TooManyCodeAttempts, WrongState
from federation.transfers import PeerUnavailable
from ledger.errors import EntryError, IdConflict

STATUSES: dict[type[Exception], int] = {
    # accounts: who the caller is and what they may see
    AccountsError: 400,
    InvalidInput: 400,
    AuthenticationError: 401,
    LoginThrottled: 429,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    SearchThrottled: 429,
    # care: a rule of the time bank refuses the action
    CareError: 422,
    WrongState: 409,
    TooManyCodeAttempts: 429,
    # federation: a peer bank that did not answer (the transfer stays held; retry)
    PeerUnavailable: 503,
    # ledger: an entry the log will not append
    EntryError: 422,
    IdConflict: 409,
    # the witness, with the statuses C2SP tlog-witness requires
    WitnessError: 400,
    MalformedRequest: 400,
    UntrustedSignature: 403,
    UnknownLog: 404,
    SizeConflict: 409,
    BadProof: 422,
    RateLimited: 429,
}


def status_of(exc: Exception) -> int:
    """The status for ``exc``: its class's, or its nearest listed base class's; else 500."""
    for cls in type(exc).__mro__:
        if cls in STATUSES:
            return STATUSES[cls]
    return 500
