"""Two or three real ``timebank serve`` processes on loopback, each with its own SQLite
database, data directory and keys, for the transfer crash, concurrency and three-bank tests
(docs/federation.md).

``prepare`` writes a bank's people and minutes through the real services before its server
starts; ``Server`` starts, SIGKILLs and restarts ``timebank serve`` on the same port (its peers
know it by that URL); ``read_ledger`` reads a log afterwards and ``check_clearing`` checks,
for one pair of banks and one way, what a clearing audit would: every ``transfer_out``
answered exactly once, ``due_to`` mirroring ``due_from``; ``total_minutes`` sums the minutes
of all members plus those in flight, which must not change.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accounts.model import Role
from accounts.service import PersonalInput
from api.services import Services
from federation.peers import Peers
from federation.storage import PeerStore
from federation.transfer_storage import TransferStore
from ledger.config import Settings
from ledger.entry import Entry, EntryRequest, Posting
from ledger.keys import load_or_create_signing_key
from ledger.kinds import TransferIn, TransferOut, TransferRefusal, TransferSettled, TransferVoid
from ledger.log import Log
from ledger.merkle import leaf_hash

TIMEBANK = str(Path(sys.executable).with_name("timebank"))
PASSWORD = "correct horse battery"
START_LIMIT = 90.0  # seconds for a server to answer /healthz: a guard, not a measurement


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Member:
    id: str
    account: str
    token: str


@dataclass
class Server:
    """One bank: its settings, its members, and its ``timebank serve`` process."""

    name: str
    env: dict[str, str]
    settings: Settings
    port: int
    members: list[Member] = field(default_factory=list)
    seeded: int = 0  # minutes deposited for its members
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def output(self) -> Path:
        return self.settings.data_dir.parent / f"{self.name}-serve-{self.starts}.log"

    def start(self, failpoint: str | None = None, retry_seconds: float = 0.5) -> None:
        """``timebank serve`` with the retry worker every ``retry_seconds``; with a
        ``failpoint``, the process SIGKILLs itself when a transfer reaches it."""
        self.launch(failpoint, retry_seconds)
        self.ready()

    def launch(
        self, failpoint: str | None = None, retry_seconds: float = 0.5, workers: int = 1
    ) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already serving"
        env = {**self.env, "TIMEBANK_TRANSFER_RETRY_SECONDS": str(retry_seconds)}
        if failpoint is not None:
            env["TIMEBANK_FAILPOINT"] = failpoint
        self.starts += 1
        with self.output.open("wb") as out:
            self.proc = subprocess.Popen(
                [TIMEBANK, "serve", "--host", "127.0.0.1", "--port", str(self.port)]
                + (["--workers", str(workers)] if workers > 1 else []),
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def ready(self) -> None:
        """Wait until the launched server answers ``/healthz``."""
        assert self.proc is not None
        deadline = time.monotonic() + START_LIMIT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited: {self.output.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{self.name} did not answer in {START_LIMIT} s")

    def killed(self, limit: float = 60.0) -> bool:
        """Wait for the process to die; True if by SIGKILL (a failpoint)."""
        assert self.proc is not None
        return self.proc.wait(limit) == -signal.SIGKILL

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def open_transfers(self) -> int:
        store = TransferStore(self.settings.database_url)
        try:
            return len(store.open())
        finally:
            store.dispose()

    def verify(self) -> subprocess.Popen[str]:
        """``timebank verify`` on this bank's database, started (``verified`` waits)."""
        return subprocess.Popen(
            [TIMEBANK, "verify"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )


def start_all(*launched: tuple[Server, str | None]) -> None:
    """Start servers side by side (each with its failpoint or none) and wait for them all."""
    for server, failpoint in launched:
        server.launch(failpoint)
    for server, _ in launched:
        server.ready()


def verified(*servers: Server) -> None:
    """``timebank verify`` passes on every bank's database (run side by side)."""
    runs = [(server, server.verify()) for server in servers]
    for server, run in runs:
        out, _ = run.communicate(timeout=300)
        assert run.returncode == 0, f"{server.name}: {out}"


def make_server(name: str, tmp_path: Path, template: Path) -> Server:
    """A bank's settings and empty migrated SQLite database (a copy of the test template)."""
    data_dir = tmp_path / name
    data_dir.mkdir(mode=0o700)
    db = data_dir / "timebank.db"
    shutil.copyfile(template, db)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TIMEBANK_")},
        "TIMEBANK_DATA_DIR": str(data_dir),
        "TIMEBANK_DATABASE_URL": f"sqlite:///{db}",
        "TIMEBANK_LOG_ORIGIN": f"{name}.timebank.test/log",
    }
    return Server(name, env, Settings.from_env(env), free_port())


def prepare(server: Server, members: int, minutes: int) -> None:
    """The bank, its admin, an organisation and ``members`` active volunteers with a session
    token each and ``minutes`` deposited each, written through the real services."""
    settings = server.settings
    services = Services.open(settings)
    try:
        accounts, log, name = services.accounts, services.log, server.name
        accounts.create_bank(name, name)
        admin = accounts.create_user(name, f"{name}-admin", Role.BANK_ADMIN, None, PASSWORD)
        principal = accounts.principal_for_user(admin.user.id)
        org = accounts.create_org(principal, "Centre", "community_centre")
        for i in range(members):
            username = f"{name}-m{i}"
            new = accounts.register_member(
                principal,
                org.id,
                PersonalInput(name=f"会员{i}", phone=f"138{i:08d}"),
                volunteer=True,
                elder=False,
                username=username,
                password=PASSWORD,
            )
            account = new.member.ledger_account
            if minutes:
                log.append(
                    EntryRequest(
                        "deposit",
                        f"seed-{username}",
                        (Posting(f"{name}:issuance", -minutes), Posting(account, minutes)),
                        {"record": "seed", "minutes": minutes, "weight": 1000},
                    )
                )
            token = accounts.issue_token(username).token
            server.members.append(Member(new.member.id, account, token))
        server.seeded = members * minutes
    finally:
        services.close()
    load_or_create_signing_key(settings.peer_key_file, settings.peer_key_name)


def befriend(a: Server, b: Server) -> None:
    """Each bank adds the other as a peer (as ``timebank peers add`` does)."""
    for at, other in ((a, b), (b, a)):
        log_key = load_or_create_signing_key(
            other.settings.signing_key_file, other.settings.log_origin
        )
        request_key = load_or_create_signing_key(
            other.settings.peer_key_file, other.settings.peer_key_name
        )
        store = PeerStore(at.settings.database_url)
        try:
            Peers(store, at.settings.log_origin).add(
                other.name,
                other.url,
                other.settings.log_origin,
                log_key.verifier.to_text(),
                request_key.verifier.to_text(),
                "op",
            )
        finally:
            store.dispose()


def send(
    server: Server, member: Member, peer: str, to_member_id: str, minutes: int, key: str
) -> tuple[int, dict[str, Any]]:
    """``POST /v1/peer-transfers`` as ``member``: (status, JSON body); a connection cut by
    the server's death is (0, {"error": …})."""
    body = {
        "from_member_id": member.id,
        "peer": peer,
        "to_member_id": to_member_id,
        "minutes": minutes,
    }
    request = urllib.request.Request(
        server.url + "/v1/peer-transfers",
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {member.token}",
            "Idempotency-Key": key,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code), json.loads(exc.read() or b"{}")
    except OSError as exc:  # the server died with the request (a failpoint)
        return 0, {"error": str(exc)}


def wait_until(predicate: Any, limit: float, what: str, *servers: Server) -> None:
    """Poll ``predicate``; past ``limit``, fail with the end of each of ``servers``' output,
    which is all a CI run leaves of why."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            tails = "".join(
                f"\n--- {s.name} ({s.output.name}) ---\n{s.output.read_text()[-4000:]}"
                for s in servers
                if s.output.exists()
            )
            raise AssertionError(f"timed out after {limit} s waiting for {what}{tails}")
        time.sleep(0.2)


@dataclass
class Ledger:
    """One bank's log as read after the run."""

    server: Server
    entries: list[Entry]
    balances: dict[str, int]

    def kinds(self) -> Counter[str]:
        return Counter(e.request.kind for e in self.entries)

    def of_kind(self, kind: str) -> list[Entry]:
        return [e for e in self.entries if e.request.kind == kind]


def read_ledger(server: Server, *peers: str) -> Ledger:
    """``server``'s log with the balances of its members and of its ``due_to``/``due_from``
    accounts for each of ``peers`` (one peer, or each peer of a bank with several)."""
    assert peers, "name at least one peer"
    log = Log.open(server.settings)
    try:
        size = log.size()
        entries: list[Entry] = []
        while len(entries) < size:
            entries += [Entry.from_leaf(leaf.data) for leaf in log.leaves(len(entries), size)]
        accounts = [m.account for m in server.members]
        for peer in peers:
            accounts += [f"{server.name}:due_to:{peer}", f"{server.name}:due_from:{peer}"]
        balances = log.balances(accounts)
    finally:
        log.close()
    return Ledger(server, entries, balances)


def check_clearing(h: Ledger, r: Ledger) -> dict[str, int]:
    """What ``timebank audit clearing`` will check, for transfers from H to R, from the two
    logs alone: every ``transfer_out`` of H has exactly one answer in R (a ``transfer_in`` or
    a ``transfer_refused`` quoting its index and leaf hash) and is closed in H accordingly
    (``transfer_settled`` for a credit, ``transfer_void`` for a refusal, never both); no
    ``transfer_in`` in R quotes anything but a ``transfer_out`` of H, with its minutes. Returns
    how many of each. Raises AssertionError naming the first entry that breaks a rule."""
    hn, rn = h.server.name, r.server.name
    h_origin = h.server.settings.log_origin
    outs = {}
    for e in h.of_kind("transfer_out"):
        out = TransferOut.from_entry(e.request)
        if out.peer == rn:
            outs[e.seq] = (out, leaf_hash(e.leaf()).hex())
    closings: dict[str, list[str]] = {}
    for e in h.entries:
        if e.request.kind == "transfer_settled":
            closings.setdefault(TransferSettled.from_entry(e.request).transfer, []).append("s")
        elif e.request.kind == "transfer_void":
            closings.setdefault(TransferVoid.from_entry(e.request).transfer, []).append("v")
    answers: dict[int, list[tuple[str, Any]]] = {}
    for e in r.entries:
        if e.request.kind == "transfer_in":
            credit = TransferIn.from_entry(e.request)
            if credit.peer == hn:
                assert credit.from_origin == h_origin, e.request.id
                answers.setdefault(credit.from_index, []).append(("in", credit))
        elif e.request.kind == "transfer_refused":
            refusal = TransferRefusal.from_entry(e.request)
            if refusal.peer == hn:
                answers.setdefault(refusal.from_index, []).append(("refused", refusal))
    counts = Counter[str]()
    for index, got in answers.items():
        assert index in outs, f"{rn} answers {hn}'s entry {index}, which is no transfer_out"
        assert len(got) == 1, f"{rn} answered {hn}'s entry {index} {len(got)} times"
    for index, (out, leaf) in outs.items():
        closed = closings.get(out.transfer, [])
        assert len(closed) <= 1, f"{hn}'s transfer {out.transfer} closed {len(closed)} times"
        answer = answers.get(index)
        if answer is None:  # never reached R: only a void (or still held)
            assert closed in ([], ["v"]), f"{hn}'s transfer {out.transfer} settled unanswered"
            counts["held" if not closed else "void unanswered"] += 1
            continue
        kind, value = answer[0]
        assert value.from_leaf_hash == leaf, f"{rn}'s answer to {index} quotes another leaf"
        assert value.transfer == out.transfer, f"{rn}'s answer to {index} names another transfer"
        if kind == "in":
            assert value.minutes == out.minutes, f"{rn} credited {index} other minutes"
            assert closed in ([], ["s"]), f"{hn} voided {out.transfer}, which {rn} credited"
            counts["settled" if closed else "credited, not settled yet"] += 1
        else:
            assert closed in ([], ["v"]), f"{hn} settled {out.transfer}, which {rn} refused"
            counts["void" if closed else "refused, not void yet"] += 1
    # what H owes R in H's log mirrors what R is owed by H in R's log
    credited = sum(outs[i][0].minutes for i, a in answers.items() if a[0][0] == "in")
    assert r.balances[f"{rn}:due_from:{hn}"] == -credited
    voided = sum(out.minutes for out, _ in outs.values() if closings.get(out.transfer) == ["v"])
    sent = sum(out.minutes for out, _ in outs.values())
    assert h.balances[f"{hn}:due_to:{rn}"] == sent - voided
    return dict(counts)


def total_minutes(*ledgers: Ledger) -> int:
    """Every member's minutes plus those in flight (due_to, due_from) over the logs."""
    return sum(sum(ledger.balances.values()) for ledger in ledgers)
