"""The command line as an operator uses it: the real console script in a subprocess."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from nacl.public import PublicKey

from demo.bank import last_two_halves
from ledger.merkle import leaf_hash, verify_inclusion
from ledger.note import Verifier, open_checkpoint
from reports.csvfile import sealed

TIMEBANK = str(Path(sys.executable).with_name("timebank"))


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TIMEBANK, *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def env(settings: object, db_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "TIMEBANK_DATA_DIR": str(tmp_path / "data"),
        "TIMEBANK_DATABASE_URL": db_url,
        "TIMEBANK_LOG_ORIGIN": "timebank.test/cli",
    }


def test_verify_is_read_only(tmp_path: Path) -> None:
    data = tmp_path / "nothing-here"
    result = run({**os.environ, "TIMEBANK_DATA_DIR": str(data)}, "verify")
    assert result.returncode == 2
    assert "no database" in result.stderr
    assert not data.exists()


def test_seed_verify_key_and_admin_commands(env: dict[str, str], tmp_path: Path) -> None:
    assert run(env, "migrate").returncode == 0
    seeded = run(env, "seed", "--demo", "--entries", "300")
    assert seeded.returncode == 0, seeded.stderr
    assert "demo-admin-2026" in seeded.stdout
    assert "tbk_demo-district-platform-2026" in seeded.stdout  # the demo's partner platform
    again = run(env, "seed", "--demo", "--if-empty")
    assert again.returncode == 0 and "not seeding" in again.stdout
    key = run(env, "key", "show")
    assert key.returncode == 0 and key.stdout.startswith("timebank.test/cli+")
    assert oct((tmp_path / "data" / "signing.key").stat().st_mode)[-3:] == "600"
    verified = run(env, "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("OK:")
    in_workers = run(env, "verify", "--workers", "2")  # forked from the command's process
    assert in_workers.returncode == 0, in_workers.stdout + in_workers.stderr
    assert in_workers.stdout == verified.stdout
    wrong_key = run(
        env,
        "verify",
        "--key",
        "timebank.test/cli+00000000+AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    )
    assert wrong_key.returncode == 2  # a malformed key (id does not match): a message, no traceback
    assert "Traceback" not in wrong_key.stderr
    # An auditor's `--key "$(curl …)"` whose fetch failed passes an empty key: refused, never
    # the operator's own key in its place (that verify passes with it, just above).
    empty_key = run(env, "verify", "--key", "")
    assert empty_key.returncode == 2, empty_key.stdout
    assert "verifier key must be" in empty_key.stderr and not empty_key.stdout
    ours = run(env, "verify", "--key", key.stdout.strip())
    assert ours.returncode == 0 and ours.stdout == verified.stdout

    bank = run(env, "admin", "create-bank", "--id", "gulou", "--name", "鼓楼区")
    assert bank.returncode == 0, bank.stderr
    org = run(
        env,
        "admin",
        "create-org",
        "--bank",
        "gulou",
        "--name",
        "湖南路社区",
        "--kind",
        "community_centre",
    )
    assert org.returncode == 0, org.stderr
    org_id = org.stdout.split()[2]
    staff = run(
        env,
        "admin",
        "create-user",
        "--bank",
        "gulou",
        "--username",
        "hn-staff",
        "--role",
        "org_staff",
        "--org",
        org_id,
    )
    assert staff.returncode == 0, staff.stderr
    assert "one-time password" in staff.stdout
    no_org = run(
        env,
        "admin",
        "create-user",
        "--bank",
        "gulou",
        "--username",
        "x-staff",
        "--role",
        "org_staff",
    )
    assert no_org.returncode == 1 and "org" in no_org.stderr
    token = run(env, "admin", "issue-token", "--user", "hn-staff")
    assert token.returncode == 0 and token.stdout.startswith("tbs_")
    reset = run(env, "admin", "reset-totp", "--user", "hn-staff")
    assert reset.returncode == 0, reset.stderr
    assert "enrolment code" in reset.stdout and "tbe_" in reset.stdout
    unknown = run(env, "admin", "reset-totp", "--user", "nobody-here")
    assert unknown.returncode == 1 and "no user" in unknown.stderr
    duplicate = run(env, "admin", "create-bank", "--id", "gulou", "--name", "again")
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_serve_a_seeded_demo_over_real_http(env: dict[str, str]) -> None:
    assert run(env, "seed", "--demo", "--entries", "200").returncode == 0
    port = _free_port()
    server = subprocess.Popen(
        [TIMEBANK, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):  # a loaded CI machine may take a while to start the server
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=1)
                break
            except OSError:
                assert server.poll() is None, "timebank serve exited"
                time.sleep(0.1)
        verifier = Verifier.from_text(urllib.request.urlopen(f"{base}/v1/log/key").read().decode())
        note = urllib.request.urlopen(f"{base}/v1/log/checkpoint").read().decode()
        checkpoint, _ = open_checkpoint(note, verifier, "timebank.test/cli")
        size = checkpoint.size
        leaf = json.loads(urllib.request.urlopen(f"{base}/v1/log/leaves?start=7&end=8").read())
        data = base64.b64decode(leaf["leaves"][0]["data"])
        proof = json.loads(
            urllib.request.urlopen(f"{base}/v1/log/proof/inclusion?index=7&tree_size={size}").read()
        )
        verify_inclusion(
            leaf_hash(data),
            7,
            size,
            [base64.b64decode(h) for h in proof["hashes"]],
            checkpoint.root,
        )
        request = urllib.request.Request(
            f"{base}/v1/auth/login",
            method="POST",
            headers={"content-type": "application/json"},
            data=json.dumps({"username": "elder", "password": "demo-elder-2026"}).encode(),
        )
        login = json.loads(urllib.request.urlopen(request).read())
        assert login["roles"] == ["elder"]
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert "GET /v1/log" not in output  # no access log (client addresses) by default


def test_operator_commands_are_in_the_audit_trail(env: dict[str, str]) -> None:
    from audit.trail import AuditTrail

    assert run(env, "migrate").returncode == 0
    made = run(env, "admin", "--as", "王工", "create-bank", "--id", "qinhuai", "--name", "秦淮区")
    assert made.returncode == 0, made.stderr
    again = run(env, "admin", "create-bank", "--id", "qinhuai", "--name", "秦淮区")
    assert again.returncode == 1  # exists: refused, and recorded as refused
    user = run(
        env,
        "admin",
        "create-user",
        "--bank",
        "qinhuai",
        "--username",
        "qh-admin",
        "--role",
        "bank_admin",
    )
    assert user.returncode == 0, user.stderr
    trail = AuditTrail(env["TIMEBANK_DATABASE_URL"])
    try:
        events = [e for e in trail.all_events() if e.role == "operator"]
    finally:
        trail.dispose()
    assert [(e.action, e.status, e.outcome) for e in events] == [
        ("CLI timebank admin create-bank", 0, "ok"),
        ("CLI timebank admin create-bank", 1, "refused"),  # an exit status, not an HTTP one
        ("CLI timebank admin create-user", 0, "ok"),
    ]
    assert events[0].actor == "operator:王工" and events[0].bank_id == "qinhuai"
    assert events[2].actor.startswith("operator:") and "qh-admin" in events[2].objects
    # the one-time password printed to the operator is nowhere in the trail
    password = next(w for w in user.stdout.split() if w.startswith("tbo_"))
    assert all(password not in " ".join(e.objects) for e in events)


def test_webhook_worker_and_replay_commands(env: dict[str, str]) -> None:
    from audit.trail import AuditTrail

    assert run(env, "migrate").returncode == 0
    once = run(env, "webhooks", "run", "--once")
    assert once.returncode == 0, once.stderr
    assert once.stdout.strip() == "attempted 0 message(s)"
    missing = run(env, "webhooks", "replay", "msg_nothing")
    assert missing.returncode == 1
    assert "no webhook message msg_nothing" in missing.stderr
    trail = AuditTrail(env["TIMEBANK_DATABASE_URL"])
    try:
        events = [e for e in trail.all_events() if e.role == "operator"]
    finally:
        trail.dispose()
    assert [(e.action, e.status, e.objects) for e in events] == [
        ("CLI timebank webhooks replay", 1, ("msg_nothing",))
    ]


def test_report_coverage_prints_the_months_figures_and_is_recorded(env: dict[str, str]) -> None:
    from audit.trail import AuditTrail

    assert run(env, "migrate").returncode == 0
    assert run(env, "seed", "--demo", "--entries", "300").returncode == 0
    table = run(env, "report", "--as", "李审计", "coverage", "--bank", "demo")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith("visit coverage 20") and "Asia/Shanghai" in lines[0]
    figures = json.loads(run(env, "report", "coverage", "--bank", "demo", "--json").stdout)
    total = figures["total"]
    assert total["priority_elders"] == 47 and figures["unvisited"] == []  # counts only
    assert lines[-1].split()[:3] == [str(total["visited"]), "/", "47"]
    assert lines[-1].endswith("total")
    wrong = run(env, "report", "coverage", "--bank", "demo", "--month", "2026-13")
    assert wrong.returncode == 1 and "month must be YYYY-MM" in wrong.stderr
    busiest = max(figures["organisations"], key=lambda org: org["priority_elders"])
    one = run(env, "report", "coverage", "--bank", "demo", "--org", busiest["org_id"], "--json")
    assert one.returncode == 0, one.stderr  # an operator has no personal login, and needs none
    narrowed = json.loads(one.stdout)
    assert narrowed["organisations"] == [busiest] and narrowed["unvisited"] == []
    assert narrowed["total"]["priority_elders"] == busiest["priority_elders"]
    unknown = run(env, "report", "coverage", "--bank", "demo", "--org", "nosuch")
    assert unknown.returncode == 1 and "no organisation nosuch" in unknown.stderr
    trail = AuditTrail(env["TIMEBANK_DATABASE_URL"])
    try:
        events = [e for e in trail.all_events() if e.action.startswith("CLI timebank report")]
    finally:
        trail.dispose()
    assert [(e.action, e.status) for e in events] == [
        ("CLI timebank report coverage", status) for status in (0, 0, 1, 0, 1)
    ]
    assert events[0].actor == "operator:李审计" and events[0].bank_id == "demo"


def test_report_halfyear_prints_publishes_once_and_is_recorded(env: dict[str, str]) -> None:
    assert run(env, "migrate").returncode == 0
    assert run(env, "seed", "--demo", "--entries", "300").returncode == 0
    # The seed published the last two half years; the one before them has ended too.
    older, newer = last_two_halves(datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai")).date())
    year, second = int(older[:4]), older.endswith("H2")
    half = f"{year}-H1" if second else f"{year - 1}-H2"
    table = run(env, "report", "halfyear", "--bank", "demo", "--half", half)
    assert table.returncode == 0, table.stderr
    assert table.stdout.startswith(f"half-yearly report {half} of demo (Asia/Shanghai)\n")
    assert "not published (--publish publishes it)" in table.stdout
    document = json.loads(
        run(env, "report", "halfyear", "--bank", "demo", "--half", half, "--json").stdout
    )
    assert document["format"] == "timebank-halfyear-report/v1" and document["half"] == half
    published = run(env, "report", "halfyear", "--bank", "demo", "--half", half, "--publish")
    assert published.returncode == 0, published.stderr
    assert (
        "published as report" in published.stdout
        and f"entry report:demo:{half}" in published.stdout
    )
    for again in (half, newer):
        refused = run(env, "report", "halfyear", "--bank", "demo", "--half", again, "--publish")
        assert refused.returncode == 1 and f"{again} is published already" in refused.stderr
    bad = run(env, "report", "halfyear", "--bank", "demo", "--half", "2026-H9")
    assert bad.returncode == 1 and "half must be YYYY-H1 or YYYY-H2" in bad.stderr


def test_the_seeded_demo_names_no_user_in_the_public_log(env: dict[str, str]) -> None:
    """The demo's history names its staff as every deposit does, by a pseudonym per entry:
    a volunteer sees the staff member's user id (``/v1/me``'s ``approved_by``), and the log
    is public for ever (docs/privacy.md)."""
    from sqlalchemy import create_engine, text

    assert run(env, "seed", "--demo", "--entries", "300").returncode == 0
    engine = create_engine(env["TIMEBANK_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            users = [str(r[0]) for r in conn.execute(text("SELECT id FROM users"))]
            leaves = b"\n".join(
                bytes(r[0]) for r in conn.execute(text("SELECT leaf FROM log_entries"))
            )
    finally:
        engine.dispose()
    assert len(users) > 5 and leaves.count(b'"kind":"deposit"') > 50
    assert [u for u in users if u.encode() in leaves] == []
    assert b'"verified_by":"p:' in leaves and b'"confirmed_by":"p:' in leaves


def test_a_trailing_newline_is_not_part_of_a_valid_name(env: dict[str, str]) -> None:
    """``$`` in a pattern also matches before a final newline: ids, names and halves ending in
    one were stored (a bank ``nl\\n`` nobody could name again, a second half-year report
    ``report:demo:2025-H1\\n`` in the append-only log). Each is refused; without it, accepted."""
    assert run(env, "migrate").returncode == 0
    refused = run(env, "admin", "create-bank", "--id", "nl\n", "--name", "New line")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert run(env, "admin", "create-bank", "--id", "nl", "--name", "New line").returncode == 0
    user = run(
        env, "admin", "create-user", "--bank", "nl", "--username", "nluser\n", "--role", "auditor"
    )
    assert user.returncode == 1 and "Traceback" not in user.stderr
    ok = run(
        env, "admin", "create-user", "--bank", "nl", "--username", "nluser", "--role", "auditor"
    )
    assert ok.returncode == 0, ok.stderr
    half = run(env, "report", "halfyear", "--bank", "nl", "--half", "2025-H1\n")
    assert half.returncode == 1 and "half must be" in half.stderr, half.stderr
    # the same half without it passes that check (and stops later: this log has no checkpoint)
    assert (
        "(--half)" not in run(env, "report", "halfyear", "--bank", "nl", "--half", "2025-H1").stderr
    )


def test_an_entry_id_or_kind_ending_in_a_newline_is_malformed() -> None:
    from ledger.entry import ENTRY_ID, KIND, TIME

    assert ENTRY_ID.match("gift:abc") and not ENTRY_ID.match("gift:abc\n")
    assert KIND.match("gift") and not KIND.match("gift\n")
    assert TIME.match("2026-12-07T03:00:00.000000Z")
    assert not TIME.match("2026-12-07T03:00:00.000000Z\n")


def test_numbers_and_addresses_out_of_range_are_usage_errors(env: dict[str, str]) -> None:
    """Port 99999 was bound as 34463, an empty host listened on every interface, an idle of 0
    busy-looped and 5000 verify workers forked until memory ran out: each is refused by
    name before anything runs (exit 2); the same option in range runs."""
    for args, option in (
        (["serve", "--port", "99999"], "--port"),
        (["serve", "--port", "-1"], "--port"),
        (["serve", "--host", ""], "--host"),
        (["witness", "serve", "--host", "", "--key", "k", "--log", "l"], "--host"),
        (["verify", "--workers", "5000"], "--workers"),
        (["verify", "--workers", "0"], "--workers"),
        (["webhooks", "run", "--idle", "0"], "--idle"),
        (["admin", "--as", "", "create-bank", "--id", "x9", "--name", "X"], "--as"),
        (
            [
                "audit",
                "verify",
                "--url",
                "http://127.0.0.1:9",
                "--key",
                "k",
                "--member-overdraft",
                "-10",
            ],
            "--member-overdraft",
        ),
        (["peers", "--as", "   ", "list"], "--as"),
        (
            ["audit", "verify", "--url", "http://127.0.0.1:9", "--key", "k", "--timeout", "-1"],
            "--timeout",
        ),
    ):
        done = run(env, *args)
        assert done.returncode == 2 and f"argument {option}" in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
    assert run(env, "seed", "--demo", "--entries", "50").returncode == 0
    in_range = run(env, "verify", "--workers", "2")
    assert in_range.returncode == 0, in_range.stderr


def test_odd_arguments_get_a_message_not_a_traceback(env: dict[str, str], tmp_path: Path) -> None:
    """Bytes that are not UTF-8, a bank that does not exist, a month past the calendar, an
    empty file name, a key file that is not text: one line naming the problem, nothing
    written; the same commands with good values succeed."""
    assert run(env, "seed", "--demo", "--entries", "50").returncode == 0
    not_utf8 = "\udcff\udcfe"  # how Python hands over argv bytes 0xff 0xfe
    refusals = [
        (("admin", "create-bank", "--id", "ok5", "--name", not_utf8), "not valid UTF-8"),
        (("witness", "keygen", "--name", not_utf8, "--out", str(tmp_path / "w.key")), "UTF-8"),
        (("report", "halfyear", "--bank", "nosuch", "--half", "2025-H1"), "no bank nosuch"),
        (("report", "coverage", "--bank", "nosuch"), "no bank nosuch"),
        (("report", "coverage", "--bank", "demo", "--month", "9999-12"), "2000-2199"),
        (("report", "export-key", "--out", ""), "an empty value"),
        (("report", "export-key", "--out", "/nonexistent-dir/k.key"), "argument --out"),
        (("report", "coverage", "--bank", "demo", "--month", ""), "an empty value"),
    ]
    for args, message in refusals:
        done = run(env, *args)  # subprocess encodes a surrogate back to the byte a shell sends
        assert done.returncode in (1, 2), (args, done.stdout, done.stderr)
        assert message in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)
    assert not (tmp_path / "w.key").exists()
    bad_key = tmp_path / "bad.key"
    bad_key.write_bytes(b"\xff\xfe")
    audited = run(env, "audit", "verify", str(tmp_path), "--key", str(bad_key))
    assert audited.returncode != 0 and "not UTF-8" in audited.stderr
    assert "Traceback" not in audited.stderr
    bank = run(env, "admin", "create-bank", "--id", "ok5", "--name", "正常")
    assert bank.returncode == 0, bank.stderr
    coverage = run(env, "report", "coverage", "--bank", "demo")
    assert coverage.returncode == 0 and "visit coverage" in coverage.stdout
    made = run(env, "report", "export-key", "--out", str(tmp_path / "export.key"))
    assert made.returncode == 0
    sealed_file = tmp_path / "export.csv.sealed"
    sealed_file.write_bytes(sealed(PublicKey(base64.b64decode(made.stdout)), b"org,visited\n"))
    opening = ("report", "open", str(sealed_file), "--key", str(tmp_path / "export.key"))
    mistyped = run(env, *opening, "--out", str(tmp_path / "no-such-dir" / "o.csv"))
    assert mistyped.returncode == 2 and "argument --out" in mistyped.stderr, mistyped.stderr
    assert "Traceback" not in mistyped.stderr and not (tmp_path / "no-such-dir").exists()
    assert run(env, *opening, "--out", str(tmp_path / "o.csv")).returncode == 0
    assert (tmp_path / "o.csv").read_bytes() == b"org,visited\n"
