"""Monthly settlement between two peer banks and ``timebank audit clearing``
(docs/federation.md#settlement): two whole apps on loopback over real HTTP, each with its own
database and keys, the logs' clock set in last month while members transfer, then now.

Transfers both ways (one refused) then ``timebank peers settle`` on 鼓楼: both logs hold the
same document signed by both banks, the figures are the two logs' own; a retry appends
nothing; clearing passes from the two public logs. A proposal with a wrong figure is refused
naming it, next to the right one accepted; a second different proposal is a conflict. A 鼓楼
whose log was rebuilt with one transfer_out changed makes clearing fail naming that entry.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from api.app import create_app
from federation.peers import Peer, Peers
from federation.settlement import PATH, Settling
from federation.signing import sign_request
from federation.storage import PeerStore
from federation.transfers import log_time
from federation.witness_storage import WitnessedStore
from federation.witnessing import with_peer_witnesses
from ledger.entry import EntryRequest, Posting
from ledger.kinds import Settlement
from ledger.kinds.settlement import BankSignature, SettlementDocument
from ledger.log import Log
from ledger.note import Checkpoint, sign_checkpoint
from tests.conftest import make_database
from tests.test_peer_transfers import Side, _add_peer, _peer, _side, http_json
from tests.test_peer_witnessing import Bank, _bank, serve
from tests.test_peers import run
from tests.transfer_servers import wait_until

SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # PG: the other two


class Clock:
    """The logs' clock: ``back`` before now (last month while members transfer), then now."""

    def __init__(self, back: timedelta) -> None:
        self.back = back

    def __call__(self) -> str:
        return log_time(datetime.now(UTC) - self.back)


def _last_month() -> tuple[str, timedelta]:
    """Last month (YYYY-MM) and how far back its 11th, noon, is from now."""
    now = datetime.now(UTC)
    first = (now.replace(day=1) - timedelta(days=1)).replace(day=11, hour=12, minute=0)
    return first.strftime("%Y-%m"), now - first


@dataclasses.dataclass
class World:
    h: Side
    r: Side
    clock: Clock
    month: str


@pytest.fixture
def world(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    month, back = _last_month()
    clock = Clock(back)
    with ExitStack() as stack:
        made: list[Bank] = []
        for name in ("gulou", "qinhuai"):
            (tmp_path / f"db-{name}").mkdir()
            url = stack.enter_context(
                contextmanager(make_database)(backend, request, tmp_path / f"db-{name}")
            )
            made.append(_bank(name, url, tmp_path))
        h, r = made
        _add_peer(h, "qinhuai", r)
        _add_peer(r, "gulou", h)
        for bank in (r, h):
            log = Log.open(with_peer_witnesses(bank.settings), clock=clock)
            stack.callback(log.close)
            bank.app = create_app(bank.settings, log)
            stack.enter_context(serve(bank.app, bank.sock))
        yield World(_side(h, "gulou", 120), _side(r, "qinhuai", 0), clock, month)


def transfer(frm: Side, peer: str, to: Side | str, minutes: int, key: str) -> dict[str, Any]:
    body = {
        "from_member_id": frm.member_id,
        "peer": peer,
        "to_member_id": to if isinstance(to, str) else to.member_id,
        "minutes": minutes,
    }
    status, text = http_json(frm.bank.url + "/v1/peer-transfers", body, frm.token, key)
    assert status == 201, text
    answer: dict[str, Any] = json.loads(text)
    return answer


def _month_of_transfers(w: World) -> None:
    """鼓楼 → 秦淮 45 and 20, one refused (5 to nobody); 秦淮 → 鼓楼 10: last month."""
    assert transfer(w.h, "qinhuai", w.r, 45, "t1")["status"] == "settled"
    assert transfer(w.h, "qinhuai", w.r, 20, "t2")["status"] == "settled"
    assert transfer(w.h, "qinhuai", "nobody", 5, "t3")["status"] == "void"
    assert transfer(w.r, "gulou", w.h, 10, "t4")["status"] == "settled"
    w.clock.back = timedelta(0)  # the month is over: what follows is timed now


def settlements(side: Side) -> list[Settlement]:
    found = []
    for seq in range(side.log.size()):
        entry = side.log.entry(seq)
        assert entry is not None
        if entry.request.kind == "settlement":
            found.append(Settlement.from_entry(entry.request))
    return found


def published(side: Side) -> None:
    """Wait until ``side``'s server publishes its log as the database holds it: entries another
    process appended (the operator's ``timebank peers settle``, ``peers transfers retry``) reach
    its ``GET /v1/log/checkpoint`` within a second, and clearing reads that checkpoint."""
    size = side.log.size()

    def caught_up() -> bool:
        with urllib.request.urlopen(side.bank.url + "/v1/log/checkpoint") as response:
            return int(response.read().decode().splitlines()[1]) >= size

    wait_until(caught_up, 30, f"{side.bank.url} to publish a log of size {size}")


def clearing(w: World, h_url: str | None = None) -> Any:
    """``timebank audit clearing`` of the two banks, once both servers publish what their
    databases hold (``h_url``: another server for 鼓楼's log, taken as it is)."""
    if h_url is None:
        published(w.h)
    published(w.r)
    return run(
        w.h.bank.env,
        "audit",
        "clearing",
        "--url",
        h_url or w.h.bank.url,
        "--key",
        w.h.bank.log_signer.verifier.to_text(),
        "--peer-url",
        w.r.bank.url,
        "--peer-key",
        w.r.bank.log_signer.verifier.to_text(),
    )


def test_a_month_settles_cosigned_in_both_logs_and_clearing_passes(world: World) -> None:
    w = world
    _month_of_transfers(w)
    # refused cleanly, next to the same command succeeding below
    unknown = run(w.h.bank.env, "peers", "settle", "--peer", "jianye", "--month", w.month)
    assert unknown.returncode == 1 and "no peer bank jianye (--peer)" in unknown.stderr
    this_month = datetime.now(UTC).strftime("%Y-%m")
    early = run(w.h.bank.env, "peers", "settle", "--peer", "qinhuai", "--month", this_month)
    assert early.returncode == 1 and "is not over yet" in early.stderr, early.stderr
    assert "(--month)" in early.stderr
    assert settlements(w.h) == [] and settlements(w.r) == []

    done = run(w.h.bank.env, "peers", "settle", "--peer", "qinhuai", "--month", w.month)
    assert done.returncode == 0, done.stderr
    assert "net: gulou.timebank.test/log owes qinhuai.timebank.test/log 55 min" in done.stdout
    (ours,), (theirs,) = settlements(w.h), settlements(w.r)
    assert ours.document == theirs.document and ours.signatures == theirs.signatures
    gulou, qinhuai = ours.document.banks
    assert (gulou.sent, qinhuai.sent, ours.document.net_minutes) == (65, 10, 55)
    assert ours.peer_origin == "qinhuai.timebank.test/log"
    assert theirs.peer_origin == "gulou.timebank.test/log"
    keys = [w.h.bank.request_signer.verifier, w.r.bank.request_signer.verifier]
    assert [s.holds(ours.document, k) for s, k in zip(ours.signatures, keys, strict=True)] == [
        True,
        True,
    ]
    # the balances the document states are the logs' own: due_to mirrors due_from
    assert w.h.log.balance("gulou:due_to:qinhuai") == 65
    assert w.r.log.balance("qinhuai:due_from:gulou") == -65
    assert w.r.log.balance("qinhuai:due_to:gulou") == 10
    assert w.h.log.balance("gulou:due_from:qinhuai") == -10

    again = run(w.h.bank.env, "peers", "settle", "--peer", "qinhuai", "--month", w.month)
    assert again.returncode == 0 and "(already settled)" in again.stdout, again
    assert len(settlements(w.h)) == 1 and len(settlements(w.r)) == 1

    checked = clearing(w)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.startswith("OK: clearing between gulou.timebank.test/log (size "), (
        checked.stdout
    )
    assert "4 transfers checked" in checked.stdout
    assert w.h.log.verify().ok and w.r.log.verify().ok


def _post(w: World, body: bytes, signed: bool = True) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if signed:
        headers |= sign_request(w.h.bank.request_signer, "POST", PATH, body)
    request = urllib.request.Request(w.r.bank.url + PATH, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code), json.loads(exc.read())


def _proposal(w: World, document: SettlementDocument) -> bytes:
    signature = BankSignature.make(w.h.bank.settings.log_origin, document, w.h.bank.request_signer)
    return json.dumps({"document": document.to_json(), "signature": signature.to_json()}).encode()


@SQLITE_ONLY
def test_a_wrong_figure_is_refused_naming_it_next_to_the_right_one(world: World) -> None:
    w = world
    _month_of_transfers(w)
    assert w.h.bank.app is not None
    settling: Settling = w.h.bank.app.state.settling
    right = settling.document(_peer(w.h, "qinhuai"), w.month)
    assert right.net_minutes == 55
    wrong_net = dataclasses.replace(right, net_minutes=60)
    status, problem = _post(w, _proposal(w, wrong_net))
    assert status == 422, problem
    assert problem["type"].endswith("settlement-differs")
    assert problem["field"] == "document.net_minutes"
    assert "the proposal says 60, our recomputation 55" in problem["detail"]
    first, second = right.banks
    more_sent = dataclasses.replace(first, sent=first.sent + 5)
    wrong_sent = SettlementDocument.of(w.month, more_sent, second)
    status, problem = _post(w, _proposal(w, wrong_sent))
    assert (status, problem["field"]) == (422, "document.banks[0].sent"), problem
    assert (
        "gulou.timebank.test/log's sent: the proposal says 70, our recomputation 65"
        in (problem["detail"])
    )
    status, problem = _post(w, _proposal(w, right), signed=False)
    assert status == 401, problem
    assert settlements(w.r) == []

    status, answer = _post(w, _proposal(w, right))
    assert status == 200, answer
    (theirs,) = settlements(w.r)
    assert theirs.document == right
    ours = BankSignature.from_json(answer["signature"], "signature")
    assert ours.holds(right, w.r.bank.request_signer.verifier)
    # the same proposal again: the same answer, nothing appended
    assert _post(w, _proposal(w, right)) == (200, answer)
    assert len(settlements(w.r)) == 1
    # a second, different proposal for the month: a conflict
    status, problem = _post(w, _proposal(w, wrong_net))
    assert status == 409 and problem["type"].endswith("settlement-conflict"), problem
    # 秦淮 holds the settlement, 鼓楼 not yet (as if 鼓楼 died before appending): clearing
    # names 秦淮's entry; 鼓楼's own settle then finishes from it: one entry each, clearing OK
    (entry,) = [i for i, e in enumerate(_ids(w.r)) if e.startswith("settlement:")]
    half = clearing(w)
    assert half.returncode == 1, half.stdout
    assert (
        f"qinhuai.timebank.test/log index {entry}: settlement {w.month}: "
        "gulou.timebank.test/log holds no settlement of this month"
    ) in half.stdout
    done = run(w.h.bank.env, "peers", "settle", "--peer", "qinhuai", "--month", w.month)
    assert done.returncode == 0, done.stderr
    assert f"qinhuai's entry {entry}" in done.stdout
    assert len(settlements(w.h)) == 1 and len(settlements(w.r)) == 1
    assert clearing(w).returncode == 0


def _rewritten(
    w: World,
    tmp_path: Path,
    backend: str,
    request: pytest.FixtureRequest,
    stack: ExitStack,
    change: int,
) -> str:
    """鼓楼's log rebuilt in a new database, every entry at its own time, the transfer_out at
    ``change`` now 40 minutes instead of 45 and 秦淮's signature of the settlement forged;
    served at a new URL with 鼓楼's keys."""
    (tmp_path / "db-rewritten").mkdir()
    url = stack.enter_context(
        contextmanager(make_database)(backend, request, tmp_path / "db-rewritten")
    )
    settings = dataclasses.replace(w.h.bank.settings, database_url=url)
    times: list[str] = []
    log = Log.open(settings, clock=lambda: times[-1])
    for seq in range(w.h.log.size()):
        entry = w.h.log.entry(seq)
        assert entry is not None
        wanted = entry.request
        if seq == change:
            postings = tuple(
                Posting(p.account, 40 if p.minutes > 0 else -40) for p in wanted.postings
            )
            wanted = EntryRequest(wanted.kind, wanted.id, postings, wanted.body)
        if wanted.kind == "settlement":  # and 秦淮's signature on it replaced by a forged one
            forged = dict(wanted.body["signatures"][1], signature="A" * 86 + "==")
            body = {**wanted.body, "signatures": [wanted.body["signatures"][0], forged]}
            wanted = EntryRequest(wanted.kind, wanted.id, (), body)
        times.append(entry.time)
        log.append(wanted)
    log.close()
    rebuilt = _bank("gulou", url, tmp_path)  # gulou's data directory: the same keys
    app = create_app(dataclasses.replace(settings))
    stack.enter_context(serve(app, rebuilt.sock))
    return rebuilt.url


def test_clearing_names_the_entry_of_a_log_rewritten_after_a_transfer(
    world: World, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    w = world
    _month_of_transfers(w)
    assert (
        run(w.h.bank.env, "peers", "settle", "--peer", "qinhuai", "--month", w.month).returncode
        == 0
    )
    assert clearing(w).returncode == 0
    out = w.h.log.entries_by_id([e for e in _ids(w.h) if e.startswith("transfer-out:")][:1])
    (first_out,) = out.values()
    with ExitStack() as stack:
        url = _rewritten(w, tmp_path, backend, request, stack, first_out.seq)
        checked = clearing(w, url)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    lines = checked.stdout.splitlines()
    assert lines[0].startswith("FAILED: "), checked.stdout
    named = f"gulou.timebank.test/log index {first_out.seq}: transfer_out: "
    assert any(line.strip().startswith(named) and "quotes leaf hash" in line for line in lines), (
        checked.stdout
    )
    assert any("cut-off is size" in line for line in lines), checked.stdout
    (settled,) = [i for i, e in enumerate(_ids(w.h)) if e.startswith("settlement:")]
    assert (
        f"gulou.timebank.test/log index {settled}: settlement {w.month}: "
        "qinhuai.timebank.test/log's signature does not verify"
    ) in checked.stdout
    assert any("due_to mirror" in line for line in lines), checked.stdout


@SQLITE_ONLY
def test_a_month_with_a_transfer_still_held_is_not_settled_until_it_closes(
    world: World,
) -> None:
    """秦淮 unreachable: a transfer of last month stays held in 鼓楼; settling that month is
    refused naming it (the figures would not be final), clearing notes it in flight; once
    the retry settles it, the month settles and clearing passes."""
    w = world
    peers = Peers(PeerStore(w.h.bank.settings.database_url), w.h.bank.settings.log_origin)
    real = _peer(w.h, "qinhuai")

    def register(url: str) -> None:
        peers.remove("qinhuai")
        peers.add(
            "qinhuai",
            url,
            real.log_origin,
            real.log_key.to_text(),
            real.request_key.to_text(),
            "op",
        )

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    register(f"http://127.0.0.1:{closed.getsockname()[1]}")
    closed.close()
    body = {
        "from_member_id": w.h.member_id,
        "peer": "qinhuai",
        "to_member_id": w.r.member_id,
        "minutes": 30,
    }
    status, _ = http_json(w.h.bank.url + "/v1/peer-transfers", body, w.h.token, "held")
    assert status == 503
    w.clock.back = timedelta(0)
    register(real.url)
    refused = run(w.h.bank.env, "peers", "settle", "--peer", "qinhuai", "--month", w.month)
    assert refused.returncode == 1, refused.stdout
    assert "is still held: finish it first" in refused.stderr and "(--month)" in refused.stderr
    assert settlements(w.h) == [] and settlements(w.r) == []
    in_flight = clearing(w)
    assert in_flight.returncode == 0, in_flight.stdout
    assert "transfer_out of 30 minutes in flight (not yet answered)" in in_flight.stdout
    assert run(w.h.bank.env, "peers", "transfers", "retry").returncode == 0
    done = run(w.h.bank.env, "peers", "settle", "--peer", "qinhuai", "--month", w.month)
    assert done.returncode == 0, done.stderr
    assert "net: gulou.timebank.test/log owes qinhuai.timebank.test/log 30 min" in done.stdout
    assert clearing(w).returncode == 0


def _ids(side: Side) -> list[str]:
    ids = []
    for seq in range(side.log.size()):
        entry = side.log.entry(seq)
        assert entry is not None
        ids.append(entry.request.id)
    return ids


@SQLITE_ONLY
def test_the_peer_of_a_settlement_is_checked(world: World) -> None:
    """A proposal naming a bank other than the signer's is refused (not-for-us)."""
    w = world
    _month_of_transfers(w)
    assert w.h.bank.app is not None
    settling: Settling = w.h.bank.app.state.settling
    peer: Peer = _peer(w.h, "qinhuai")
    right = settling.document(peer, w.month)
    first, second = right.banks
    other = SettlementDocument.of(
        w.month, dataclasses.replace(first, origin="jianye.timebank.test/log"), second
    )
    status, problem = _post(w, _proposal(w, other))
    assert (status, problem["type"].rsplit(":", 1)[-1]) == (422, "not-for-us"), problem
    assert _post(w, _proposal(w, right))[0] == 200


@SQLITE_ONLY
def test_a_peer_log_other_than_the_one_witnessed_is_refused(world: World) -> None:
    """秦淮, 鼓楼's witness, holds a tree of 鼓楼 that 鼓楼's log key signed with another root than
    the log 鼓楼 serves now (a split view): 秦淮 refuses the settlement (split-view) and appends
    nothing; with the genuine tree of that size cosigned instead, the same proposal is signed."""
    w = world
    _month_of_transfers(w)
    origin = w.h.bank.settings.log_origin
    size = w.h.log.size()
    genuine = w.h.log.checkpoint_at(size)
    assert genuine is not None
    other = Checkpoint(origin, size, hashlib.sha256(b"another history").digest())
    forged = sign_checkpoint(other, w.h.bank.log_signer)
    witnessed = WitnessedStore(w.r.bank.settings.database_url)
    # 秦淮 already holds what it saw of 鼓楼 with the transfers' proofs: swap that for the forgery
    witnessed.replace(origin, size, forged, witnessed.note(origin))
    assert w.h.bank.app is not None
    settling: Settling = w.h.bank.app.state.settling
    right = settling.document(_peer(w.h, "qinhuai"), w.month)
    status, problem = _post(w, _proposal(w, right))
    assert (status, problem["type"].rsplit(":", 1)[-1]) == (422, "split-view"), problem
    assert f"not the one we cosigned at size {size}" in problem["detail"]
    assert settlements(w.r) == []
    witnessed.replace(origin, size, genuine, forged)
    status, answer = _post(w, _proposal(w, right))
    assert status == 200, answer
    assert len(settlements(w.r)) == 1
    witnessed.dispose()
