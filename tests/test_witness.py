"""The witness (C2SP tlog-witness) and the log's side of witnessing, over real HTTP."""

from __future__ import annotations

import base64
import socket
import stat
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from litestar import Litestar
from litestar.datastructures import State
from litestar.testing import TestClient

from api.log_routes import LogController
from api.problems import EXCEPTION_HANDLERS
from api.witness_app import create_witness_app
from audit.witness import (
    RateLimited,
    SizeConflict,
    Witness,
    WitnessState,
    WitnessStateError,
    generate_witness_key,
    load_witness_key,
    parse_log_keys,
)
from ledger.config import ConfigError, Settings
from ledger.keys import load_or_create_signing_key
from ledger.log import Log
from ledger.merkle import MemoryTree, leaf_hash
from ledger.note import (
    COSIGNATURE_V1,
    Checkpoint,
    Note,
    Signer,
    Verifier,
    check_cosignature,
    cosign,
    sign_checkpoint,
)
from ledger.storage import LedgerStore
from ledger.witnessing import WitnessEndpoint
from tests.helpers import deposit, member

ORIGIN = "example.test/log"


# ---------------------------------------------------------------- helpers


@contextmanager
def serve(app: Litestar) -> Iterator[str]:
    """Run ``app`` with uvicorn on a free 127.0.0.1 port in a thread; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)
        sock.close()


class FakeLog:
    """A log in memory: a tree, a signing key, checkpoints and proofs."""

    def __init__(self, signer: Signer, seed: str = "a") -> None:
        self.signer = signer
        self.tree = MemoryTree()
        self.seed = seed

    def grow(self, size: int) -> None:
        while self.tree.size < size:
            self.tree.append(leaf_hash(f"{self.seed}-{self.tree.size}".encode()))

    def checkpoint(self, size: int | None = None) -> str:
        size = self.tree.size if size is None else size
        return sign_checkpoint(Checkpoint(ORIGIN, size, self.tree.root(size)), self.signer)

    def request(self, old: int, size: int | None = None) -> bytes:
        size = self.tree.size if size is None else size
        proof = self.tree.consistency_proof(old, size) if 0 < old < size else []
        lines = "".join(base64.b64encode(h).decode() + "\n" for h in proof)
        return f"old {old}\n{lines}\n{self.checkpoint(size)}".encode()


@pytest.fixture
def log_signer() -> Signer:
    return Signer.generate(ORIGIN)


@pytest.fixture
def witness_signer() -> Signer:
    return Signer.generate("witness.test/w1", COSIGNATURE_V1)


@pytest.fixture
def make_witness(tmp_path: Path, log_signer: Signer, witness_signer: Signer) -> Iterator[Any]:
    states: list[WitnessState] = []

    def make() -> Witness:
        for old in states:
            old.close()
        state = WitnessState(tmp_path / "witness")
        states.append(state)
        return Witness(witness_signer, parse_log_keys([log_signer.verifier.to_text()]), state)

    yield make
    for state in states:
        state.close()


@pytest.fixture
def client(make_witness: Any) -> Iterator[TestClient[Litestar]]:
    with TestClient(create_witness_app(make_witness())) as test_client:
        yield test_client


def post(client: TestClient[Litestar], body: bytes) -> Any:
    return client.post("/add-checkpoint", content=body)


# ---------------------------------------------------------------- the protocol


def test_cosigns_the_first_checkpoint_and_its_extensions(
    client: TestClient[Litestar], log_signer: Signer, witness_signer: Signer
) -> None:
    log = FakeLog(log_signer)
    log.grow(10)
    first = post(client, log.request(0))
    assert first.status_code == 200, first.text
    assert first.headers["content-type"].startswith("text/plain")
    note = Note.parse(log.checkpoint() + first.text)
    assert check_cosignature(note, witness_signer.verifier) is not None

    log.grow(37)
    second = post(client, log.request(10))
    assert second.status_code == 200, second.text
    note = Note.parse(log.checkpoint() + second.text)
    assert check_cosignature(note, witness_signer.verifier) is not None
    latest = client.get("/checkpoint", params={"origin": ORIGIN})
    assert latest.status_code == 200
    assert latest.text == log.checkpoint() + second.text


def test_rollback_is_refused_with_409_and_the_witness_size(
    client: TestClient[Litestar], log_signer: Signer
) -> None:
    log = FakeLog(log_signer)
    log.grow(20)
    assert post(client, log.request(0)).status_code == 200
    for body in (log.request(0, 12), log.request(12, 12), log.request(0, 20)):
        response = post(client, body)
        assert response.status_code == 409
        assert response.headers["content-type"].startswith("text/x.tlog.size")
        assert response.text == "20\n"


def test_same_size_with_another_root_is_409(
    client: TestClient[Litestar], log_signer: Signer
) -> None:
    honest, fork = FakeLog(log_signer, "a"), FakeLog(log_signer, "b")
    honest.grow(8)
    fork.grow(8)
    assert post(client, honest.request(0)).status_code == 200
    assert post(client, honest.request(8)).status_code == 200  # same tree again is fine
    response = post(client, fork.request(8))
    assert response.status_code == 409
    assert response.text == "8\n"


def test_inconsistent_checkpoint_is_refused_with_422_and_kept_as_evidence(
    client: TestClient[Litestar], log_signer: Signer, tmp_path: Path
) -> None:
    honest, fork = FakeLog(log_signer, "a"), FakeLog(log_signer, "b")
    honest.grow(6)
    assert post(client, honest.request(0)).status_code == 200
    fork.grow(30)
    response = post(client, fork.request(6))
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"] == "urn:timebank:problem:witness-bad-proof"
    evidence = list((tmp_path / "witness" / "evidence").iterdir())
    assert len(evidence) == 1 and fork.checkpoint().encode() in evidence[0].read_bytes()
    # a proof for the right tree still works afterwards
    honest.grow(30)
    assert post(client, honest.request(6)).status_code == 200


def test_bad_signature_is_403_and_unknown_origin_is_404(
    client: TestClient[Litestar], log_signer: Signer
) -> None:
    impostor = FakeLog(Signer.generate(ORIGIN))
    impostor.grow(5)
    response = post(client, impostor.request(0))
    assert response.status_code == 403
    assert response.json()["type"] == "urn:timebank:problem:witness-untrusted-signature"

    stranger = Signer.generate("other.test/log")
    body = "old 0\n\n" + sign_checkpoint(Checkpoint("other.test/log", 1, leaf_hash(b"x")), stranger)
    response = post(client, body.encode())
    assert response.status_code == 404
    assert response.json()["type"] == "urn:timebank:problem:witness-unknown-log"


def test_old_size_beyond_the_checkpoint_is_400(
    client: TestClient[Litestar], log_signer: Signer
) -> None:
    log = FakeLog(log_signer)
    log.grow(5)
    response = post(client, f"old 9\n\n{log.checkpoint()}".encode())
    assert response.status_code == 400
    assert "larger than the checkpoint size" in response.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"old 1",
        b"new 0\n\nx\n",
        b"old 01\n\nexample.test/log\n1\nAAAA\n\n",
        b"old 0\nnot-base64!\n\nexample.test/log\n",
        b"old 0\n" + b"AAAA\n" + b"\n",
        b"old 0\n\nexample.test/log\nten\nAAAA\n\n\xe2\x80\x94 k AAAAAAAA\n",
        b"\xff\xfe",
    ],
)
def test_malformed_requests_are_400_problems(client: TestClient[Litestar], body: bytes) -> None:
    response = post(client, body)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")


def test_too_many_proof_lines_is_400(client: TestClient[Litestar], log_signer: Signer) -> None:
    log = FakeLog(log_signer)
    log.grow(3)
    lines = (base64.b64encode(bytes(32)).decode() + "\n") * 64
    response = post(client, f"old 1\n{lines}\n{log.checkpoint()}".encode())
    assert response.status_code == 400


def test_state_survives_a_restart(make_witness: Any, log_signer: Signer) -> None:
    log = FakeLog(log_signer)
    log.grow(15)
    with TestClient(create_witness_app(make_witness())) as first:
        assert post(first, log.request(0)).status_code == 200
    with TestClient(create_witness_app(make_witness())) as second:
        response = post(second, log.request(0, 10))
        assert (response.status_code, response.text) == (409, "15\n")
        log.grow(16)
        assert post(second, log.request(15)).status_code == 200


def test_a_second_process_cannot_share_the_state_directory(
    make_witness: Any, tmp_path: Path
) -> None:
    make_witness()
    with pytest.raises(WitnessStateError, match="another witness process"):
        WitnessState(tmp_path / "witness")


def test_corrupt_state_stops_the_witness_instead_of_forgetting(
    tmp_path: Path, log_signer: Signer, witness_signer: Signer
) -> None:
    directory = tmp_path / "witness"
    state = WitnessState(directory)
    (directory / "example.test%2Flog.checkpoint").write_text("garbage\n")
    with pytest.raises(WitnessStateError, match="corrupt"):
        Witness(witness_signer, parse_log_keys([log_signer.verifier.to_text()]), state)
    state.close()


def test_concurrent_submissions_of_the_same_old_size_cosign_once(
    make_witness: Any, log_signer: Signer
) -> None:
    log = FakeLog(log_signer)
    log.grow(40)
    bodies = [log.request(0, size) for size in range(1, 41)]
    results: list[tuple[int, bytes]] = []
    lock = threading.Lock()

    with serve(create_witness_app(make_witness())) as url:

        def submit(body: bytes) -> None:
            request = urllib.request.Request(url + "/add-checkpoint", data=body, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    result = (response.status, response.read())
            except urllib.error.HTTPError as exc:
                result = (exc.code, exc.read())
            with lock:
                results.append(result)

        threads = [threading.Thread(target=submit, args=(b,)) for b in bodies]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with urllib.request.urlopen(f"{url}/checkpoint?origin={ORIGIN}", timeout=30) as response:
            held = Checkpoint.parse_body(Note.parse(response.read().decode()).text).size
    statuses = [status for status, _ in results]
    assert statuses.count(200) == 1 and statuses.count(409) == 39
    assert {body for status, body in results if status == 409} == {f"{held}\n".encode()}


def test_rollback_race_never_moves_the_witness_back(make_witness: Any, log_signer: Signer) -> None:
    """Threads race to extend from whatever size the witness holds; it only ever grows."""
    witness: Witness = make_witness()
    log = FakeLog(log_signer)
    log.grow(64)
    witness.add_checkpoint(log.request(0, 1))
    seen: list[int] = []
    lock = threading.Lock()

    def worker(sizes: list[int]) -> None:
        for size in sizes:
            while True:
                latest = witness.latest(ORIGIN)
                assert latest is not None
                old = Checkpoint.parse_body(Note.parse(latest).text).size
                if old >= size:
                    break
                try:
                    witness.add_checkpoint(log.request(old, size))
                except SizeConflict:  # another thread moved the witness on first
                    continue
                except RateLimited:  # the races' refused requests spent the log's burst
                    time.sleep(0.1)  # one token back (10 a second)
                    continue
                with lock:
                    seen.append(size)
                break

    threads = [
        threading.Thread(target=worker, args=(list(range(start, 65, 4)),)) for start in range(2, 6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latest = witness.latest(ORIGIN)
    assert latest is not None
    assert Checkpoint.parse_body(Note.parse(latest).text).size == max(seen) == 64


# ---------------------------------------------------------------- keys and the CLI


def test_keygen_writes_a_private_key_and_prints_the_cosignature_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli.main import main

    out = tmp_path / "keys" / "witness.key"
    with pytest.raises(SystemExit) as refused:  # a mistyped directory is not made
        main(["witness", "keygen", "--name", "witness.test/w9", "--out", str(out)])
    assert refused.value.code == 2
    assert "argument --out" in capsys.readouterr().err and not out.parent.exists()
    out.parent.mkdir()
    assert main(["witness", "keygen", "--name", "witness.test/w9", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    signer = load_witness_key(out)
    verifier = Verifier.from_text(printed)
    assert verifier == signer.verifier and verifier.key_type == COSIGNATURE_V1
    assert main(["witness", "keygen", "--name", "witness.test/w9", "--out", str(out)]) != 0


def test_witness_key_must_be_private(tmp_path: Path) -> None:
    out = tmp_path / "w.key"
    generate_witness_key("witness.test/w2", out)
    out.chmod(0o644)
    with pytest.raises(Exception, match="readable by others"):
        load_witness_key(out)


# ---------------------------------------------------------------- the log's side


def log_app(log: Log) -> Litestar:
    """Just the public log routes around ``log`` (what auditors and witnesses talk to)."""
    return Litestar(
        route_handlers=[LogController],
        state=State({"log": log}),
        exception_handlers=EXCEPTION_HANDLERS,
    )


@contextmanager
def running_witness(directory: Path, log_signer: Signer, witness_signer: Signer) -> Iterator[str]:
    state = WitnessState(directory)
    try:
        witness = Witness(witness_signer, parse_log_keys([log_signer.verifier.to_text()]), state)
        with serve(create_witness_app(witness)) as url:
            yield url
    finally:
        state.close()


def witnessed_log(
    settings: Settings, endpoints: list[WitnessEndpoint], quorum: int = 0, timeout: float = 2.0
) -> Log:
    signer = load_or_create_signing_key(settings.signing_key_file, settings.log_origin)
    return Log(
        LedgerStore(settings.database_url),
        signer,
        settings.log_origin,
        witnesses=endpoints,
        witness_quorum=quorum,
        witness_timeout=timeout,
    )


def wait_for(predicate: Any, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def served(log: Log) -> tuple[Checkpoint, Note]:
    note = Note.parse(log.checkpoint())
    return Checkpoint.parse_body(note.text), note


def cosigned_by(log: Log, witness: Verifier) -> int | None:
    checkpoint, note = served(log)
    return checkpoint.size if check_cosignature(note, witness) is not None else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_log_submits_its_checkpoints_and_serves_the_cosignatures(
    settings: Settings, tmp_path: Path, witness_signer: Signer
) -> None:
    signer = load_or_create_signing_key(settings.signing_key_file, settings.log_origin)
    with running_witness(tmp_path / "w", signer, witness_signer) as url:
        log = witnessed_log(settings, [WitnessEndpoint(url, witness_signer.verifier)], quorum=1)
        try:
            for i in range(5):
                log.append(deposit(f"d{i}", member(i % 2), 60))
            wait_for(lambda: cosigned_by(log, witness_signer.verifier) == 5)
            for i in range(5, 23):
                log.append(deposit(f"d{i}", member(i % 2), 60))
            wait_for(lambda: cosigned_by(log, witness_signer.verifier) == 23)
            with TestClient(log_app(log)) as client:
                text = client.get("/v1/log/checkpoint").text
            note = Note.parse(text)
            assert note.signed_by(signer.verifier)
            assert check_cosignature(note, witness_signer.verifier) is not None
            with urllib.request.urlopen(f"{url}/checkpoint?origin={log.origin}") as r:
                assert Checkpoint.parse_body(Note.parse(r.read().decode()).text).size == 23
        finally:
            log.close()


def test_a_witness_that_is_down_or_hangs_never_blocks_appends(
    settings: Settings, witness_signer: Signer
) -> None:
    hanging = socket.socket()
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(64)  # accepts connections into the backlog and never answers
    other = Signer.generate("witness.test/w2", COSIGNATURE_V1)
    endpoints = [
        WitnessEndpoint(f"http://127.0.0.1:{free_port()}", witness_signer.verifier),
        WitnessEndpoint(f"http://127.0.0.1:{hanging.getsockname()[1]}/w", other.verifier),
    ]
    log = witnessed_log(settings, endpoints, quorum=1, timeout=3.0)
    try:
        started = time.monotonic()
        for i in range(40):
            log.append(deposit(f"d{i}", member(i % 3), 30))
        elapsed = time.monotonic() - started
        assert elapsed < 10, f"appends took {elapsed:.1f} s with witnesses down"
        checkpoint, note = served(log)
        assert checkpoint.size == 40 and len(note.signatures) == 1
        assert log.verify().ok
    finally:
        closing = time.monotonic()
        log.close()
        assert time.monotonic() - closing < 10
        hanging.close()


def test_the_log_catches_up_with_a_witness_that_knows_a_larger_size(
    settings: Settings, tmp_path: Path, witness_signer: Signer
) -> None:
    """The witness already holds size 10 (say, from before a restart that lost our record):
    the log's ``old 0`` gets a 409 with 10, and it retries with a proof from 10."""
    plain = witnessed_log(settings, [])
    for i in range(10):
        plain.append(deposit(f"d{i}", member(1), 30))
    first = plain.checkpoint()
    plain.close()
    with running_witness(tmp_path / "w", witnessed_log_signer(settings), witness_signer) as url:
        request = urllib.request.Request(
            url + "/add-checkpoint", data=f"old 0\n\n{first}".encode(), method="POST"
        )
        with urllib.request.urlopen(request) as response:
            assert response.status == 200
        log = witnessed_log(settings, [WitnessEndpoint(url, witness_signer.verifier)])
        try:
            for i in range(10, 14):
                log.append(deposit(f"d{i}", member(1), 30))
            wait_for(lambda: cosigned_by(log, witness_signer.verifier) == 14)
        finally:
            log.close()


def witnessed_log_signer(settings: Settings) -> Signer:
    return load_or_create_signing_key(settings.signing_key_file, settings.log_origin)


def test_with_a_quorum_the_log_serves_the_newest_checkpoint_that_has_one(
    settings: Settings, tmp_path: Path, witness_signer: Signer
) -> None:
    signer = witnessed_log_signer(settings)
    port = free_port()
    endpoint = WitnessEndpoint(f"http://127.0.0.1:{port}", witness_signer.verifier)
    log = witnessed_log(settings, [endpoint], quorum=1, timeout=1.0)
    try:
        log.append(deposit("d0", member(1), 30))
        assert served(log)[0].size == 1 and len(served(log)[1].signatures) == 1  # none yet
    finally:
        log.close()
    state = WitnessState(tmp_path / "w")
    witness = Witness(witness_signer, parse_log_keys([signer.verifier.to_text()]), state)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    server = uvicorn.Server(uvicorn.Config(create_witness_app(witness), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    log = witnessed_log(settings, [endpoint], quorum=1, timeout=1.0)
    try:
        log.append(deposit("d1", member(1), 30))
        wait_for(lambda: cosigned_by(log, witness_signer.verifier) == 2)
        server.should_exit = True
        thread.join(20)
        for i in range(2, 6):
            log.append(deposit(f"d{i}", member(1), 30))
        time.sleep(0.3)
        checkpoint, note = served(log)
        assert log.size() == 6
        assert checkpoint.size == 2 and check_cosignature(note, witness_signer.verifier)
    finally:
        log.close()
        sock.close()
        state.close()


def _store_cosignature(log: Log, size: int, witness: Signer) -> str:
    """``witness``'s cosignature of the log's checkpoint of ``size``, stored as the log's
    witnessing thread stores one; the line is returned."""
    note = log.checkpoint_at(size)
    assert note is not None
    line = cosign(Note.parse(note).text, witness, int(time.time())).line()
    with log.store.write() as db:
        db.add_cosignature(size, witness.verifier.to_text(), line)
    return line


def test_a_removed_witness_counts_for_no_quorum_and_is_not_served(settings: Settings) -> None:
    """A witness removed from the configuration (its key may have leaked) keeps its stored
    cosignatures, but only the witnesses configured now count towards the quorum: checkpoint
    2 cosigned by the removed one and one current witness is not served with a quorum of 2
    (checkpoint 1, which both current witnesses cosigned, is); once the second current
    witness cosigns checkpoint 2, it is served, without the removed witness's line."""
    current = [Signer.generate(f"witness.test/w{i}", COSIGNATURE_V1) for i in (1, 2)]
    removed = Signer.generate("witness.test/gone", COSIGNATURE_V1)
    # Nobody listens on port 9: the witnessing threads fail and back off; the test stores
    # the cosignatures itself.
    endpoints = [WitnessEndpoint("http://127.0.0.1:9", w.verifier) for w in current]
    log = witnessed_log(settings, endpoints, quorum=2, timeout=0.5)
    try:
        log.append(deposit("d0", member(1), 30))
        log.append(deposit("d1", member(1), 30))
        for witness in current:
            _store_cosignature(log, 1, witness)
        removed_line = _store_cosignature(log, 2, removed)
        _store_cosignature(log, 2, current[0])
        with TestClient(log_app(log)) as client:
            text = client.get("/v1/log/checkpoint").text
        note = Note.parse(text)
        assert Checkpoint.parse_body(note.text).size == 1, text
        assert all(check_cosignature(note, w.verifier) is not None for w in current)
        assert check_cosignature(note, removed.verifier) is None
        _store_cosignature(log, 2, current[1])  # now two current witnesses cosigned size 2
        text = log.checkpoint()  # read afresh (the route may serve what it read just now)
        note = Note.parse(text)
        assert Checkpoint.parse_body(note.text).size == 2, text
        assert all(check_cosignature(note, w.verifier) is not None for w in current)
        assert removed_line not in text and len(note.signatures) == 3
    finally:
        log.close()


def test_witness_configuration_from_the_environment(witness_signer: Signer) -> None:
    key = witness_signer.verifier.to_text()
    other = Signer.generate("witness.test/w2", COSIGNATURE_V1).verifier.to_text()
    env = {
        "TIMEBANK_WITNESSES": f"url=http://127.0.0.1:8001 key={key};\n url=https://w.example/x key={other}\n",
        "TIMEBANK_WITNESS_QUORUM": "2",
    }
    settings = Settings.from_env(env)
    assert [w.url for w in settings.witnesses] == ["http://127.0.0.1:8001", "https://w.example/x"]
    assert settings.witness_quorum == 2
    assert Settings.from_env({}).witnesses == ()
    log_key = Signer.generate("log.test/x").verifier.to_text()
    for bad in (
        {"TIMEBANK_WITNESSES": f"url=http://x key={key}", "TIMEBANK_WITNESS_QUORUM": "2"},
        {"TIMEBANK_WITNESSES": f"url=ftp://x key={key}"},
        {"TIMEBANK_WITNESSES": f"url=http://x key={log_key}"},
        {"TIMEBANK_WITNESSES": "url=http://x"},
        {"TIMEBANK_WITNESSES": f"url=http://x key={key}; url=http://y key={key}"},
        {"TIMEBANK_WITNESSES": f"url=http://x key={key} extra=1"},
        {"TIMEBANK_WITNESS_QUORUM": "-1"},
    ):
        with pytest.raises(ConfigError):
            Settings.from_env(bad)


def test_a_log_that_floods_the_witness_is_slowed_down(
    tmp_path: Path, log_signer: Signer, witness_signer: Signer
) -> None:
    from audit.witness import BURST, RATE_PER_SECOND

    now = [1_000_000.0]
    state = WitnessState(tmp_path / "witness")
    witness = Witness(
        witness_signer, parse_log_keys([log_signer.verifier.to_text()]), state, lambda: now[0]
    )
    log = FakeLog(log_signer)
    log.grow(5)
    try:
        with TestClient(create_witness_app(witness)) as client:
            answers = [post(client, log.request(0)).status_code for _ in range(BURST)]
            assert answers == [200] + [409] * (BURST - 1)  # processed: cosigned, then conflicts
            flooded = post(client, log.request(5))
            assert flooded.status_code == 429
            assert flooded.headers["content-type"] == "application/problem+json"
            assert int(flooded.headers["retry-after"]) >= 1
            # a stranger's signature is refused as before and spends nothing of the budget
            stranger = FakeLog(Signer.generate(ORIGIN))
            stranger.grow(5)
            assert post(client, stranger.request(0)).status_code == 403
            now[0] += 1.5 / RATE_PER_SECOND  # a little more than one request's worth of time
            assert post(client, log.request(5)).status_code == 200
            assert post(client, log.request(5)).status_code == 429
    finally:
        state.close()
