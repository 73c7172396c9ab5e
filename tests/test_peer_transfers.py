"""Transfers between two district banks (通存通兑, docs/federation.md#transfers): two whole
apps on loopback over real HTTP, each with its own database (SQLite and PostgreSQL) and keys.

A member of 鼓楼 sends minutes to a member of 秦淮: both logs hold their half and verify, each
side's tlog-proof checks out against the other's key; the same request again credits once; an
unknown receiving member is refused and the minutes come back; a forged proof and an unsigned
request are refused next to the genuine, signed ones accepted.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from accounts.model import Role
from accounts.service import AccountsService, PersonalInput
from api.app import create_app
from federation.identity import Identities
from federation.peers import Peer, Peers
from federation.signing import sign_request
from federation.storage import PeerStore
from federation.transfers import PATH, commitment, open_proof
from ledger.entry import Entry, EntryRequest, Posting
from ledger.kinds import TransferIn, TransferOut
from ledger.log import Log
from ledger.note import TlogProof
from tests.conftest import make_database
from tests.test_peer_witnessing import Bank, _bank, serve
from tests.test_peers import run

PASSWORD = "correct horse battery"


def _add_peer(at: Bank, name: str, peer: Bank, witness: bool = False) -> None:
    """A peer, without a witness key unless ``witness``: then the peer cosigns our
    checkpoints and, with a quorum, our log serves only cosigned ones."""
    Peers(PeerStore(at.settings.database_url), at.settings.log_origin).add(
        name,
        peer.url,
        peer.settings.log_origin,
        peer.log_signer.verifier.to_text(),
        peer.request_signer.verifier.to_text(),
        "op",
        witness_key=peer.witness_signer.verifier.to_text() if witness else None,
    )


@dataclasses.dataclass
class Side:
    bank: Bank
    log: Log
    member_id: str
    account: str
    token: str
    accounts: AccountsService
    admin_user_id: str
    org_id: str


def _side(bank: Bank, name: str, minutes: int) -> Side:
    assert bank.app is not None
    accounts: AccountsService = bank.app.state.accounts
    log: Log = bank.app.state.log
    accounts.create_bank(name, name)
    admin = accounts.create_user(name, f"{name}-admin", Role.BANK_ADMIN, None, PASSWORD)
    principal = accounts.principal_for_user(admin.user.id)
    org = accounts.create_org(principal, "Centre", "community_centre")
    new = accounts.register_member(
        principal,
        org.id,
        PersonalInput(name="王秀英", phone="13800002222"),
        volunteer=True,
        elder=False,
        username=f"{name}-vol",
        password=PASSWORD,
    )
    account = new.member.ledger_account
    if minutes:
        log.append(
            EntryRequest(
                "deposit",
                f"seed-{name}",
                (Posting(f"{name}:issuance", -minutes), Posting(account, minutes)),
                {"record": "seed", "minutes": minutes, "weight": 1000},
            )
        )
    token = accounts.issue_token(f"{name}-vol").token
    return Side(bank, log, new.member.id, account, token, accounts, admin.user.id, org.id)


@pytest.fixture
def pair(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[Side]]:
    """鼓楼 (120 minutes for its member) and 秦淮, each the other's peer, both serving."""
    yield from _pair(backend, request, tmp_path, witnessed=False)


@pytest.fixture
def witnessed_pair(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[list[Side]]:
    """The same, each the other's witness with a quorum of 1: a log serves a checkpoint (and
    so a tlog-proof) only once the peer has cosigned it."""
    yield from _pair(backend, request, tmp_path, witnessed=True)


def _pair(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, witnessed: bool
) -> Iterator[list[Side]]:
    with ExitStack() as stack:
        made = []
        for name in ("gulou", "qinhuai"):
            (tmp_path / f"db-{name}").mkdir()
            url = stack.enter_context(
                contextmanager(make_database)(backend, request, tmp_path / f"db-{name}")
            )
            made.append(_bank(name, url, tmp_path))
        h, r = made
        _add_peer(h, "qinhuai", r, witnessed)
        _add_peer(r, "gulou", h, witnessed)
        for bank in (r, h):
            settings = dataclasses.replace(bank.settings, witness_quorum=1 if witnessed else 0)
            bank.app = create_app(settings)
            stack.enter_context(serve(bank.app, bank.sock))
        yield [_side(h, "gulou", 120), _side(r, "qinhuai", 0)]


def send(h: Side, to_member_id: str, minutes: int, key: str) -> tuple[int, dict[str, Any]]:
    body = {
        "from_member_id": h.member_id,
        "peer": "qinhuai",
        "to_member_id": to_member_id,
        "minutes": minutes,
    }
    status, text = http_json(h.bank.url + "/v1/peer-transfers", body, h.token, key)
    return status, json.loads(text)


def http_json(url: str, body: dict[str, Any], token: str, key: str) -> tuple[int, str]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {token}",
            "Idempotency-Key": key,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code), exc.read().decode()


def _peer(at: Side, name: str) -> Peer:
    """The peer ``name`` as ``at`` registered it (its log key and origin)."""
    peers = Peers(PeerStore(at.bank.settings.database_url), at.bank.settings.log_origin)
    return next(p for p in peers.list() if p.name == name)


def test_a_transfer_settles_on_both_sides_and_a_retry_credits_once(pair: list[Side]) -> None:
    h, r = pair
    status, outcome = send(h, r.member_id, 45, "move-1")
    assert status == 201, outcome
    assert outcome["status"] == "settled"
    assert h.log.balance(h.account) == 75
    assert h.log.balance("gulou:due_to:qinhuai") == 45
    assert r.log.balance(r.account) == 45
    assert r.log.balance("qinhuai:due_from:gulou") == -45
    # each side's entry is proven by the other's tlog-proof, checked against the other's key
    out = h.log.entry(outcome["out_seq"])
    credit = r.log.entry(outcome["peer_index"])
    assert out is not None and credit is not None
    assert TransferOut.from_entry(out.request).minutes == 45
    quoted = TransferIn.from_entry(credit.request)
    assert (quoted.from_origin, quoted.from_index) == ("gulou.timebank.test/log", out.seq)
    assert open_proof(r.log.receipt(credit.seq), _peer(h, "qinhuai"), "proof") == credit
    assert open_proof(h.log.receipt(out.seq), _peer(r, "gulou"), "proof") == out
    # the same request again (a client that lost the answer): the same transfer, no new credit
    again_status, again = send(h, r.member_id, 45, "move-1")
    assert again_status == 201 and again == outcome
    assert (h.log.balance(h.account), r.log.balance(r.account)) == (75, 45)
    # a new key is a new transfer
    status, second = send(h, r.member_id, 10, "move-2")
    assert status == 201 and second["status"] == "settled"
    assert (h.log.balance(h.account), r.log.balance(r.account)) == (65, 55)
    assert h.log.verify().ok and r.log.verify().ok
    kinds = [h.log.entry(s).request.kind for s in range(h.log.size())]  # type: ignore[union-attr]
    assert kinds.count("transfer_out") == 2 and kinds.count("transfer_settled") == 2


def test_a_refused_transfer_is_voided_and_the_minutes_come_back(pair: list[Side]) -> None:
    h, r = pair
    status, outcome = send(h, "no-such-member", 30, "move-3")
    assert status == 201, outcome
    assert (outcome["status"], outcome["reason"]) == ("void", "unknown-member")
    assert h.log.balance(h.account) == 120
    assert h.log.balance("gulou:due_to:qinhuai") == 0
    assert r.log.balance("qinhuai:due_from:gulou") == 0
    again_status, again = send(h, "no-such-member", 30, "move-3")
    assert (again_status, again) == (201, outcome)
    assert h.log.balance(h.account) == 120
    # next to it, the same member sending to an existing member is credited
    status, ok = send(h, r.member_id, 30, "move-4")
    assert (status, ok["status"]) == (201, "settled")
    assert r.log.balance(r.account) == 30


def delivery(h: Side, proof: str, to_member_id: str) -> bytes:
    """The body 鼓楼's code would send for the transfer_out ``proof`` proves: the proof, the
    member in 秦淮, and who sends (identity commitments, federation.identity)."""
    parsed = TlogProof.parse(proof)
    assert parsed.extra is not None
    out = TransferOut.from_entry(Entry.from_leaf(parsed.extra).request)
    sender = Identities(h.accounts).sender(h.log.origin, out.transfer, out.member)
    body = {"proof": proof, "to_member_id": to_member_id, "sender": sender.to_json()}
    return json.dumps(body).encode()


def _deliver(h: Side, r: Side, body: bytes, signed: bool = True) -> tuple[int, str]:
    headers = {"Content-Type": "application/json"}
    if signed:
        headers |= sign_request(h.bank.request_signer, "POST", PATH, body)
    request = urllib.request.Request(r.bank.url + PATH, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code), exc.read().decode()


def test_a_forged_proof_or_an_unsigned_delivery_is_refused_next_to_the_genuine_one(
    pair: list[Side],
) -> None:
    h, r = pair
    # a transfer_out appended in 鼓楼 by its own code, not yet delivered
    out = TransferOut(
        "ab" * 16,
        h.account,
        "qinhuai",
        20,
        "qinhuai.timebank.test/log",
        commitment("ab" * 16, r.member_id),
        "2099-01-01T00:00:00.000000Z",
        "p",
    )
    seq = h.log.append(out.to_request()).seq
    genuine = h.log.receipt(seq)
    # forged: the same proof with the entry's minutes raised to 2000
    proof = TlogProof.parse(genuine)
    assert proof.extra is not None
    forged_leaf = proof.extra.replace(b'"minutes":20', b'"minutes":2000').replace(
        b'"minutes":-20', b'"minutes":-2000'
    )
    forged = dataclasses.replace(proof, extra=forged_leaf).render()
    for text in (forged, genuine[:-20] + "A" * 20):
        body = json.dumps(
            {
                "proof": text,
                "to_member_id": r.member_id,
                "sender": json.loads(delivery(h, genuine, r.member_id))["sender"],
            }
        ).encode()
        status, answer = _deliver(h, r, body)
        assert status == 422, answer
        assert json.loads(answer)["type"].endswith("bad-transfer")
    body = delivery(h, genuine, r.member_id)
    status, answer = _deliver(h, r, body, signed=False)
    assert status == 401, answer
    assert r.log.balance(r.account) == 0
    status, answer = _deliver(h, r, body)
    assert status == 200, answer
    assert r.log.balance(r.account) == 20
    # the same delivery again: the same proof, no second credit
    again_status, again = _deliver(h, r, body)
    assert (again_status, again) == (200, answer)
    assert r.log.balance(r.account) == 20


def test_a_refusal_stands_when_the_member_is_approved_later(pair: list[Side]) -> None:
    """秦淮 keeps its refusal in its log (transfer_refused, under the id its transfer_in would
    have had): the same delivery again, once the member is active, is refused again and credits
    nothing, as 鼓楼 has voided it; a new transfer to the now active member settles (she is
    the sender's mother, confirmed by 秦淮's staff)."""
    h, r = pair
    late = r.accounts.self_register(
        "qinhuai", r.org_id, "late", PASSWORD, PersonalInput(name="郑新", phone="13800001010")
    )
    assert late is not None
    status, outcome = send(h, late.member.id, 25, "move-5")
    assert (status, outcome["status"], outcome["reason"]) == (201, "void", "unknown-member")
    admin = r.accounts.principal_for_user(r.admin_user_id)
    r.accounts.decide_registration(admin, late.member.id, True, None)
    link = r.accounts.declare_relative(admin, late.member.id, r.member_id, "child")
    r.accounts.decide_relative(admin, link.id, True)
    account = late.member.ledger_account
    proof = h.log.receipt(outcome["out_seq"])
    body = delivery(h, proof, late.member.id)
    status, answer = _deliver(h, r, body)
    assert status == 422 and json.loads(answer)["type"].endswith("unknown-member"), answer
    assert r.log.balance(account) == 0
    assert h.log.balance(h.account) == 120
    refused = r.log.entries_by_id([f"transfer-in:gulou:{outcome['out_seq']}"])
    assert [e.request.kind for e in refused.values()] == ["transfer_refused"]
    status, settled = send(h, late.member.id, 25, "move-6")
    assert (status, settled["status"]) == (201, "settled")
    assert r.log.balance(account) == 25
    assert r.log.verify().ok


def test_a_transfer_held_while_the_peer_is_down_is_finished_by_the_retry_command(
    pair: list[Side], tmp_path: Path
) -> None:
    """秦淮 unreachable (鼓楼 has it at a port nobody listens on): the minutes stay held and the
    member gets 503; a delivery whose answer was lost credits 秦淮; once the peer is reachable,
    ``timebank peers transfers retry`` delivers again, gets the same proof and settles: one
    credit in 秦淮, one settlement in 鼓楼."""
    h, r = pair
    peers = Peers(PeerStore(h.bank.settings.database_url), h.bank.settings.log_origin)
    real = next(p for p in peers.list() if p.name == "qinhuai")
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead_url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    closed.close()

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

    register(dead_url)
    status, problem = send(h, r.member_id, 40, "move-7")
    assert status == 503 and problem["type"].endswith("peer-unavailable"), problem
    assert (h.log.balance(h.account), h.log.balance("gulou:due_to:qinhuai")) == (80, 40)
    assert r.log.balance(r.account) == 0
    retried = run(h.bank.env, "peers", "transfers", "retry")
    assert retried.returncode == 1 and " pending " in retried.stdout, retried
    # a delivery whose answer was lost (鼓楼 killed after sending, say): 秦淮 has credited
    held = h.log.entries_by_id(["transfer-out:" + retried.stdout.split()[0]])
    (out,) = held.values()
    body = delivery(h, h.log.receipt(out.seq), r.member_id)
    assert _deliver(h, r, body)[0] == 200
    assert r.log.balance(r.account) == 40
    register(real.url)
    retried = run(h.bank.env, "peers", "transfers", "retry")
    assert retried.returncode == 0, retried.stderr
    assert "qinhuai  40 min  settled" in retried.stdout
    assert (h.log.balance(h.account), r.log.balance(r.account)) == (80, 40)
    again = run(h.bank.env, "peers", "transfers", "retry")
    assert (again.returncode, again.stdout) == (0, "no transfer is held\n")
    # the member's own retry now reads the settled transfer back
    status, outcome = send(h, r.member_id, 40, "move-7")
    assert (status, outcome["status"]) == (201, "settled")
    assert r.log.balance(r.account) == 40
    assert h.log.verify().ok and r.log.verify().ok


def test_with_a_witness_quorum_a_transfer_settles_once_the_checkpoints_are_cosigned(
    witnessed_pair: list[Side],
) -> None:
    """Each log serves only checkpoints its peer cosigned, so a fresh entry has no tlog-proof
    at first: the transfer answers 503 (held) until both entries are covered, and the member's
    retries with the same key then settle it, one credit."""
    h, r = witnessed_pair
    answers = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status, outcome = send(h, r.member_id, 15, "move-8")
        answers.append(status)
        if status != 503:
            break
        time.sleep(0.2)
    assert answers[-1] == 201 and outcome["status"] == "settled", (answers, outcome)
    assert set(answers[:-1]) <= {503}
    assert (h.log.balance(h.account), r.log.balance(r.account)) == (105, 15)
    assert h.log.balance("gulou:due_to:qinhuai") == 15
    assert r.log.balance("qinhuai:due_from:gulou") == -15
