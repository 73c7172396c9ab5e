"""The server records the witnesses it submits to in the audit trail when they change
(``audit.witness_history``), so that ``timebank verify`` can tell a removed witness's
cosignatures from an unknown key's (tests/test_tamper.py)."""

from __future__ import annotations

import dataclasses

from litestar.testing import TestClient

from api.app import create_app
from audit.trail import AuditTrail
from audit.witness_history import ACTOR, fingerprint, witness_history
from ledger.config import Settings
from ledger.note import COSIGNATURE_V1, Signer
from ledger.witnessing import WitnessEndpoint


def _start(settings: Settings, witnesses: list[Signer]) -> None:
    """Start and stop the server with ``witnesses`` configured (nobody listens on port 9)."""
    endpoints = tuple(WitnessEndpoint("http://127.0.0.1:9", w.verifier) for w in witnesses)
    with TestClient(create_app(dataclasses.replace(settings, witnesses=endpoints))) as client:
        assert client.get("/healthz").status_code == 200


def test_each_start_with_other_witnesses_is_recorded_and_a_removal_dated(
    settings: Settings,
) -> None:
    kept = Signer.generate("witness.test/kept", COSIGNATURE_V1)
    gone = Signer.generate("witness.test/gone", COSIGNATURE_V1)
    _start(settings, [])  # no witnesses, none recorded before: nothing to record
    _start(settings, [kept, gone])
    _start(settings, [gone, kept])  # the same set: nothing new
    _start(settings, [kept])
    trail = AuditTrail(settings.database_url)
    try:
        events = trail.events(bank_id=None, actor=ACTOR)
        history = witness_history(trail)
    finally:
        trail.dispose()
    assert [(e.action, sorted(e.objects)) for e in events] == [
        ("witnesses configured", sorted([fingerprint(kept.verifier), fingerprint(gone.verifier)])),
        ("witnesses configured", [fingerprint(kept.verifier)]),
    ]
    assert all(e.role == "server" and e.outcome == "ok" for e in events)
    assert history[fingerprint(kept.verifier)].removed is None
    assert history[fingerprint(gone.verifier)].since == events[0].time
    assert history[fingerprint(gone.verifier)].removed == events[1].time
