"""The auditor and the audit trail, through real HTTP: bundles and online audits with an
auditor's token, tampering with audit events behind the app's back, and deposit rules."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, delete, insert

from accounts import totp
from api.app import create_app
from audit.auditor import (
    EVENTS_FILE,
    AuditReport,
    AuditState,
    Policy,
    export_bundle,
    verify_bundle,
    verify_online,
)
from audit.trail import ZERO, AuditEvent, AuditTrail, audit_events
from cli.main import main
from ledger.config import Settings
from ledger.entry import EntryRequest, Posting
from ledger.log import Log
from ledger.postings import ISSUANCE, POOL, system_account
from tests.accounts_world import PASSWORD, World, build_world
from tests.conftest import owner_url
from tests.helpers import drop_append_only_triggers, raw_sql
from tests.test_witness import serve, wait_for


@pytest.fixture
def world(settings: Settings, log: Log, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv("TIMEBANK_AUDIT_SEAL_SECONDS", "3600")  # the tests seal when they mean to
    yield from build_world(settings, log)


@pytest.fixture
def url(world: World, settings: Settings, log: Log) -> Iterator[str]:
    """The same database served by a second app over real HTTP (what the auditor talks to)."""
    with serve(create_app(settings, log=log)) as base:
        yield base


@pytest.fixture
def policy(log: Log) -> Policy:
    return Policy(log.signer.verifier)


def trail(w: World) -> AuditTrail:
    found: AuditTrail = w.client.app.state.audit
    return found


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def text_of(report: AuditReport) -> str:
    return "\n".join(report.lines())


def login(w: World, url: str, username: str = "auditor") -> str:
    """Log in over HTTP; returns the token once the login's audit event is stored (the app
    records an event after it has answered)."""
    before = trail(w).count()
    response = httpx.post(f"{url}/v1/auth/login", json={"username": username, "password": PASSWORD})
    token: str = ok(response)["token"]
    wait_for(lambda: trail(w).count() > before)
    return token


def verified_hour(w: World) -> int:
    """The workflow through HTTP: a catalogue, a record logged by the volunteer, confirmed by
    the elder and verified by staff with a second factor. Returns the deposit's seq."""
    ok(
        w.client.post(
            "/v1/catalogue",
            headers=w.as_("b1-admin"),
            json={
                "code": "nursing",
                "name_zh": "护理",
                "name_en": "Nursing",
                "category": "nursing",
                "weight_permille": 1500,
            },
        )
    )
    principal = w.accounts.principal_for_user(w.ids["staff-a"])
    secret, _ = w.accounts.begin_totp(principal, w.enrolment_code("staff-a"))
    step = int(datetime.now(UTC).timestamp() // 30)  # this step to enrol, the next to log in
    w.accounts.confirm_totp(principal, totp.code_at(secret, step))
    staff = ok(
        w.client.post(
            "/v1/auth/login",
            json={
                "username": "staff-a",
                "password": PASSWORD,
                "totp": totp.code_at(secret, step + 1),
            },
        )
    )["token"]
    start = (datetime.now(UTC) - timedelta(hours=3)).replace(microsecond=0)
    record = ok(
        w.client.post(
            "/v1/records",
            headers=w.as_("vol-a"),
            json={
                "elder_id": w.ids["elder-a"],
                "service_code": "nursing",
                "check_in": start.isoformat(),
                "check_out": (start + timedelta(minutes=45)).isoformat(),
            },
        ),
        201,
    )
    ok(w.client.post(f"/v1/records/{record['id']}/confirm", headers=w.as_("elder-a"), json={}))
    verified = ok(
        w.client.post(
            f"/v1/records/{record['id']}/verify", headers={"Authorization": f"Bearer {staff}"}
        )
    )
    assert verified["status"] == "verified"
    seq: int = verified["deposit_seq"]
    return seq


def activity(w: World, orgs: int = 4) -> None:
    """Audited actions of bank b1: created organisations, a refused request, a failed login."""
    for n in range(orgs):
        ok(
            w.client.post(
                "/v1/orgs",
                headers=w.as_("b1-admin"),
                json={"name": f"Org {n} {secrets.token_hex(4)}", "kind": "community_centre"},
            ),
            201,
        )
    w.client.post(
        f"/v1/members/{w.ids['elder-a']}/flags", headers=w.as_("vol-a"), json={"flag": "disabled"}
    )
    w.client.post("/v1/auth/login", json={"username": "vol-a", "password": "wrong pass!"})


def sealed(w: World) -> int:
    """Seal the trail now; the seal entry's seq."""
    result = trail(w).seal(w.log)
    assert result is not None
    return result.seq


def export(url: str, out: Path, token: str | None) -> Path:
    export_bundle(url, out, token=token)
    return out


# ---------------------------------------------------------------- a whole, honest trail


def test_a_bundle_with_the_audit_trail_and_a_real_deposit_verifies(
    world: World, url: str, policy: Policy, tmp_path: Path
) -> None:
    w = world
    deposit_seq = verified_hour(w)
    activity(w)
    seal_seq = sealed(w)
    token = login(w, url)
    bundle = export(url, tmp_path / "bundle", token)
    report = verify_bundle(bundle, policy)
    assert report.ok, text_of(report)
    events = trail(w).all_events()
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["audit_events"] == len(events)
    data = (bundle / EVENTS_FILE).read_bytes()
    assert manifest["files"][EVENTS_FILE]["sha256"] == hashlib.sha256(data).hexdigest()
    assert [json.loads(line)["seq"] for line in data.splitlines()] == list(range(len(events)))
    assert f"audit trail: {len(events)} events, 1 of 1 seal checked" in text_of(report)
    assert "1 audit event from seq" in text_of(report)  # the auditor's own login, after the seal
    deposit = json.loads(w.log.leaves(deposit_seq, deposit_seq + 1)[0].data)
    assert deposit["kind"] == "deposit" and deposit["postings"][0]["minutes"] == -68  # 45 × 1.5
    assert json.loads(w.log.leaves(seal_seq, seal_seq + 1)[0].data)["kind"] == "seal"

    without = verify_bundle(export(url, tmp_path / "plain", None), policy)
    assert without.ok
    assert "no audit events" in text_of(
        without
    ) and "nor the 1 seal entry in the log against it" in (text_of(without))
    required = verify_bundle(tmp_path / "plain", policy, require_audit=True)
    assert not required.ok
    assert "audit trail: no audit events" in text_of(required)


def test_cli_export_with_a_token_and_verify(
    world: World,
    url: str,
    log: Log,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    w = world
    activity(w)
    sealed(w)
    token = login(w, url)
    count = trail(w).count()
    out = tmp_path / "b"
    assert main(["audit", "export", "--url", url, "--out", str(out), "--token", token]) == 0
    assert f"and {count} audit events from" in capsys.readouterr().out
    assert main(["audit", "verify", str(out), "--key", log.verifier_key, "--require-audit"]) == 0
    assert f"audit trail: {count} events, 1 of 1 seal checked" in capsys.readouterr().out
    monkeypatch.setenv("TIMEBANK_AUDIT_TOKEN", token)
    assert main(["audit", "export", "--url", url, "--out", str(tmp_path / "env")]) == 0
    assert (tmp_path / "env" / EVENTS_FILE).exists()
    monkeypatch.delenv("TIMEBANK_AUDIT_TOKEN")
    assert main(["audit", "export", "--url", url, "--out", str(tmp_path / "none")]) == 0
    args = ["audit", "verify", str(tmp_path / "none"), "--key", log.verifier_key]
    assert main(args) == 0
    assert main([*args, "--require-audit"]) == 1
    capsys.readouterr()
    online = ["audit", "verify", "--url", url, "--key", log.verifier_key, "--token", token]
    assert main(online) == 0
    assert "audit trail:" in capsys.readouterr().out
    assert main([*online, "--state", str(tmp_path / "s.json")]) == 0
    assert main([*args, "--token", token]) == 2  # --token is for --url audits
    not_auditor = login(w, url, "b1-admin")
    bad = ["audit", "export", "--url", url, "--out", str(tmp_path / "x"), "--token", not_auditor]
    assert main(bad) == 2
    assert "HTTP 403" in capsys.readouterr().err


# ---------------------------------------------------------------- tampering with the trail


def drop_trail_triggers(db_url: str) -> None:
    drop_append_only_triggers(db_url)
    if db_url.startswith("sqlite"):
        raw_sql(
            db_url,
            "DROP TRIGGER IF EXISTS audit_events_no_update",
            "DROP TRIGGER IF EXISTS audit_events_no_delete",
        )
    else:
        raw_sql(db_url, "DROP TRIGGER IF EXISTS audit_events_append_only ON audit_events")


def rewrite(db_url: str, events: list[AuditEvent]) -> None:
    """What a careful insider does: renumber and re-chain the events so the chain is whole,
    then replace the table's rows with them."""
    rows, prev = [], ZERO
    for seq, event in enumerate(events):
        event = replace(event, seq=seq, prev=prev)
        prev = event.hash()
        rows.append(
            {
                "seq": seq,
                "time": event.time,
                "bank_id": event.bank_id,
                "actor": event.actor,
                "role": event.role,
                "on_behalf": event.on_behalf,
                "action": event.action,
                "objects": json.dumps(list(event.objects)),
                "client": event.client,
                "device_key": event.device_key,
                "outcome": event.outcome,
                "status": event.status,
                "prev": event.prev,
                "hash": prev,
            }
        )
    engine = create_engine(owner_url(db_url))  # an insider, behind the application's back
    try:
        with engine.begin() as conn:
            conn.execute(delete(audit_events))
            conn.execute(insert(audit_events), rows)
    finally:
        engine.dispose()


def _edited(events: list[AuditEvent]) -> list[AuditEvent]:
    return [replace(e, actor="someone-else") if e.seq == 2 else e for e in events]


def _inserted(events: list[AuditEvent]) -> list[AuditEvent]:
    forged = replace(events[2], action="POST /v1/orgs", objects=("forged",))
    return [*events[:2], forged, *events[2:]]


def _reordered(events: list[AuditEvent]) -> list[AuditEvent]:
    return [*events[:2], events[3], events[2], *events[4:]]


def _deleted(events: list[AuditEvent]) -> list[AuditEvent]:
    return [e for e in events if e.seq != 2]


Tamper = Callable[[str, list[AuditEvent]], None]

TAMPERING: dict[str, tuple[Tamper, list[str]]] = {
    # in place, as with an UPDATE or DELETE statement: the chain breaks at the next event
    "edit": (
        lambda url, _: raw_sql(url, "UPDATE audit_events SET actor = 'x' WHERE seq = 2"),
        ["audit event 3: prev does not match the hash of the event before it"],
    ),
    "delete": (
        lambda url, _: raw_sql(url, "DELETE FROM audit_events WHERE seq = 2"),
        ["audit event 3: expected seq 2 (events missing, inserted or reordered)"],
    ),
    "reorder": (
        lambda url, _: raw_sql(
            url,
            "UPDATE audit_events SET seq = 1000 WHERE seq = 2",
            "UPDATE audit_events SET seq = 2 WHERE seq = 3",
            "UPDATE audit_events SET seq = 3 WHERE seq = 1000",
        ),
        [
            "audit event 2: prev does not match the hash of the event before it",
            "audit event 3: prev does not match the hash of the event before it",
        ],
    ),
    # re-chained by a careful insider: only the seal in the signed log shows it
    "edit, re-chained": (lambda url, events: rewrite(url, _edited(events)), []),
    "delete, re-chained": (lambda url, events: rewrite(url, _deleted(events)), []),
    "insert, re-chained": (lambda url, events: rewrite(url, _inserted(events)), []),
    "reorder, re-chained": (lambda url, events: rewrite(url, _reordered(events)), []),
}


@pytest.mark.parametrize("how", list(TAMPERING))
def test_tampered_audit_events_are_detected_and_named(
    world: World, url: str, policy: Policy, db_url: str, tmp_path: Path, how: str
) -> None:
    w = world
    activity(w)
    seal_seq = sealed(w)
    token = login(w, url)
    assert verify_online(url, policy, token=token).ok
    drop_trail_triggers(db_url)
    tamper, expected = TAMPERING[how]
    tamper(db_url, trail(w).all_events())
    for report in (
        verify_bundle(export(url, tmp_path / "bundle", token), policy),
        verify_online(url, policy, token=token),
    ):
        text = text_of(report)
        assert not report.ok, text
        for line in expected:
            assert line in text
        assert f"seq {seal_seq}: sealed audit head at count" in text or (
            f"seq {seal_seq}: seal covers" in text
        ), text
        assert {p.seq for p in report.problems if p.seq is not None} == {seal_seq}


def test_an_edited_event_in_the_bundle_file_is_named(
    world: World, url: str, policy: Policy, tmp_path: Path
) -> None:
    w = world
    activity(w)
    seal_seq = sealed(w)
    bundle = export(url, tmp_path / "bundle", login(w, url))
    lines = (bundle / EVENTS_FILE).read_bytes().splitlines()
    event = json.loads(lines[1])
    event["outcome"] = "ok" if event["outcome"] != "ok" else "refused"
    lines[1] = json.dumps(event).encode()
    (bundle / EVENTS_FILE).write_bytes(b"\n".join(lines) + b"\n")
    text = text_of(verify_bundle(bundle, policy))
    assert f"file {EVENTS_FILE}: SHA-256 does not match the manifest" in text
    assert "audit event 2: prev does not match" in text
    assert f"seq {seal_seq}: sealed audit head at count" in text


def test_the_state_file_remembers_the_last_seal(
    world: World, url: str, policy: Policy, db_url: str, tmp_path: Path
) -> None:
    """An incremental online audit rechecks the last seal it verified, so editing events it
    sealed before is caught even when no new seal came since."""
    w = world
    activity(w)
    seal_seq = sealed(w)
    token = login(w, url)
    state = tmp_path / "state.json"
    assert verify_online(url, policy, state_path=state, token=token).ok
    remembered = AuditState.load(state)
    assert remembered is not None and remembered.seal is not None
    assert remembered.seal.ledger_seq == seal_seq
    drop_trail_triggers(db_url)
    rewrite(db_url, _edited(trail(w).all_events()))
    report = verify_online(url, policy, state_path=state, token=token)
    assert "0 new entries replayed" in text_of(report)
    assert f"seq {seal_seq}: sealed audit head at count" in text_of(report)


def test_seals_that_cover_fewer_events_or_say_nothing_are_named(
    world: World, url: str, policy: Policy, tmp_path: Path
) -> None:
    w = world
    activity(w)
    first = sealed(w)
    events = trail(w).all_events()
    count = len(events)
    # a true head of the trail, but of fewer events than already sealed: the trail was cut
    older = base64.b64encode(events[count - 3].hash()).decode()
    cut = w.log.append(
        EntryRequest("seal", "audit-seal:cut", body={"audit_count": count - 2, "audit_head": older})
    )
    empty = w.log.append(
        EntryRequest("seal", "audit-seal:x", body={"audit_count": count, "audit_head": "AAAA"})
    )
    report = verify_bundle(export(url, tmp_path / "b", login(w, url)), policy)
    text = text_of(report)
    assert (
        f"seq {cut.seq}: seal covers {count - 2} audit events, fewer than the {count} sealed "
        f"by seq {first} (the trail was cut back)"
    ) in text
    assert f"seq {empty.seq}: seal entry's body.audit_head is not a base64 SHA-256 hash" in text
    assert {p.seq for p in report.problems} == {cut.seq, empty.seq}


# ---------------------------------------------------------------- other banks' events


def test_another_banks_events_are_not_tampering_with_a_shared_trail(
    world: World, url: str, policy: Policy, db_url: str, tmp_path: Path
) -> None:
    """The b1 auditor cannot see b2's events. By default the gaps fail the audit (a removed
    event looks the same); with --shared-trail they are noted, and the visible events and
    the seals that end on them are still checked."""
    w = world
    activity(w, orgs=2)
    ok(
        w.client.post(
            "/v1/orgs", headers=w.as_("b2-admin"), json={"name": "B2", "kind": "service_station"}
        ),
        201,
    )
    activity(w, orgs=2)
    checkable = sealed(w)
    sealed_count = trail(w).count()
    ok(
        w.client.post(
            "/v1/orgs", headers=w.as_("b2-admin"), json={"name": "B2'", "kind": "service_station"}
        ),
        201,
    )
    hidden_end = sealed(w)
    token = login(w, url)
    events = trail(w).all_events()
    hidden = [e.seq for e in events if e.bank_id == "b2"]
    assert len(hidden) == 2
    bundle = export(url, tmp_path / "bundle", token)
    strict = verify_bundle(bundle, policy)
    text = text_of(strict)
    assert not strict.ok
    assert f"audit event {hidden[0] + 1}: expected seq {hidden[0]}" in text
    assert "verify with --shared-trail" in text

    shared = verify_bundle(bundle, policy, shared_trail=True)
    text = text_of(shared)
    assert shared.ok, text
    assert f"audit events {hidden[0]}, {hidden[1]} are not visible to this auditor" in text
    assert f"1 seal ends at an audit event this auditor cannot see (seq {hidden_end})" in text
    assert "1 of 2 seals checked (2 not visible)" in text
    assert verify_online(url, policy, token=token, shared_trail=True).ok

    drop_trail_triggers(db_url)
    visible = [e.seq for e in events if e.bank_id != "b2" and e.seq + 1 not in hidden]
    assert sealed_count - 1 not in hidden and visible[1] + 1 < sealed_count - 1
    raw_sql(
        db_url,
        f"UPDATE audit_events SET actor = 'x' WHERE seq IN ({visible[1]}, {sealed_count - 1})",
    )
    tampered = verify_bundle(export(url, tmp_path / "after", token), policy, shared_trail=True)
    text = text_of(tampered)
    assert f"audit event {visible[1] + 1}: prev does not match" in text
    assert f"seq {checkable}: sealed audit head at count {sealed_count} differs" in text


# ---------------------------------------------------------------- deposits


def forged_deposit(
    entry_id: str,
    account: str,
    *,
    minutes: int = 60,
    weight: int | None = 1500,
    issued: int = 90,
    to_pool: int = 0,
    claimed_pool: int | None = None,
    signatures: tuple[dict[str, str], ...] = ({"role": "verifier", "by": "u-staff"},),
    **body: Any,
) -> EntryRequest:
    """A deposit the operator appends with the real key; ``body`` overrides (None drops)."""
    postings = [Posting(system_account("b1", ISSUANCE), -issued)]
    if issued - to_pool:
        postings.append(Posting(account, issued - to_pool))
    if to_pool:
        postings.append(Posting(system_account("b1", POOL), to_pool))
    fields: dict[str, Any] = {
        "record": hashlib.sha256(entry_id.encode()).hexdigest(),
        "minutes": minutes,
        "weight": weight,
        "confirmed_by": "u-elder",
        "confirmed_as": "elder",
        "verified_by": "u-staff",
        "to_pool": to_pool if claimed_pool is None else claimed_pool,
        **body,
    }
    return EntryRequest(
        "deposit",
        entry_id,
        tuple(postings),
        {k: v for k, v in fields.items() if v is not None},
        signatures,
    )


def test_deposits_without_a_record_signatures_or_the_right_amount_are_named(
    world: World, url: str, policy: Policy, tmp_path: Path
) -> None:
    """The operator appends deposits with the real key that no workflow made: the ledger takes
    them (its append path checks postings, not provenance); the auditor names each one."""
    w = world
    real = verified_hour(w)
    account = w.ids["vol-a-account"]
    cases = {
        "good": forged_deposit("good", account, to_pool=30),
        "unsigned": forged_deposit("unsigned", account, signatures=()),
        "volunteer-only": forged_deposit(
            "volunteer-only", account, signatures=({"role": "volunteer", "key": "k", "sig": ""},)
        ),
        "inflated": forged_deposit("inflated", account, issued=100),
        "no-record": forged_deposit("no-record", account, record="r-1"),
        "self-verified": forged_deposit("self-verified", account, confirmed_by="u-staff"),
        "unconfirmed": forged_deposit("unconfirmed", account, confirmed_by=None, confirmed_as=None),
        "pool": forged_deposit("pool", account, to_pool=30, claimed_pool=20),
        "other-signer": forged_deposit(
            "other-signer", account, signatures=({"role": "verifier", "by": "u-else"},)
        ),
        "no-weight": forged_deposit("no-weight", account, weight=None),
    }
    seqs = {name: w.log.append(request).seq for name, request in cases.items()}
    report = verify_bundle(export(url, tmp_path / "b", login(w, url)), policy)
    text = text_of(report)
    named = {p.seq for p in report.problems}
    assert real not in named and seqs["good"] not in named
    assert named == {seq for name, seq in seqs.items() if name != "good"}
    for name, message in (
        ("unsigned", "deposit carries no verifier signature"),
        ("volunteer-only", "deposit carries no verifier signature"),
        ("volunteer-only", "deposit's volunteer signature lacks its device key or signature"),
        ("inflated", "deposit issues 100 minutes, but 60 minutes at weight 1500‰ are 90"),
        ("no-record", "deposit does not refer to a record: body.record is not a SHA-256 digest"),
        ("self-verified", "deposit was confirmed and verified by the same user u-staff"),
        ("unconfirmed", "deposit does not say who confirmed the service (body.confirmed_by)"),
        ("unconfirmed", "deposit does not say how the service was confirmed"),
        ("pool", "deposit credits the pool 30 minutes, but body.to_pool says 20"),
        (
            "other-signer",
            "deposit's verifier signature is by u-else, not by body.verified_by u-staff",
        ),
        ("no-weight", "deposit's body.minutes and body.weight are not positive integers"),
    ):
        assert f"seq {seqs[name]}: {message}" in text, (name, text)
    online = verify_online(url, policy)
    assert {p.seq for p in online.problems} == named
