"""Which witnesses the log was configured with, and when each was removed: kept in the audit trail.

The witnesses a server submits its checkpoints to (``TIMEBANK_WITNESSES`` and the peers added
with a witness key) are read when it starts. ``record_witnesses`` is called then: when the set
differs from the one the trail last recorded, it appends an event (actor ``server:witnesses``,
action ``witnesses configured``) whose objects are the SHA-256 fingerprints of every configured
witness key (``fingerprint``; a key's text is longer than an event's object may be). The trail
is hash-chained and sealed into the log, so this history is signed with the log once sealed.

``witness_history`` reads those events back: for each key ever configured, since when and,
if a later event no longer lists it, when it was removed. ``timebank verify`` uses it to name
the stored cosignatures of a removed witness as such (they count towards no quorum: only the
witnesses configured now do, ``ledger.witnessing``), rather than as an unknown key's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from audit.trail import AuditTrail
from ledger.note import Verifier

ACTOR = "server:witnesses"
ACTION = "witnesses configured"
MAX_EVENTS = 100_000  # one event per change of configuration: far more than any deployment has


def fingerprint(key: Verifier | str) -> str:
    """A witness key's fingerprint in the trail: SHA-256 of its text, in hex (64 characters)."""
    text = key.to_text() if isinstance(key, Verifier) else key
    return hashlib.sha256(text.encode()).hexdigest()


def record_witnesses(trail: AuditTrail, witnesses: Iterable[Verifier]) -> bool:
    """Append a ``witnesses configured`` event if ``witnesses`` differ from the last recorded
    set (none recorded counts as none configured); True if one was appended."""
    now = sorted({fingerprint(w) for w in witnesses})
    recorded = trail.events(bank_id=None, actor=ACTOR, limit=MAX_EVENTS)
    before = sorted(set(recorded[-1].objects)) if recorded else []
    if now == before:
        return False
    trail.record(actor=ACTOR, role="server", action=ACTION, objects=now, client="serve", status=200)
    return True


@dataclass(frozen=True)
class Configured:
    """A witness key as the trail knows it: configured at ``since``; removed at ``removed``
    (None: the last recorded configuration still lists it)."""

    since: str
    removed: str | None = None


def witness_history(trail: AuditTrail) -> dict[str, Configured]:
    """Every witness key the trail ever recorded as configured, by ``fingerprint``."""
    history: dict[str, Configured] = {}
    listed: set[str] = set()
    for event in trail.events(bank_id=None, actor=ACTOR, limit=MAX_EVENTS):
        if event.action != ACTION:
            continue
        now = set(event.objects)
        for key in now - listed:
            history[key] = Configured(event.time)
        for key in listed - now:
            history[key] = Configured(history[key].since, event.time)
        listed = now
    return history
