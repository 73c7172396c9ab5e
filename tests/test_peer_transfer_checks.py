"""The receiving bank's checks on a transfer, and removing a peer with open business
(docs/federation.md#transfers): two whole apps on loopback over real HTTP (the harness of
``tests/test_peer_transfers.py``), SQLite and PostgreSQL.

* A proof against a checkpoint inconsistent with what 秦淮 saw of 鼓楼's log before (鼓楼's
  history rewritten in a second database, served under its keys) is refused as a split view,
  recorded, nothing credited, next to genuine transfers credited.
* A transfer to someone who is neither the sender nor a confirmed relative is refused for good
  (``not-related``) and voided, next to the same sender's transfers to themselves and to
  relatives (confirmed in either bank) settling.
* ``timebank peers remove`` refuses a peer with transfers held or balances not zero, unless
  ``--force`` (audit-trailed), next to a peer with none removed.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from accounts.service import PersonalInput
from api.app import create_app
from audit.trail import AuditTrail
from federation.peers import Peers
from federation.signing import sign_request
from federation.storage import PeerStore
from federation.transfers import PATH, commitment
from federation.witness_storage import WitnessedStore
from ledger.entry import EntryRequest, Posting
from ledger.kinds import TransferOut, TransferRefusal
from ledger.note import Note, Signer, TlogProof, check_cosignature
from tests.conftest import make_database
from tests.test_peer_transfers import (
    PASSWORD,
    Side,
    _deliver,
    _pair,
    _side,
    delivery,
    http_json,
)
from tests.test_peer_witnessing import _bank, serve
from tests.test_peers import run

H_ORIGIN = "gulou.timebank.test/log"


@pytest.fixture
def pair(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[Side]]:
    yield from _pair(backend, request, tmp_path, witnessed=False)


def send_as(
    h: Side, from_id: str, token: str, to_member_id: str, minutes: int, key: str
) -> tuple[int, dict[str, Any]]:
    body = {
        "from_member_id": from_id,
        "peer": "qinhuai",
        "to_member_id": to_member_id,
        "minutes": minutes,
    }
    status, text = http_json(h.bank.url + "/v1/peer-transfers", body, token, key)
    return status, json.loads(text)


def _member(
    side: Side,
    name: str,
    phone: str | None,
    id_number: str | None = None,
    minutes: int = 0,
    login: str | None = None,
) -> tuple[str, str]:
    """A member registered (active) by the bank's admin: (member id, bearer token or '')."""
    admin = side.accounts.principal_for_user(side.admin_user_id)
    new = side.accounts.register_member(
        admin,
        side.org_id,
        PersonalInput(name=name, phone=phone, id_number=id_number),
        volunteer=True,
        elder=False,
        username=login,
        password=PASSWORD if login else None,
    )
    if minutes:
        account = new.member.ledger_account
        side.log.append(
            EntryRequest(
                "deposit",
                f"seed-{new.member.id}",
                (Posting(f"{account.split(':')[0]}:issuance", -minutes), Posting(account, minutes)),
                {"record": "seed", "minutes": minutes, "weight": 1000},
            )
        )
    token = side.accounts.issue_token(login).token if login else ""
    return new.member.id, token


def _relatives(side: Side, a: str, b: str) -> None:
    """``a`` declares ``b`` their parent; the bank's staff confirm it."""
    admin = side.accounts.principal_for_user(side.admin_user_id)
    link = side.accounts.declare_relative(admin, a, b, "parent")
    side.accounts.decide_relative(admin, link.id, True)


# ---------------------------------------------------------------- who may receive


def test_a_transfer_to_someone_unrelated_is_refused_for_good_next_to_one_to_themselves(
    pair: list[Side],
) -> None:
    h, r = pair
    stranger, _ = _member(r, "陈立", "13900003333")
    status, outcome = send_as(h, h.member_id, h.token, stranger, 30, "to-stranger")
    assert status == 201, outcome
    assert (outcome["status"], outcome["reason"]) == ("void", "not-related")
    assert h.log.balance(h.account) == 120
    assert h.log.balance("gulou:due_to:qinhuai") == 0
    refused = r.log.entries_by_id([f"transfer-in:gulou:{outcome['out_seq']}"])
    (entry,) = refused.values()
    assert TransferRefusal.from_entry(entry.request).reason == "not-related"
    # the same delivery again, in Chinese: refused again, naming the field
    body = delivery(h, h.log.receipt(outcome["out_seq"]), stranger)
    headers = {"Content-Type": "application/json", "Accept-Language": "zh-CN"}
    headers |= sign_request(h.bank.request_signer, "POST", PATH, body)
    request = urllib.request.Request(r.bank.url + PATH, data=body, headers=headers, method="POST")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=20)
    with caught.value as answer:
        problem = json.loads(answer.read())
    assert caught.value.code == 422
    assert problem["type"].endswith("not-related")
    assert problem["field"] == "to_member_id"
    assert (
        problem["detail"]
        == problem["detail_zh"]
        == "收款会员既不是转出人本人，也不是其经确认的亲属"
    )
    assert "neither the sender nor a confirmed relative" in problem["detail_en"]
    assert r.log.balance(r.accounts.member(stranger).ledger_account) == 0
    # next to it, the same sender to their own account in 秦淮 (same phone): settled
    status, outcome = send_as(h, h.member_id, h.token, r.member_id, 30, "to-herself")
    assert (status, outcome["status"]) == (201, "settled"), outcome
    assert (h.log.balance(h.account), r.log.balance(r.account)) == (90, 30)


def test_the_id_number_decides_over_the_phone_and_relatives_count_in_either_bank(
    pair: list[Side],
) -> None:
    """Same person: the same ID number when both banks have one, else the same phone. A
    relative: confirmed by 鼓楼's staff (the mother is a member of both banks) or by 秦淮's (the
    sender is a member of both)."""
    h, r = pair
    sender, token = _member(h, "刘芳", "13700001111", "320102198001011238", 200, "liu-h")
    # 秦淮: the same phone but another ID number (her phone, given for her neighbour): refused
    neighbour, _ = _member(r, "赵敏", "13700001111", "320102195505055679")
    status, outcome = send_as(h, sender, token, neighbour, 10, "neighbour")
    assert (status, outcome["status"], outcome["reason"]) == (201, "void", "not-related")
    # 秦淮: the same ID number with a new phone: herself
    herself, _ = _member(r, "刘芳", "15000002222", "320102198001011238")
    status, outcome = send_as(h, sender, token, herself, 10, "herself")
    assert (status, outcome["status"]) == (201, "settled"), outcome
    # her mother, a confirmed relative in 鼓楼, who moved to 秦淮
    mother_h, _ = _member(h, "刘母", None, "32010219500101999X")
    mother_r, _ = _member(r, "刘母", "13900004444", "32010219500101999X")
    status, outcome = send_as(h, sender, token, mother_r, 20, "mother-1")
    assert (status, outcome["reason"]) == (201, "not-related"), outcome
    _relatives(h, sender, mother_h)
    status, outcome = send_as(h, sender, token, mother_r, 20, "mother-2")
    assert (status, outcome["status"]) == (201, "settled"), outcome
    # her father, a member of 秦淮 only, confirmed there as her relative (her own record)
    father, _ = _member(r, "刘父", None, "320102194901018883")
    status, outcome = send_as(h, sender, token, father, 30, "father-1")
    assert (status, outcome["reason"]) == (201, "not-related"), outcome
    _relatives(r, herself, father)
    status, outcome = send_as(h, sender, token, father, 30, "father-2")
    assert (status, outcome["status"]) == (201, "settled"), outcome
    assert h.log.balance("gulou:due_to:qinhuai") == 60
    assert r.log.balance("qinhuai:due_from:gulou") == -60
    assert h.log.verify().ok and r.log.verify().ok


# ---------------------------------------------------------------- split views


def _repoint(r: Side, url: str) -> None:
    """秦淮's operator re-registers 鼓楼 (same keys) at ``url``."""
    peers = Peers(PeerStore(r.bank.settings.database_url), r.bank.settings.log_origin)
    known = next(p for p in peers.list() if p.name == "gulou")
    peers.remove("gulou")
    peers.add(
        "gulou", url, known.log_origin, known.log_key.to_text(), known.request_key.to_text(), "op"
    )


@pytest.mark.parametrize("shape", ["larger", "same-size"])
def test_a_bank_that_rewrote_its_history_is_refused_as_a_split_view(
    pair: list[Side],
    shape: str,
    backend: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    h, r = pair
    status, outcome = send_as(h, h.member_id, h.token, r.member_id, 45, "genuine-1")
    assert (status, outcome["status"]) == (201, "settled"), outcome
    # what 秦淮 now holds of 鼓楼's log: the delivery's checkpoint, cosigned by 秦淮's witness
    seen = WitnessedStore(r.bank.settings.database_url)
    held_note = seen.note(H_ORIGIN)
    assert held_note is not None
    held_size = seen.sizes()[H_ORIGIN]
    assert held_size > outcome["out_seq"]
    assert check_cosignature(Note.parse(held_note), r.bank.witness_signer.verifier) is not None

    with ExitStack() as stack:
        # 鼓楼 rewritten: a second database under the same keys, 500 minutes seeded where
        # the real one had 120, served on another port
        (tmp_path / "db-rewritten").mkdir()
        url = stack.enter_context(
            contextmanager(make_database)(backend, request, tmp_path / "db-rewritten")
        )
        fake = _bank("gulou", url, tmp_path)
        assert fake.log_signer.verifier == h.bank.log_signer.verifier
        fake.app = create_app(fake.settings)
        stack.enter_context(serve(fake.app, fake.sock))
        f = _side(fake, "gulou", 500)
        target = held_size + (2 if shape == "larger" else 0)
        i = 0
        while f.log.size() < target - 1:
            f.log.append(
                EntryRequest(
                    "deposit",
                    f"filler-{i}",
                    (Posting("gulou:issuance", -1), Posting(f.account, 1)),
                    {"record": "seed", "minutes": 1, "weight": 1000},
                )
            )
            i += 1
        out = TransferOut(
            "cd" * 16,
            f.account,
            "qinhuai",
            400,
            "qinhuai.timebank.test/log",
            commitment("cd" * 16, r.member_id),
            "2099-01-01T00:00:00.000000Z",
            "p",
        )
        seq = f.log.append(out.to_request()).seq
        proof = f.log.receipt(seq)
        assert TlogProof.parse(proof).index == seq
        assert f.log.size() == target
        _repoint(r, fake.url)
        r_size = r.log.size()
        status, answer = _deliver(f, r, delivery(f, proof, r.member_id))
        assert status == 422, answer
        problem = json.loads(answer)
        assert problem["type"].endswith("split-view"), problem
        assert problem["field"] == "proof"
        assert r.log.balance(r.account) == 45
        assert r.log.size() == r_size  # nothing appended
        assert seen.note(H_ORIGIN) == held_note  # what 秦淮 holds did not move
    views = seen.split_views()[H_ORIGIN]
    reason = "same size, different root" if shape == "same-size" else "bad consistency proof"
    assert views.count == 1 and views.last_reason.startswith(reason), views
    trail = AuditTrail(r.bank.settings.database_url)
    try:
        events = [
            e
            for e in trail.events(bank_id=None, limit=1000)
            if e.action.startswith("federation split view")
        ]
    finally:
        trail.dispose()
    assert [(e.actor, e.status) for e in events] == [
        ("peer:gulou", 409 if shape == "same-size" else 422)
    ]
    listed = run(r.bank.env, "peers", "list")
    assert "SPLIT VIEW: 1 checkpoint(s) refused" in listed.stdout, listed
    # the real 鼓楼 again: its next transfer is checked against what 秦淮 held (a consistency
    # proof from the real log) and credited
    _repoint(r, h.bank.url)
    status, outcome = send_as(h, h.member_id, h.token, r.member_id, 15, "genuine-2")
    assert (status, outcome["status"]) == (201, "settled"), outcome
    assert r.log.balance(r.account) == 60
    assert seen.sizes()[H_ORIGIN] > held_size
    seen.dispose()


# ---------------------------------------------------------------- removing a peer


def _events(side: Side) -> list[tuple[str, str, int, list[str]]]:
    trail = AuditTrail(side.bank.settings.database_url)
    try:
        return [
            (e.actor, e.action, e.status, list(e.objects))
            for e in trail.all_events()
            if "peers remove" in e.action
        ]
    finally:
        trail.dispose()


def test_a_peer_with_open_transfers_or_balances_is_removed_only_with_force(
    pair: list[Side],
) -> None:
    h, r = pair
    peers = Peers(PeerStore(h.bank.settings.database_url), h.bank.settings.log_origin)
    real = next(p for p in peers.list() if p.name == "qinhuai")
    # a third bank, known but never used: removed at once
    peers.add(
        "jianye",
        "https://jianye.example",
        "jianye.timebank.test/log",
        _key("jianye.timebank.test/log"),
        _key("jianye.timebank.test/log/peers"),
        "op",
    )
    done = run(h.bank.env, "peers", "--as", "op-li", "remove", "--name", "jianye")
    assert (done.returncode, done.stdout) == (0, "peer jianye removed\n"), done.stderr
    # 秦淮 unreachable: 40 minutes held
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead = f"http://127.0.0.1:{closed.getsockname()[1]}"
    closed.close()
    peers.remove("qinhuai")
    peers.add(
        "qinhuai", dead, real.log_origin, real.log_key.to_text(), real.request_key.to_text(), "op"
    )
    status, problem = send_as(h, h.member_id, h.token, r.member_id, 40, "held")
    assert status == 503, problem
    refused = run(h.bank.env, "peers", "--as", "op-li", "remove", "--name", "qinhuai")
    assert refused.returncode == 1
    assert refused.stderr == (
        "timebank peers remove: peer qinhuai has open business: 1 transfer(s) to qinhuai still "
        "held; 1 balance(s) with qinhuai not zero (gulou:due_to:qinhuai +40 min); deliver held "
        "transfers with timebank peers transfers retry; settling does not zero the balances; "
        "remove anyway with --force (recorded) (--force)\n"
    ), refused.stderr
    assert [p.name for p in peers.list()] == ["qinhuai"]
    # 秦淮 reachable: the transfer settles, nothing is held, but the balance is still owed
    peers.remove("qinhuai")
    peers.add(
        "qinhuai",
        real.url,
        real.log_origin,
        real.log_key.to_text(),
        real.request_key.to_text(),
        "op",
    )
    assert run(h.bank.env, "peers", "transfers", "retry").returncode == 0
    refused = run(h.bank.env, "peers", "--as", "op-li", "remove", "--name", "qinhuai")
    assert refused.returncode == 1
    # (a settlement would not zero it either: it moves no minutes, so no "settle it first")
    assert refused.stderr == (
        "timebank peers remove: peer qinhuai has open business: 1 balance(s) with qinhuai not "
        "zero (gulou:due_to:qinhuai +40 min); settling does not zero the balances; remove "
        "anyway with --force (recorded) (--force)\n"
    ), refused.stderr
    # and on 秦淮's side, what 鼓楼 owes it
    other = run(r.bank.env, "peers", "remove", "--name", "gulou")
    assert other.returncode == 1
    assert "(qinhuai:due_from:gulou -40 min)" in other.stderr, other.stderr
    # --force removes it, and says so in the audit trail
    forced = run(h.bank.env, "peers", "--as", "op-li", "remove", "--name", "qinhuai", "--force")
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout == (
        "peer qinhuai removed\n"
        "removed with --force: 1 balance(s) with qinhuai not zero "
        "(gulou:due_to:qinhuai +40 min)\n"
    )
    assert peers.list() == []
    events = _events(h)
    assert [(a, s) for _, a, s, _ in events] == [
        ("CLI timebank peers remove", 0),
        ("CLI timebank peers remove", 1),
        ("CLI timebank peers remove", 1),
        ("CLI timebank peers remove --force", 0),
    ]
    assert events[0][3] == ["jianye"]
    assert events[1][3] == ["qinhuai", "held 1", "gulou:due_to:qinhuai +40"]
    assert events[3][3] == ["qinhuai", "gulou:due_to:qinhuai +40"]
    assert all(actor == "operator:op-li" for actor, _, _, _ in events)


def _key(name: str) -> str:
    return Signer.generate(name).verifier.to_text()
