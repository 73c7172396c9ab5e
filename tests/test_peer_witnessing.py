"""Mutual witnessing: two deployments on loopback, each its peer's witness (docs/federation.md).

A's log submits its checkpoints to B's ``/v1/federation/witness``; B cosigns them with its
witness key, keeps what it cosigned in its database, and refuses and records a split view.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from litestar import Litestar

from api.app import create_app
from audit.trail import AuditTrail
from audit.witness import SizeConflict
from federation.peers import Peers
from federation.storage import PeerStore
from federation.witness_storage import WitnessedStore
from federation.witnessing import WitnessedTable, load_or_create_witness_key
from ledger.config import Settings
from ledger.keys import load_or_create_signing_key
from ledger.log import Log
from ledger.merkle import MemoryTree, leaf_hash
from ledger.note import Checkpoint, Note, Signer, check_cosignature, sign_checkpoint
from tests.conftest import make_database
from tests.helpers import deposit, member
from tests.test_peers import TIMEBANK


@dataclass
class Bank:
    settings: Settings
    env: dict[str, str]
    url: str
    sock: socket.socket
    log_signer: Signer
    witness_signer: Signer
    request_signer: Signer
    app: Litestar | None = None


def _bank(name: str, db_url: str, tmp_path: Path) -> Bank:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TIMEBANK_")},
        "TIMEBANK_DATA_DIR": str(tmp_path / name),
        "TIMEBANK_DATABASE_URL": db_url,
        "TIMEBANK_LOG_ORIGIN": f"{name}.timebank.test/log",
    }
    settings = Settings.from_env(env)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return Bank(
        settings,
        env,
        f"http://127.0.0.1:{sock.getsockname()[1]}",
        sock,
        load_or_create_signing_key(settings.signing_key_file, settings.log_origin),
        load_or_create_witness_key(settings.witness_key_file, settings.witness_key_name),
        load_or_create_signing_key(settings.peer_key_file, settings.peer_key_name),
    )


def _add_peer(at: Bank, name: str, peer: Bank) -> None:
    Peers(PeerStore(at.settings.database_url), at.settings.log_origin).add(
        name,
        peer.url,
        peer.settings.log_origin,
        peer.log_signer.verifier.to_text(),
        peer.request_signer.verifier.to_text(),
        "op",
        witness_key=peer.witness_signer.verifier.to_text(),
    )


@contextmanager
def serve(app: Litestar, sock: socket.socket) -> Iterator[None]:
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started or not thread.is_alive())
    assert thread.is_alive(), "uvicorn did not start"
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(20)
        sock.close()


def wait_for(predicate: Any, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def http(method: str, url: str, body: bytes | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code), exc.read().decode()


@pytest.fixture
def banks(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[Bank]]:
    """A (鼓楼) and B (秦淮), each the other's peer and witness, both serving."""
    with ExitStack() as stack:
        made = []
        for name in ("gulou", "qinhuai"):
            (tmp_path / f"db-{name}").mkdir()
            url = stack.enter_context(
                contextmanager(make_database)(backend, request, tmp_path / f"db-{name}")
            )
            made.append(_bank(name, url, tmp_path))
        a, b = made
        _add_peer(a, "qinhuai", b)
        _add_peer(b, "gulou", a)
        for bank in (b, a):
            bank.app = create_app(bank.settings)
            stack.enter_context(serve(bank.app, bank.sock))
        yield made


def cosigned_size(bank: Bank, witness: Bank) -> int | None:
    status, text = http("GET", bank.url + "/v1/log/checkpoint")
    assert status == 200
    note = Note.parse(text)
    assert note.signed_by(bank.log_signer.verifier)
    if check_cosignature(note, witness.witness_signer.verifier) is None:
        return None
    return Checkpoint.parse_body(note.text).size


def add_checkpoint(
    witness: Bank, old: int, note: str, proof: tuple[bytes, ...] = ()
) -> tuple[int, str]:
    lines = "".join(base64.b64encode(h).decode() + "\n" for h in proof)
    body = f"old {old}\n{lines}\n{note}".encode()
    return http("POST", witness.url + "/v1/federation/witness/add-checkpoint", body)


def _append(bank: Bank, app_log: Log, start: int, count: int) -> None:
    for i in range(start, start + count):
        app_log.append(deposit(f"{bank.settings.log_origin}-{i}", member(i % 3), 30))


def test_each_bank_cosigns_its_peers_checkpoints_and_refuses_a_split_view(
    banks: list[Bank],
) -> None:
    a, b = banks
    status, key = http("GET", b.url + "/v1/federation/witness/key")
    assert (status, key.strip()) == (200, b.witness_signer.verifier.to_text())

    assert a.app is not None
    a_log: Log = a.app.state.log
    _append(a, a_log, 0, 5)
    wait_for(lambda: (cosigned_size(a, b) or 0) >= 5)
    _append(a, a_log, 5, 7)
    wait_for(lambda: (cosigned_size(a, b) or 0) >= 12)
    status, text = http(
        "GET", f"{b.url}/v1/federation/witness/checkpoint?origin=gulou.timebank.test/log"
    )
    assert status == 200
    size = Checkpoint.parse_body(Note.parse(text).text).size
    assert size == a_log.size() >= 12
    assert check_cosignature(Note.parse(text), b.witness_signer.verifier) is not None
    assert cosigned_size(b, a) is None  # nothing appended on B yet

    # A's key signs another tree of that size: B refuses it with its size and records it
    forged = Checkpoint(a.settings.log_origin, size, hashlib.sha256(b"another history").digest())
    assert add_checkpoint(b, size, sign_checkpoint(forged, a.log_signer)) == (409, f"{size}\n")
    # and a bigger tree no proof makes consistent with what B cosigned
    larger = Checkpoint(a.settings.log_origin, size + 8, hashlib.sha256(b"elsewhere").digest())
    proof = tuple(hashlib.sha256(bytes([i])).digest() for i in range(4))
    status, text = add_checkpoint(b, size, sign_checkpoint(larger, a.log_signer), proof)
    assert status == 422, text
    status, text = http(
        "GET", f"{b.url}/v1/federation/witness/checkpoint?origin=gulou.timebank.test/log"
    )
    assert Checkpoint.parse_body(Note.parse(text).text).size == size  # B did not move

    listed = subprocess.run(
        [TIMEBANK, "peers", "list"], env=b.env, capture_output=True, text=True, timeout=120
    )
    assert listed.returncode == 0, listed.stderr
    assert f"we cosigned: its tree of size {size}" in listed.stdout
    assert "SPLIT VIEW: 2 checkpoint(s) refused" in listed.stdout
    assert "bad consistency proof" in listed.stdout
    trail = AuditTrail(b.settings.database_url)
    try:
        events = [
            e
            for e in trail.events(bank_id=None, limit=1000)
            if e.action.startswith("federation split view")
        ]
    finally:
        trail.dispose()
    assert [(e.actor, e.status) for e in events] == [("peer:gulou", 409), ("peer:gulou", 422)]
    assert events[0].action == "federation split view: same size, different root"
    # accepted submissions are not events: each would be sealed into B's log, which B submits
    # to A, whose events would be sealed into A's log, and so on for ever
    trail = AuditTrail(b.settings.database_url)
    try:
        actions = {e.action for e in trail.events(bank_id=None, limit=1000)}
    finally:
        trail.dispose()
    assert not any("add-checkpoint" in action for action in actions), actions

    listed_a = subprocess.run(
        [TIMEBANK, "peers", "list"], env=a.env, capture_output=True, text=True, timeout=120
    )
    assert "SPLIT VIEW" not in listed_a.stdout
    assert "we cosigned: nothing yet" in listed_a.stdout


def test_only_registered_peers_are_witnessed(banks: list[Bank]) -> None:
    """The same checkpoint is refused (404) while its log is no peer's, cosigned once the
    operator adds the peer, and refused again once it is removed; a peer's origin signed by
    another key is a 403."""
    _, b = banks
    origin = "jianye.timebank.test/log"
    jianye = Signer.generate(origin)
    tree = MemoryTree()
    for i in range(3):
        tree.append(leaf_hash(f"jianye-{i}".encode()))
    checkpoint = sign_checkpoint(Checkpoint(origin, 3, tree.root(3)), jianye)
    status, text = add_checkpoint(b, 0, checkpoint)
    assert status == 404 and origin in text

    peers = Peers(PeerStore(b.settings.database_url), b.settings.log_origin)
    peers.add(
        "jianye",
        "https://jianye.example",
        origin,
        jianye.verifier.to_text(),
        Signer.generate(origin + "/peers").verifier.to_text(),
        "op",
    )
    status, line = add_checkpoint(b, 0, checkpoint)
    assert status == 200
    assert check_cosignature(Note.parse(checkpoint + line), b.witness_signer.verifier)

    impostor = Signer.generate(origin)  # the origin's name, not the peer's key
    tree.append(leaf_hash(b"jianye-3"))
    forged = sign_checkpoint(Checkpoint(origin, 4, tree.root(4)), impostor)
    assert add_checkpoint(b, 3, forged, tuple(tree.consistency_proof(3, 4)))[0] == 403

    peers.remove("jianye")
    assert add_checkpoint(b, 0, checkpoint)[0] == 404


def test_an_operator_adds_a_peer_with_its_witness_key(db_url: str, tmp_path: Path) -> None:
    """``peers add --witness-key`` takes the peer's served witness key and refuses another kind
    of key, naming the option; ``peers witness-key`` prints what the server publishes."""
    own = _bank("gulou", db_url, tmp_path)
    peer = _bank("qinhuai", db_url, tmp_path / "other")
    own.sock.close()
    peer.sock.close()
    printed = subprocess.run(
        [TIMEBANK, "peers", "witness-key"], env=own.env, capture_output=True, text=True, timeout=60
    )
    assert printed.stdout == own.witness_signer.verifier.to_text() + "\n"

    def add(witness_key: str) -> subprocess.CompletedProcess[str]:
        options = {
            "name": "qinhuai",
            "url": peer.url,
            "origin": peer.settings.log_origin,
            "log-key": peer.log_signer.verifier.to_text(),
            "request-key": peer.request_signer.verifier.to_text(),
            "witness-key": witness_key,
        }
        args = [x for k, v in options.items() for x in (f"--{k}", v)]
        return subprocess.run(
            [TIMEBANK, "peers", "add", *args],
            env=own.env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    refused = add(peer.log_signer.verifier.to_text())  # its log key, not its witness key
    assert refused.returncode == 1
    assert refused.stderr.endswith("(--witness-key)\n"), refused.stderr
    assert "cosignature/v1 (0x04)" in refused.stderr
    added = add(peer.witness_signer.verifier.to_text())
    assert added.returncode == 0, added.stderr
    listed = subprocess.run(
        [TIMEBANK, "peers", "list"], env=own.env, capture_output=True, text=True, timeout=60
    )
    assert f"  witness key: {peer.witness_signer.verifier.to_text()} (witnesses our log)" in (
        listed.stdout.splitlines()
    )


def test_two_processes_never_both_move_a_peers_state_on(db_url: str) -> None:
    """The database state is a compare-and-set: a process that checked against size 3 cannot
    overwrite the size 5 another process stored meanwhile (409 with the size it holds)."""
    signer = Signer.generate("qinhuai.timebank.test/log")
    table = WitnessedTable(WitnessedStore(db_url), lambda origin, reason: None)
    origin = signer.name

    def note(size: int, seed: bytes) -> str:
        return sign_checkpoint(Checkpoint(origin, size, hashlib.sha256(seed).digest()), signer)

    table.save(origin, note(3, b"3"))
    at_three = table.load(origin)
    assert at_three is not None and at_three.checkpoint.size == 3
    table.save(origin, note(5, b"5"), at_three)  # the first process moves on
    with pytest.raises(SizeConflict) as conflict:
        table.save(origin, note(4, b"4"), at_three)  # the second one checked against size 3
    assert conflict.value.size == 5
    with pytest.raises(SizeConflict):
        table.save(origin, note(4, b"4"))  # nor may anyone start the origin over
    moved = table.load(origin)
    assert moved is not None and moved.checkpoint.size == 5
