"""The retry worker and the delivering side of transfers (docs/federation.md#the-retry-worker):
two whole deployments on loopback over real HTTP (the harness of tests/test_peer_transfers.py,
SQLite and PostgreSQL).

The worker finishes held transfers by itself, pausing longer and longer for a peer that is
down and visiting only the transfers still open; one process never delivers a transfer twice
at once, and two processes (or the operator's command) delivering the same transfers at the
same moment credit each once; a hold past its expiry stays held while the peer is silent, is
voided when the peer answers ``expired`` and settled when the peer had credited it in time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import socket
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest
from sqlalchemy import update

from federation.peers import Peer, Peers
from federation.storage import PeerStore
from federation.transfer_storage import TransferStore, federation_transfers
from federation.transfer_worker import TransferWorker, retry_interval
from federation.transfers import Delivering, Outcome, Post, Sending, transfer_name, utc_clock
from ledger.config import ConfigError
from tests.test_peer_transfers import (  # noqa: F401 (pair: fixture)
    Side,
    _deliver,
    delivery,
    pair,
    send,
)
from tests.test_peers import TIMEBANK


def _peers(h: Side) -> Peers:
    return Peers(PeerStore(h.bank.settings.database_url), h.bank.settings.log_origin)


def _register(h: Side, url: str) -> None:
    """鼓楼 knows 秦淮 at ``url`` from now on (a dead port: 秦淮 is down for it)."""
    peers = _peers(h)
    real = next(p for p in peers.list() if p.name == "qinhuai")
    peers.remove("qinhuai")
    peers.add(
        "qinhuai", url, real.log_origin, real.log_key.to_text(), real.request_key.to_text(), "op"
    )


def _dead_url() -> str:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{closed.getsockname()[1]}"


def _hold(h: Side, r: Side, keys: list[str], minutes: int = 10) -> str:
    """Transfers held while 秦淮 is unreachable (503 each); returns 秦淮's real URL."""
    real_url = r.bank.url
    _register(h, _dead_url())
    for key in keys:
        status, problem = send(h, r.member_id, minutes, key)
        assert status == 503 and problem["type"].endswith("peer-unavailable"), problem
    return real_url


def _transfer(h: Side, key: str) -> str:
    """The transfer a member's ``Idempotency-Key`` names (as ``api.care_routes.entry_key``)."""
    return transfer_name(h.account, hashlib.sha256(key.encode()).hexdigest()[:24])


def _sending(h: Side) -> Sending:
    assert h.bank.app is not None
    sending: Sending = h.bank.app.state.transfers_sending
    return sending


def _store(h: Side) -> TransferStore:
    return _sending(h).store


def _kinds(side: Side) -> list[str]:
    return [side.log.entry(s).request.kind for s in range(side.log.size())]  # type: ignore[union-attr]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_worker_finishes_held_transfers_and_pauses_longer_for_a_peer_that_is_down(
    pair: list[Side],  # noqa: F811
) -> None:
    h, r = pair
    real_url = _hold(h, r, ["w1", "w2", "w3"])
    assert len(_store(h).open()) == 3
    clock = Clock()
    worker = TransferWorker(_sending(h), every=0.1, clock=clock)
    threading.Event().wait(0.2)  # older than one interval: no member's request is on them
    # round 1: the first transfer fails to reach 秦淮; its two others are not tried
    (first,) = worker.run_once()
    assert (first.status, first.peer_failed) == ("pending", True), first
    assert "did not answer" in (first.reason or "")
    assert worker.failures == {"qinhuai": 1}
    assert worker.run_once() == []  # paused: nothing tried
    pauses, tried = [], [first.transfer]
    for failed in (2, 3, 4):
        clock.now = worker.next_try["qinhuai"]
        before = clock.now
        (again,) = worker.run_once()
        assert again.status == "pending" and worker.failures == {"qinhuai": failed}
        pauses.append(worker.next_try["qinhuai"] - before)
        tried.append(again.transfer)
    assert pauses == pytest.approx([0.15, 0.35, 0.75])  # doubling, from one interval
    assert len(set(tried[:3])) == 3 and tried[3] == tried[0]  # the least recently tried first
    assert (h.log.balance(h.account), r.log.balance(r.account)) == (90, 0)
    _register(h, real_url)
    clock.now = worker.next_try["qinhuai"]
    done = worker.run_once()
    assert sorted(o.status for o in done) == ["settled"] * 3
    assert worker.failures == {} and worker.next_try == {}
    assert (h.log.balance(h.account), r.log.balance(r.account)) == (90, 30)
    assert r.log.balance("qinhuai:due_from:gulou") == -30
    # closed transfers are no longer visited: nothing open, nothing delivered
    assert _store(h).open() == [] and _store(h).statuses() == {"settled": 3}
    assert worker.run_once() == []
    assert _kinds(r).count("transfer_in") == 3
    assert h.log.verify().ok and r.log.verify().ok


def test_one_process_never_delivers_a_transfer_twice_at_once(pair: list[Side]) -> None:  # noqa: F811
    """While a member's request delivers a transfer, the worker of the same process skips it
    (and a second request waits for the first): one delivery reaches 秦淮."""
    h, r = pair
    real_url = _hold(h, r, ["once"])
    _register(h, real_url)
    sending = _sending(h)
    inside, release, posts = threading.Event(), threading.Event(), []
    real_post = sending.post

    def slow_post(peer: Peer, path: str, body: bytes) -> tuple[int, dict[str, object]]:
        posts.append(body)
        inside.set()
        release.wait(20)
        return real_post(peer, path, body)

    sending.post = slow_post
    try:
        status: list[tuple[int, dict[str, object]]] = []
        member = threading.Thread(target=lambda: status.append(send(h, r.member_id, 10, "once")))
        member.start()
        assert inside.wait(20)
        worker = TransferWorker(sending, every=0.1)
        threading.Event().wait(0.2)
        assert worker.run_once() == []  # busy in this process: skipped, not delivered
        (row,) = _store(h).open()
        assert sending.revisit(row, wait=False) is None
        release.set()
        member.join(30)
    finally:
        sending.post = real_post
    assert status[0][0] == 201 and status[0][1]["status"] == "settled", status
    assert len(posts) == 1
    assert (h.log.balance(h.account), r.log.balance(r.account)) == (110, 10)


def _barrier_post(post: Post, barrier: threading.Barrier) -> Post:
    def post_together(peer: Peer, path: str, body: bytes) -> tuple[int, dict[str, object]]:
        barrier.wait(20)  # both "processes" have checked the log and found it open
        return post(peer, path, body)

    return post_together


def test_two_processes_delivering_the_same_transfer_at_once_credit_it_once(
    pair: list[Side],  # noqa: F811
) -> None:
    """Two deliverers with nothing shared but the database (as two ``serve`` processes, or
    the worker and the operator's command): both find the transfer open, both deliver it at
    the same moment, and each step's derived id makes the second append a replay: one
    transfer_in (or transfer_refused) in 秦淮, one transfer_settled (or void) in 鼓楼, the
    same answer to both."""
    h, r = pair
    real_url = _hold(h, r, ["both-1", "both-2"])
    _register(h, real_url)
    sending = _sending(h)
    refused_key = "both-3"  # a third one, to an unknown member: refused at 秦淮
    _register(h, _dead_url())
    assert send(h, "no-such-member", 10, refused_key)[0] == 503
    _register(h, real_url)
    barrier = threading.Barrier(2)
    twins = [
        Delivering(
            h.log, _peers(h), _barrier_post(sending.post, barrier), sending.store, sending.accounts
        )
        for _ in range(2)
    ]
    for key, to in (
        ("both-1", r.member_id),
        ("both-2", r.member_id),
        (refused_key, "no-such-member"),
    ):
        transfer = _transfer(h, key)
        with ThreadPoolExecutor(2) as pool:
            running = [pool.submit(d.finish, transfer, to) for d in twins]
            results: list[Outcome] = [f.result(timeout=30) for f in running]
        assert len(results) == 2 and results[0] == results[1], results
        assert results[0].status == ("void" if to == "no-such-member" else "settled")
    assert (h.log.balance(h.account), r.log.balance(r.account)) == (100, 20)
    assert _kinds(r).count("transfer_in") == 2 and _kinds(r).count("transfer_refused") == 1
    kinds = _kinds(h)
    assert (kinds.count("transfer_settled"), kinds.count("transfer_void")) == (2, 1)
    assert h.log.verify().ok and r.log.verify().ok


def test_the_operators_command_and_the_worker_at_once_credit_each_transfer_once(
    pair: list[Side],  # noqa: F811
) -> None:
    """Three ``timebank peers transfers retry`` processes started together, and this
    process's worker, all on the same eight held transfers: each credited once."""
    h, r = pair
    keys = [f"many-{i}" for i in range(8)]
    real_url = _hold(h, r, keys, minutes=5)
    _register(h, real_url)
    runs = [
        subprocess.Popen(
            [TIMEBANK, "peers", "transfers", "retry"],
            env=h.bank.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    worker = TransferWorker(_sending(h), every=0.1)
    worked = worker.run_once()
    outs = [run.communicate(timeout=120) for run in runs]
    assert all(run.returncode == 0 for run in runs), outs
    reported = [line for out, _ in outs for line in out.splitlines() if " settled" in line]
    assert len(reported) + len(worked) >= 8  # each transfer delivered by one of them at least
    assert (h.log.balance(h.account), r.log.balance(r.account)) == (80, 40)
    assert _kinds(r).count("transfer_in") == 8
    assert _kinds(h).count("transfer_settled") == 8
    assert _store(h).open() == []
    assert h.log.verify().ok and r.log.verify().ok


def test_a_hold_past_its_expiry_stays_until_the_peer_answers(pair: list[Side]) -> None:  # noqa: F811
    """鼓楼 cannot know on its own whether 秦淮 credited before the expiry, so a hold past it
    stays held while 秦淮 is silent. Once 秦淮 answers: a transfer it never received is refused
    ``expired`` and voided, the minutes back; one it had credited in time (its answer lost)
    settles, never voided."""
    h, r = pair
    real_url = _hold(h, r, ["late-1", "late-2"], minutes=20)
    held = {k: _transfer(h, k) for k in ("late-1", "late-2")}
    # late-2 did reach 秦淮 before the expiry; its answer was lost
    out = h.log.entries_by_id([f"transfer-out:{held['late-2']}"])[f"transfer-out:{held['late-2']}"]
    body = delivery(h, h.log.receipt(out.seq), r.member_id)
    assert _deliver(h, r, body)[0] == 200
    assert r.log.balance(r.account) == 20
    sending = _sending(h)
    assert r.bank.app is not None
    receiving = r.bank.app.state.transfers_receiving

    def later() -> datetime:
        return utc_clock() + timedelta(hours=25)

    sending.clock = receiving.clock = later
    pending = sending.retry()  # 秦淮 still unreachable for 鼓楼
    assert [o.status for o in pending] == ["pending", "pending"]
    assert all("held past its expiry" in (o.reason or "") for o in pending), pending
    assert (h.log.balance(h.account), h.log.balance("gulou:due_to:qinhuai")) == (80, 40)
    _register(h, real_url)
    done = {o.transfer: o for o in sending.retry()}
    assert (done[held["late-1"]].status, done[held["late-1"]].reason) == ("void", "expired")
    assert done[held["late-2"]].status == "settled"
    assert (h.log.balance(h.account), h.log.balance("gulou:due_to:qinhuai")) == (100, 20)
    assert (r.log.balance(r.account), r.log.balance("qinhuai:due_from:gulou")) == (20, -20)
    entries = [h.log.entry(s) for s in range(h.log.size())]
    voids = [e.request.body for e in entries if e and e.request.kind == "transfer_void"]
    assert [v["reason"] for v in voids] == ["expired"]
    assert sending.retry() == []


def test_a_transfer_refused_for_want_of_minutes_is_not_left_open(pair: list[Side]) -> None:  # noqa: F811
    h, r = pair
    status, problem = send(h, r.member_id, 500, "too-much")
    assert status == 422 and problem["type"].endswith("insufficient-balance"), problem
    store = _store(h)
    assert store.open() == [] and store.statuses() == {"unsent": 1}
    # a retry of the same transfer (the same key, once the member has the minutes) reopens it
    transfer = _transfer(h, "too-much")
    store.remember(transfer, "qinhuai", r.member_id)
    (row,) = store.open()
    assert row.transfer == transfer
    # a row whose request died before its hold: left open for a while (the request may still
    # be running), taken as unsent after 10 minutes
    sending = _sending(h)
    assert sending.revisit(row, wait=True) is None and store.open() == [row]
    old = dataclasses.replace(row, created_at=row.created_at - timedelta(minutes=11))
    assert sending.revisit(old, wait=True) is None
    assert store.open() == [] and store.statuses() == {"unsent": 1}
    assert h.log.balance(h.account) == 120


def test_the_retry_interval_setting() -> None:
    assert retry_interval({}) == 0  # a bare app: no worker (timebank serve sets 30)
    assert retry_interval({"TIMEBANK_TRANSFER_RETRY_SECONDS": "30"}) == 30
    assert retry_interval({"TIMEBANK_TRANSFER_RETRY_SECONDS": "0"}) == 0
    for bad in ("soon", "-1", "0.01", "100000"):
        with pytest.raises(ConfigError, match="TIMEBANK_TRANSFER_RETRY_SECONDS"):
            retry_interval({"TIMEBANK_TRANSFER_RETRY_SECONDS": bad})


def test_transfers_open_from_before_the_migration_are_marked_without_a_delivery(
    pair: list[Side],  # noqa: F811
) -> None:
    """Migration 0021 leaves every earlier row ``open``: the worker's first round finds them
    closed in the log and marks them so, without posting anything to 秦淮."""
    h, r = pair
    assert send(h, r.member_id, 10, "old-1")[0] == 201
    assert send(h, "no-such-member", 10, "old-2")[0] == 201
    store = _store(h)
    assert store.statuses() == {"settled": 1, "void": 1}
    with store.database.writer.begin() as conn:  # as 0021 left the rows of before
        conn.execute(update(federation_transfers).values(status="open"))
    sending, posts = _sending(h), []
    real_post = sending.post

    def counted(peer: Peer, path: str, body: bytes) -> tuple[int, dict[str, object]]:
        posts.append(body)
        return real_post(peer, path, body)

    sending.post = counted
    try:
        threading.Event().wait(0.2)
        assert TransferWorker(sending, every=0.1).run_once() == []
    finally:
        sending.post = real_post
    assert posts == []
    assert store.statuses() == {"settled": 1, "void": 1} and store.open() == []
    assert (h.log.balance(h.account), r.log.balance(r.account)) == (110, 10)


def test_a_peer_down_for_days_keeps_its_longest_pause() -> None:
    """Thousands of failed rounds in a row (a peer down for weeks at a 1 s interval) keep the
    pause at its ceiling, 16 intervals; the arithmetic never overflows."""
    worker = TransferWorker(None, every=1.0)  # type: ignore[arg-type]  # counting only
    down = Outcome("ab" * 16, "pending", 1, 5, "qinhuai", reason="down", peer_failed=True)
    for _ in range(3000):
        worker._count("qinhuai", down, 0.0)
    assert worker.failures == {"qinhuai": 3000} and worker.next_try == {"qinhuai": 16.0}
