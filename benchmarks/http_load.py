#!/usr/bin/env python3
"""HTTP throughput and latency of the real ``timebank serve``, against the framework's ceiling.

Prints ONE JSON document on stdout (progress on stderr). For each database (SQLite file,
PostgreSQL) it migrates and seeds a fresh demo, serves it with the real ``timebank serve`` on a
free 127.0.0.1 port, and drives it with ``wrk`` (Lua scripts: unique ``Idempotency-Key`` per
write, record ids read from a file) at each connection count:

* ``ceiling``: a one-route Litestar app on the same uvicorn (``benchmarks/ceiling_app.py``),
  measured in the same run: the most this stack can answer on this machine;
* ``checkpoint``: ``GET /v1/log/checkpoint`` (public);
* ``proof``: ``GET /v1/log/proof/inclusion`` for random leaves;
* ``balance``: ``GET /v1/members/{id}/balance`` with the volunteer's bearer token;
* ``donation``: ``POST /v1/donations`` of one minute, a fresh key each: a durable ledger write;
* ``mixed``: 90 % balance reads, 10 % donations, as a phone fleet sends them;
* ``deposit`` (at ``--deposit-connections``): the full deposit path, phase by phase: records
  logged by the volunteer (``record``), confirmed by the elder (``confirm``), verified by staff
  with TOTP (``verify``, which appends the deposit); ``deposits_per_s`` is records carried
  through both confirm and verify per second of the two phases together.

Each figure carries requests/s of 2xx answers, p50/p99 latency, errors (non-2xx, socket
errors, timeouts), and the server's CPU (cores busy, from /proc). ``ratios`` divides each read
by the ceiling of the same run. Nothing asserts a timing; ``targets`` only says met or missed.

    python benchmarks/http_load.py --help
    python benchmarks/http_load.py --quick            # a smoke run (about a minute)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
ORIGIN = "bench.timebank.local/log"

REPORT_LUA = r"""
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
"""

# Every thread gets its own number (setup runs in the main Lua state, one call per thread).
THREADS_LUA = r"""
local thread_count = 0
function setup(thread)
  thread_count = thread_count + 1
  thread:set("tid", thread_count)
end
"""

GET_LUA = (
    THREADS_LUA
    + r"""
-- args: token, then one or more paths picked at random
function init(args)
  token = args[1]
  paths = {}
  for i = 2, #args do paths[#paths + 1] = args[i] end
  math.randomseed(tid * 7919)
end
function request()
  local headers = {}
  if token ~= "-" then headers["Authorization"] = "Bearer " .. token end
  return wrk.format("GET", paths[math.random(#paths)], headers)
end
"""
    + REPORT_LUA
)

# args: token, run id, path, body, read share (0..1), read path
WRITE_LUA = (
    THREADS_LUA
    + r"""
local counter = 0
function init(args)
  token, run, path, body = args[1], args[2], args[3], args[4]
  read_share, read_path = tonumber(args[5]), args[6]
  math.randomseed(tid * 104729)
end
function request()
  local headers = {["Authorization"] = "Bearer " .. token}
  if read_share > 0 and math.random() < read_share then
    return wrk.format("GET", read_path, headers)
  end
  counter = counter + 1
  headers["Content-Type"] = "application/json"
  headers["Idempotency-Key"] = run .. "-" .. tid .. "-" .. counter
  return wrk.format("POST", path, headers, body)
end
"""
    + REPORT_LUA
)

# args: token, run id, elder id, first check-in (epoch s), threads, ids file prefix; one-minute
# records, each thread on its own minutes so that no two records overlap; the ids of the records
# made are written to <prefix><thread>.
RECORD_LUA = (
    THREADS_LUA
    + r"""
local counter = 0
function init(args)
  token, run, elder = args[1], args[2], args[3]
  first, threads = tonumber(args[4]), tonumber(args[5])
  ids = io.open(args[6] .. tid, "w")
end
function response(status, headers, body)
  if status == 201 then
    local id = body:match('"id":"(%x+)"')
    if id then ids:write(id, "\n"); ids:flush() end
  end
end
function request()
  local slot = counter * threads + (tid - 1)
  counter = counter + 1
  local t = first + slot * 60
  local body = string.format(
    '{"elder_id":"%s","service_code":"company","check_in":"%s","check_out":"%s","minutes":1}',
    elder, os.date("!%Y-%m-%dT%H:%M:%SZ", t), os.date("!%Y-%m-%dT%H:%M:%SZ", t + 60))
  return wrk.format("POST", "/v1/records", {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = run .. "-rec-" .. slot,
  }, body)
end
"""
    + REPORT_LUA
)

# args: token, ids file, path template with {id}, body, threads: thread k takes ids k, k+T, ...
IDS_LUA = (
    THREADS_LUA
    + r"""
local position = 0
function init(args)
  token, ids_file, template, body = args[1], args[2], args[3], args[4]
  threads = tonumber(args[5])
  ids = {}
  local n = 0
  for line in io.lines(ids_file) do
    if n % threads == tid - 1 then ids[#ids + 1] = line end
    n = n + 1
  end
end
function request()
  position = position + 1
  local id = ids[math.min(position, #ids)] or "exhausted"
  return wrk.format("POST", (template:gsub("{id}", id)), {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = id .. template,
  }, body)
end
"""
    + REPORT_LUA
)


def log(message: str) -> None:
    print(f"[http-bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def timebank_command() -> list[str]:
    script = Path(sys.executable).with_name("timebank")
    if not script.exists():
        sys.exit(f"{script} not found: install the project first (make .venv/.installed)")
    return [str(script)]


# ---------------------------------------------------------------- HTTP client for the setup


class Client:
    def __init__(self, base: str) -> None:
        self.base = base

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        token: str | None = None,
        key: str | None = None,
    ) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        if key:
            request.add_header("Idempotency-Key", key)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{method} {path}: {exc.code} {exc.read().decode()[:400]}") from exc
        return json.loads(text) if text.startswith(("{", "[")) else text

    def login(self, username: str, password: str, totp: str | None = None) -> str:
        body: dict[str, Any] = {"username": username, "password": password}
        if totp:
            body["totp"] = totp
        return str(self.call("POST", "/v1/auth/login", body)["token"])


# ---------------------------------------------------------------- processes


class Server:
    """A server process on 127.0.0.1 whose CPU time can be read while it runs."""

    def __init__(self, argv: list[str], env: dict[str, str], port: int, probe: str) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.output = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server
        self.process = subprocess.Popen(
            argv,
            env=env,
            cwd=ROOT,
            stdout=self.output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.output.seek(0)
                sys.exit(f"server exited: {self.output.read().decode()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + probe, timeout=2):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        self.stop()
        sys.exit(f"server on port {port} did not answer {probe} within 60 s")

    def cpu_seconds(self) -> float:
        """User + system CPU of the server and its worker processes (same session)."""
        total = 0.0
        tick = os.sysconf("SC_CLK_TCK")
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            # fields[3] is the session id (field 6 of stat); utime, stime are fields 14, 15
            if int(fields[3]) == self.process.pid:
                total += (int(fields[11]) + int(fields[12])) / tick
        return total

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def system_busy() -> tuple[int, int]:
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts) - idle, sum(parts)


def run_wrk(
    server: Server,
    script: str,
    args: list[str],
    connections: int,
    duration: float,
    path: str = "/",
    threads: int = 2,
) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
        script_path = f.name
    threads = min(threads, connections)
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "10s",
        "-s",
        script_path,
        server.url + path,
        "--",
        *args,
    ]
    cpu_before = server.cpu_seconds()
    busy_before, total_before = system_busy()
    started = time.monotonic()
    completed = subprocess.run(argv, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    busy_after, total_after = system_busy()
    cpu = server.cpu_seconds() - cpu_before
    os.unlink(script_path)
    match = re.search(r"^WRKJSON (.*)$", completed.stdout, re.MULTILINE)
    if completed.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stderr[-1000:]}")
    raw = json.loads(match.group(1))
    seconds = raw["duration_us"] / 1e6
    ok = raw["requests"] - raw["status_errors"]
    return {
        "connections": connections,
        "seconds": round(seconds, 2),
        "requests": raw["requests"],
        "ok": ok,
        "ok_per_s": round(ok / seconds, 1),
        "p50_ms": round(raw["p50_us"] / 1000, 2),
        "p99_ms": round(raw["p99_us"] / 1000, 2),
        "max_ms": round(raw["max_us"] / 1000, 2),
        "errors": {
            "non_2xx": raw["status_errors"],
            "socket": raw["connect_errors"] + raw["read_errors"] + raw["write_errors"],
            "timeouts": raw["timeouts"],
        },
        "server_cpu_cores": round(cpu / elapsed, 2),
        "system_cpu_busy": round(
            (busy_after - busy_before) / max(1, total_after - total_before), 2
        ),
    }


# ---------------------------------------------------------------- databases


@contextlib.contextmanager
def database(kind: str, workdir: Path, pg_admin_url: str) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'timebank.db'}"
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"bench_http_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def pg_reachable(url: str) -> str | None:
    try:
        from sqlalchemy import create_engine, text

        engine = create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return None


def fund(env: dict[str, str], account: str, minutes: int) -> None:
    """Give the bench volunteer stored time to donate, as past months' deposits would have."""
    code = (
        "import sys\n"
        "from ledger.config import Settings\n"
        "from ledger.entry import EntryRequest, Posting\n"
        "from ledger.log import Log\n"
        "from ledger.postings import ISSUANCE, system_account\n"
        "account, minutes = sys.argv[1], int(sys.argv[2])\n"
        "log = Log.open(Settings.from_env())\n"
        "issuance = system_account('demo', ISSUANCE)\n"
        "log.append(EntryRequest('deposit', 'bench-funding', "
        "(Posting(issuance, -minutes), Posting(account, minutes)), "
        "{'service': 'company', 'minutes': minutes, 'weight': 1000, "
        "'note': 'benchmark funding'}))\n"
        "log.close()\n"
    )
    subprocess.run(
        [sys.executable, "-c", code, account, str(minutes)], env=env, cwd=ROOT, check=True
    )


# ---------------------------------------------------------------- one database


def bench_database(kind: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    result: dict[str, Any] = {}
    with database(kind, workdir / kind, args.pg_url) as url:
        env = dict(os.environ)
        env.update(
            TIMEBANK_DATA_DIR=str(workdir / kind / "data"),
            TIMEBANK_DATABASE_URL=url,
            TIMEBANK_LOG_ORIGIN=ORIGIN,
        )
        (workdir / kind).mkdir(parents=True, exist_ok=True)
        tb = timebank_command()
        log(f"{kind}: migrate and seed the demo ({args.entries} entries)")
        subprocess.run([*tb, "migrate"], env=env, check=True, capture_output=True)
        subprocess.run(
            [*tb, "seed", "--demo", "--entries", str(args.entries)],
            env=env,
            check=True,
            capture_output=True,
        )
        serve = [*tb, "serve", "--host", "127.0.0.1"]
        if args.workers > 1:
            serve += ["--workers", str(args.workers)]

        # A first start only to learn the volunteer's ledger account for the funding.
        port = free_port()
        server = Server([*serve, "--port", str(port)], env, port, "/healthz")
        client = Client(server.url)
        volunteer = client.login("volunteer", "demo-volunteer-2026")
        me = client.call("GET", "/v1/me", token=volunteer)
        server.stop()
        fund(env, me["member"]["ledger_account"], args.funding)

        port = free_port()
        server = Server([*serve, "--port", str(port)], env, port, "/healthz")
        try:
            result = drive(server, args, workdir / kind, me["member"]["id"])
        finally:
            server.stop()
    return result


def drive(server: Server, args: argparse.Namespace, workdir: Path, vol_id: str) -> dict[str, Any]:
    client = Client(server.url)
    volunteer = client.login("volunteer", "demo-volunteer-2026")
    elder = client.login("elder", "demo-elder-2026")
    elder_id = client.call("GET", "/v1/me", token=elder)["member"]["id"]
    size = int(client.call("GET", "/v1/log/checkpoint").splitlines()[1])
    rng = random.Random(2026)
    proofs = [
        f"/v1/log/proof/inclusion?index={rng.randrange(size)}&tree_size={size}" for _ in range(64)
    ]
    balance = f"/v1/members/{vol_id}/balance"
    donation = json.dumps({"from_member_id": vol_id, "minutes": 1})
    run = uuid.uuid4().hex[:8]

    figures: dict[str, dict[str, Any]] = {}
    for connections in args.connections:
        log(f"  {connections} connections")
        at = str(connections)
        d = args.duration
        figures.setdefault("checkpoint", {})[at] = run_wrk(
            server, GET_LUA, ["-", "/v1/log/checkpoint"], connections, d
        )
        figures.setdefault("proof", {})[at] = run_wrk(
            server, GET_LUA, ["-", *proofs], connections, d
        )
        figures.setdefault("balance", {})[at] = run_wrk(
            server, GET_LUA, [volunteer, balance], connections, d
        )
        figures.setdefault("donation", {})[at] = run_wrk(
            server,
            WRITE_LUA,
            [volunteer, f"{run}-{at}", "/v1/donations", donation, "0", balance],
            connections,
            d,
        )
        figures.setdefault("mixed", {})[at] = run_wrk(
            server,
            WRITE_LUA,
            [volunteer, f"{run}-m{at}", "/v1/donations", donation, "0.9", balance],
            connections,
            d,
        )
    figures["deposit"] = deposit_path(server, client, args, workdir, elder, elder_id, run)
    return figures


def deposit_path(
    server: Server,
    client: Client,
    args: argparse.Namespace,
    workdir: Path,
    elder: str,
    elder_id: str,
    run: str,
) -> dict[str, Any]:
    """Records logged, confirmed by the elder, verified by staff with TOTP: phase by phase."""
    from demo.bank import current_demo_code

    admin = client.login("admin", "demo-admin-2026")
    # One-minute records, one after another: let a volunteer log a whole day of them, for the
    # past 30 days (a minute each: room for 41,760 records from 29 days back).
    client.call(
        "POST",
        "/v1/policy",
        {"daily_cap_minutes": 1440, "record_late_days": 30},
        token=admin,
        key=f"{run}-cap",
    )
    volunteer = client.login("volunteer", "demo-volunteer-2026")
    connections = args.deposit_connections
    threads = min(2, connections)
    first = int((datetime.now(UTC) - timedelta(days=29)).timestamp()) // 60 * 60
    log(f"  deposit path at {connections} connections")
    prefix = workdir / "records-"
    # Records for three times as long as each later phase runs: confirming is up to 2.5 times
    # faster than recording on a fast machine, and must not run out of fresh records.
    record = run_wrk(
        server,
        RECORD_LUA,
        [volunteer, run, elder_id, str(first), str(threads), str(prefix)],
        connections,
        args.duration * 3,
    )
    ids = [line for n in range(1, threads + 1) for line in Path(f"{prefix}{n}").read_text().split()]
    ids_file = workdir / "records.txt"
    ids_file.write_text("".join(f"{i}\n" for i in ids))
    confirm = run_wrk(
        server,
        IDS_LUA,
        [elder, str(ids_file), "/v1/records/{id}/confirm", "{}", str(threads)],
        connections,
        args.duration,
    )
    staff = client.login("centre-staff", "demo-centre-staff-2026", current_demo_code())
    verify = run_wrk(
        server,
        IDS_LUA,
        [staff, str(ids_file), "/v1/records/{id}/verify", "{}", str(threads)],
        connections,
        args.duration,
    )
    carried = min(confirm["ok"], verify["ok"])
    seconds = confirm["seconds"] + verify["seconds"]
    return {
        "connections": connections,
        "records_available": len(ids),
        "exhausted": confirm["ok"] >= len(ids) or verify["ok"] >= len(ids),
        "record": record,
        "confirm": confirm,
        "verify": verify,
        "deposits_per_s": round(carried / seconds, 1),
    }


# ---------------------------------------------------------------- the ceiling


def bench_ceiling(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "benchmarks.ceiling_app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    if args.workers > 1:
        argv += ["--workers", str(args.workers)]
    server = Server(argv, dict(os.environ), port, "/hello")
    try:
        return {
            str(c): run_wrk(server, GET_LUA, ["-", "/hello"], c, args.duration)
            for c in args.connections
        }
    finally:
        server.stop()


# ---------------------------------------------------------------- main


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "wrk": (wrk.stdout or wrk.stderr).splitlines()[0].strip(),
        "loadavg_before": os.getloadavg(),
    }


def ratios(ceiling: dict[str, Any], db: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for what in ("checkpoint", "proof", "balance", "mixed", "donation"):
        out[what] = {
            c: round(db[what][c]["ok_per_s"] / ceiling[c]["ok_per_s"], 3)
            for c in db.get(what, {})
            if c in ceiling and ceiling[c]["ok_per_s"]
        }
    return out


def targets(ceiling: dict[str, Any], results: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def row(name: str, value: float | None, target: float, higher_is_better: bool = True) -> None:
        met = None if value is None else (value >= target if higher_is_better else value < target)
        rows.append({"target": name, "value": value, "goal": target, "met": met})

    for kind, rate in (("sqlite", 1000.0), ("postgresql", 800.0)):
        db = results.get(kind)
        if not isinstance(db, dict) or "donation" not in db:
            continue
        at32 = db["donation"].get("32")
        row(f"{kind}: durable writes/s at 32 connections", at32 and at32["ok_per_s"], rate)
        if kind == "sqlite":
            row("sqlite: durable write p99 ms at 32", at32 and at32["p99_ms"], 100.0, False)
        r = ratios(ceiling, db)
        for what, goal in (("balance", 0.5), ("checkpoint", 0.8)):
            value = r[what].get("32")
            row(f"{kind}: {what} / ceiling at 32 connections", value, goal)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--connections", default="8,32,128")
    parser.add_argument("--deposit-connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per wrk run")
    parser.add_argument("--entries", type=int, default=2000, help="demo ledger entries")
    parser.add_argument("--funding", type=int, default=80_000, help="minutes to donate from")
    parser.add_argument("--workers", type=int, default=1, help="timebank serve --workers")
    parser.add_argument("--quick", action="store_true", help="2 s runs at 32 connections")
    parser.add_argument(
        "--pg-url", default=os.environ.get("TIMEBANK_BENCH_PG_URL", DEFAULT_PG_ADMIN_URL)
    )
    args = parser.parse_args()
    if args.quick:
        args.duration, args.connections = 2.0, "32"
    args.connections = [int(c) for c in args.connections.split(",")]
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk (make bench-http does it)")

    report: dict[str, Any] = {
        "benchmark": "http",
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {
            "duration_s": args.duration,
            "connections": args.connections,
            "workers": args.workers,
            "demo_entries": args.entries,
        },
    }
    log("ceiling: one-route Litestar app")
    report["ceiling"] = bench_ceiling(args)
    with tempfile.TemporaryDirectory(prefix="timebank-http-") as tmp:
        for kind in args.databases.split(","):
            if kind == "postgresql" and (why := pg_reachable(args.pg_url)):
                report[kind] = {"skipped": why}
                continue
            report[kind] = bench_database(kind, args, Path(tmp))
            report[kind]["ratios_to_ceiling"] = ratios(report["ceiling"], report[kind])
    report["targets"] = targets(report["ceiling"], report)
    report["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    json.dump(report, sys.stdout, indent=1, ensure_ascii=False)
    print()


if __name__ == "__main__":
    main()
