"""Peers (docs/federation.md): ``timebank peers add/list/remove`` as an operator runs them,
the checks on what is added, the table's migration, the public request key, and the signed
requests peers will send each other, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from nacl.signing import VerifyKey
from sqlalchemy import create_engine

from audit.trail import AuditTrail
from federation.peers import PeerError, Peers
from federation.signing import SignatureError, sign_request, verify_request
from federation.storage import PeerStore
from ledger.note import COSIGNATURE_V1, Signer, Verifier
from migrations.runner import alembic_config, check, current_revision, head_revision
from tests.conftest import migrate_as_owner, owner_url

TIMEBANK = str(Path(sys.executable).with_name("timebank"))
OWN = "gulou.timebank.test/log"
PEER = "qinhuai.timebank.test/log"
LOG_KEY = Signer.generate(PEER).verifier.to_text()
REQUEST_SIGNER = Signer.generate(PEER + "/peers")
REQUEST_KEY = REQUEST_SIGNER.verifier.to_text()


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TIMEBANK, *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("TIMEBANK_")},
        "TIMEBANK_DATA_DIR": str(tmp_path / "data"),
        "TIMEBANK_DATABASE_URL": db_url,
        "TIMEBANK_LOG_ORIGIN": OWN,
    }


@pytest.fixture
def peers(db_url: str) -> Peers:
    return Peers(PeerStore(db_url), OWN)


def _add(env: dict[str, str], *extra: str, **given: str) -> subprocess.CompletedProcess[str]:
    values = {"name": "qinhuai", "url": "https://qinhuai.example/", "origin": PEER}
    values = {**values, "log_key": LOG_KEY, "request_key": REQUEST_KEY, **given}
    options = [x for k, v in values.items() for x in (f"--{k.replace('_', '-')}", v)]
    return run(env, "peers", "--as", "op-li", *extra, "add", *options)


def test_an_operator_adds_lists_and_removes_a_peer_and_each_change_is_audited(
    env: dict[str, str], db_url: str
) -> None:
    assert run(env, "migrate").returncode == 0
    assert run(env, "peers", "list").stdout == "no peers\n"

    added = _add(env)
    assert added.returncode == 0, added.stderr
    assert added.stdout == f"peer qinhuai added: https://qinhuai.example (log {PEER})\n"
    listed = run(env, "peers", "list").stdout.splitlines()
    assert listed[:3] == [
        f"qinhuai  https://qinhuai.example  log {PEER}",
        f"  log key:     {LOG_KEY}",
        f"  request key: {REQUEST_KEY}",
    ]
    assert listed[3].endswith(" by op-li")

    # Refused, with the option named, and nothing stored: the same add succeeded above.
    refused = {
        "url": _add(env, name="other", origin="o.test/log", url="http://qinhuai.example"),
        "log-key": _add(env, name="other", origin="o.test/log", log_key="o.test/log+00+AAAA"),
        "name": _add(env),
    }
    for option, done in refused.items():
        assert done.returncode == 1, done
        assert done.stderr.endswith(f"(--{option})\n"), done.stderr
    assert "must use https" in refused["url"].stderr
    assert "not a verifier key" in refused["log-key"].stderr
    assert "a peer named qinhuai exists" in refused["name"].stderr
    assert (
        len(
            [x for x in run(env, "peers", "list").stdout.splitlines() if x.startswith("  log key:")]
        )
        == 1
    )

    assert run(env, "peers", "remove", "--name", "qinhuai").stdout == "peer qinhuai removed\n"
    again = run(env, "peers", "remove", "--name", "qinhuai")
    assert (again.returncode, again.stderr) == (
        1,
        "timebank peers remove: no peer named qinhuai (--name)\n",
    )
    assert run(env, "peers", "list").stdout == "no peers\n"

    trail = AuditTrail(db_url)
    try:
        events = [(e.actor, e.action, e.status) for e in trail.all_events()]
    finally:
        trail.dispose()
    assert events == [
        ("operator:op-li", "CLI timebank peers add", 0),
        ("operator:op-li", "CLI timebank peers add", 1),
        ("operator:op-li", "CLI timebank peers add", 1),
        ("operator:op-li", "CLI timebank peers add", 1),
        (events[4][0], "CLI timebank peers remove", 0),
        (events[4][0], "CLI timebank peers remove", 1),
    ]


BAD = [
    ({"name": "Qin Huai"}, "name", "lowercase letters"),
    ({"url": "ftp://qinhuai.example"}, "url", "absolute https:// URL"),
    ({"url": "qinhuai.example"}, "url", "absolute https:// URL"),
    ({"url": "https://qinhuai.example:99999"}, "url", "not a valid URL"),
    ({"url": "https://li:pw@qinhuai.example"}, "url", "user name or password"),
    ({"url": "https://qinhuai.example/?a=1"}, "url", "query or a fragment"),
    ({"url": "http://10.0.0.2"}, "url", "must use https"),
    ({"origin": "qin huai"}, "origin", "printable ASCII"),
    ({"origin": OWN}, "origin", "this bank's own log"),
    ({"log_key": "garbage"}, "log_key", "not a verifier key"),
    ({"log_key": REQUEST_KEY}, "log_key", "is named 'qinhuai.timebank.test/log/peers'"),
    ({"request_key": LOG_KEY}, "request_key", "not 'qinhuai.timebank.test/log/peers'"),
    (
        {"request_key": Signer.generate(PEER + "/peers", COSIGNATURE_V1).verifier.to_text()},
        "request_key",
        "must be an Ed25519 (0x01) key",
    ),
]


def _good(**given: str) -> dict[str, str]:
    values = {"name": "qinhuai", "url": "https://qinhuai.example", "origin": PEER}
    return {**values, "log_key": LOG_KEY, "request_key": REQUEST_KEY, **given}


@pytest.mark.parametrize(("given", "field", "says"), BAD)
def test_bad_input_is_refused_naming_the_field(
    peers: Peers, given: dict[str, str], field: str, says: str
) -> None:
    with pytest.raises(PeerError) as refused:
        peers.add(**_good(**given), added_by="op")
    assert (refused.value.field, says in str(refused.value)) == (field, True), refused.value
    assert peers.list() == []
    assert peers.add(**_good(), added_by="op").name == "qinhuai"  # the good one goes in


def test_duplicates_are_refused_by_name_origin_and_request_key(peers: Peers) -> None:
    first = peers.add(**_good(url="http://127.0.0.1:8001/"), added_by="op")
    assert first.url == "http://127.0.0.1:8001"  # http only to this machine
    other_log = Signer.generate("other.test/log").verifier.to_text()
    other_request = Signer.generate("other.test/log/peers").verifier.to_text()
    cases = {
        "name": _good(origin="other.test/log", log_key=other_log, request_key=other_request),
        "origin": _good(name="other"),
    }
    for field, values in cases.items():
        with pytest.raises(PeerError) as refused:
            peers.add(**values, added_by="op")
        assert refused.value.field == field
    assert [p.name for p in peers.list()] == ["qinhuai"]
    second = peers.add(**cases["name"] | {"name": "other"}, added_by="op")
    assert [p.name for p in peers.list()] == ["other", "qinhuai"]
    assert peers.by_request_key_id(second.request_key_id) == second


def test_the_migration_matches_the_models_and_goes_down_and_up(db_url: str) -> None:
    assert current_revision(db_url) == head_revision()
    check(db_url)
    engine = create_engine(owner_url(db_url))
    try:
        with engine.connect() as conn, conn.begin():
            command.downgrade(alembic_config(conn), "0016_published_reports")
    finally:
        engine.dispose()
    assert current_revision(db_url) == "0016_published_reports"
    migrate_as_owner(db_url)
    assert current_revision(db_url) == head_revision()
    check(db_url)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_request_key_is_served_publicly_and_matches_the_cli(env: dict[str, str]) -> None:
    key = run(env, "peers", "key")
    assert key.returncode == 0, key.stderr
    verifier = Verifier.from_text(key.stdout)
    assert verifier.name == f"{OWN}/peers"
    assert oct((Path(env["TIMEBANK_DATA_DIR"]) / "peer.key").stat().st_mode)[-3:] == "600"
    port = _free_port()
    server = subprocess.Popen(
        [TIMEBANK, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(600):  # a loaded machine may take a while to start the server
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                assert server.poll() is None, "timebank serve exited"
                time.sleep(0.1)
        served = urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/federation/key")
        assert served.headers["content-type"].startswith("text/plain")
        assert served.read().decode() == key.stdout
        log_key = urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/log/key").read().decode()
        assert log_key != key.stdout  # a key of its own, not the log's
    finally:
        server.terminate()
        server.wait(30)


NOW = datetime(2026, 12, 5, 12, 0, 0, tzinfo=UTC)
BODY = b'{"transfer":"example"}'


def _lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def test_a_signed_request_verifies_against_the_peer_found_by_its_key_id(peers: Peers) -> None:
    peer = peers.add(**_good(), added_by="op")
    headers = sign_request(REQUEST_SIGNER, "POST", "/v1/federation/transfers", BODY, NOW)
    assert headers["Signature-Input"] == (
        'peer=("@method" "@path" "date" "content-digest");created=1796472000;'
        f'keyid="{peer.request_key_id}";alg="ed25519"'
    )

    def keys(key_id: str) -> Verifier | None:
        found = peers.by_request_key_id(key_id)
        return found.request_key if found else None

    signed = _lower(headers)
    assert verify_request(signed, "POST", "/v1/federation/transfers", BODY, keys, NOW) == (
        peer.request_key
    )
    # The RFC 9421 signature base, written out by hand and checked with another library.
    base = (
        '"@method": POST\n"@path": /v1/federation/transfers\n'
        '"date": Sat, 05 Dec 2026 12:00:00 GMT\n'
        f'"content-digest": {headers["Content-Digest"]}\n'
        f'"@signature-params": {headers["Signature-Input"].removeprefix("peer=")}'
    ).encode()
    signature = base64.b64decode(headers["Signature"][len("peer=:") : -1])
    VerifyKey(peer.request_key.public_key).verify(base, signature)

    stranger = Signer.generate(PEER + "/peers")  # same name, another key: not the peer's id
    forged = _lower(sign_request(stranger, "POST", "/v1/federation/transfers", BODY, NOW))
    forged_same_id = {**signed, "signature": forged["signature"]}
    later = NOW + timedelta(seconds=301)
    refusals = {
        "another method": (signed, "PUT", "/v1/federation/transfers", BODY, NOW),
        "another path": (signed, "POST", "/v1/federation/settlements", BODY, NOW),
        "another body": (signed, "POST", "/v1/federation/transfers", b"{}", NOW),
        "a replay 5 minutes on": (signed, "POST", "/v1/federation/transfers", BODY, later),
        "an unknown key": (forged, "POST", "/v1/federation/transfers", BODY, NOW),
        "a forged signature": (forged_same_id, "POST", "/v1/federation/transfers", BODY, NOW),
        "no signature": ({}, "POST", "/v1/federation/transfers", BODY, NOW),
    }
    for what, (given, method, path, body, at) in refusals.items():
        with pytest.raises(SignatureError) as refused:
            verify_request(given, method, path, body, keys, at)
        print(f"{what}: {refused.value}")
