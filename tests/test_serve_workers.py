"""``timebank serve --workers 2``: two processes serve one database. Donations sent at the same
moment — and each sent twice with its Idempotency-Key, so a retry may reach the other worker —
post once each, in one log that verifies (on SQLite and on PostgreSQL, whose cross-process
serialization differs)."""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ledger.config import Settings
from ledger.entry import EntryRequest, Posting
from ledger.log import Log
from tests.test_cli import TIMEBANK, _free_port, run
from tests.test_cli import env as env

__all__ = ["env"]

DONATIONS = 60


def _call(base: str, path: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
    request = urllib.request.Request(
        f"{base}{path}",
        method="POST",
        headers={"content-type": "application/json", **headers},
        data=json.dumps(body).encode(),
    )
    for _ in range(100):
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as error:
            if error.code != 409:  # 409: the first copy is still running: retry, as told
                raise AssertionError(f"{path}: {error.code} {error.read().decode()}") from error
            time.sleep(0.05)
    raise AssertionError("still running after 100 retries")


def _fund(env: dict[str, str], account: str, minutes: int) -> None:
    """Stored time to donate, appended by this (third) process to the served log."""
    log = Log.open(Settings.from_env(env))
    try:
        log.append(
            EntryRequest(
                "deposit",
                "fund-the-donor",
                (Posting("demo:issuance", -minutes), Posting(account, minutes)),
                {"record": "stored time for the test", "minutes": minutes, "weight": 1000},
            )
        )
    finally:
        log.close()


def _workers_of(pid: int) -> int:
    """How many worker processes uvicorn's supervisor ``pid`` runs (its spawned children, not
    multiprocessing's resource tracker)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    cmdlines = [Path(f"/proc/{child}/cmdline").read_bytes() for child in children]
    return sum(b"spawn_main" in cmdline for cmdline in cmdlines)


def test_two_workers_post_each_donation_once(env: dict[str, str]) -> None:
    assert run(env, "seed", "--demo", "--entries", "50").returncode == 0
    port = _free_port()
    server = subprocess.Popen(
        [TIMEBANK, "serve", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=1)
                break
            except OSError:
                assert server.poll() is None, "timebank serve exited"
                time.sleep(0.1)
        assert _workers_of(server.pid) == 2
        login = _call(
            base, "/v1/auth/login", {"username": "volunteer", "password": "demo-volunteer-2026"}, {}
        )
        bearer = {"authorization": f"Bearer {login['token']}"}
        me = json.loads(
            urllib.request.urlopen(urllib.request.Request(f"{base}/v1/me", headers=bearer)).read()
        )
        member = me["member"]["id"]
        _fund(env, me["member"]["ledger_account"], DONATIONS)
        keys = [secrets.token_hex(8) for _ in range(DONATIONS)]

        def donate(key: str) -> int:
            answer = _call(
                base,
                "/v1/donations",
                {"from_member_id": member, "minutes": 1},
                {**bearer, "idempotency-key": key},
            )
            return int(answer["seq"])

        with ThreadPoolExecutor(max_workers=16) as pool:
            first = list(pool.map(donate, keys))
            again = list(pool.map(donate, keys))  # retries, any worker may answer
        assert first == again and len(set(first)) == DONATIONS
        size = int(
            urllib.request.urlopen(f"{base}/v1/log/checkpoint").read().decode().split("\n")[1]
        )
        leaves = []
        start = 0
        while start < size:
            page = json.loads(
                urllib.request.urlopen(f"{base}/v1/log/leaves?start={start}&end={size}").read()
            )["leaves"]
            leaves += page
            start += len(page)
    finally:
        server.terminate()
        server.communicate(timeout=60)
    donations = [
        e
        for e in (json.loads(base64.b64decode(leaf["data"])) for leaf in leaves)
        if e["kind"] == "donation"
    ]
    assert sorted(e["seq"] for e in donations if e["seq"] in set(first)) == sorted(first)
    verified = run(env, "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
