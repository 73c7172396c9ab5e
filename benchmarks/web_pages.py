"""Page weight and server render time of the web app on the demo, as JSON on stdout.

Starts the real ``timebank serve`` on a free 127.0.0.1 port over a freshly seeded demo
database, logs in as each demo person, and for every page: the bytes a browser transfers for it
(HTML + the CSS and JavaScript it loads, uncompressed; fonts excluded — there are none), and the
time from request to the last byte over ``--samples`` sequential requests (p50, p95, max). In the
same run and the same way it times ``/healthz`` (no template, one cheap query), the floor of the
framework and the loopback, so the ratio says what rendering a page costs on this machine.
Targets: every page ≤ 100 KB, p95 ≤ 30 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

TIMEBANK = Path(sys.executable).with_name("timebank")
ASSET = re.compile(r'<(?:script[^>]*\bsrc|link[^>]*rel="stylesheet"[^>]*\bhref)="(/static/[^"]+)"')
IMPORT = re.compile(r'import\("(/static/[^"]+)"\)')
SPRITE = re.compile(r'<use href="(/static/[^"#]+)#')  # the elder's pages' icons
PAGES = {
    None: ["/login", "/register"],
    "volunteer": ["/", "/volunteer", "/volunteer/hours", "/volunteer/give", "/account"],
    "elder": [
        "/",
        "/account",
        "/elder/{me}",
        "/elder/{me}/ask",
        "/elder/{me}/ask/meal",
        "/elder/{me}/confirm",
        "/elder/{me}/requests",
        "/elder/{me}/time",
    ],
    "family": ["/", "/elder/{elder}", "/elder/{elder}/requests"],
    "centre-staff": ["/"],
}
PASSWORDS = {
    "volunteer": "demo-volunteer-2026",
    "elder": "demo-elder-2026",
    "family": "demo-family-2026",
    "centre-staff": "demo-centre-staff-2026",
}
LIMIT_BYTES, LIMIT_P95_MS = 100 * 1024, 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def timed(client: httpx.Client, path: str, samples: int) -> dict[str, float]:
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        response = client.get(path)
        response.read()
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code < 400, (path, response.status_code)
    times.sort()
    return {
        "p50_ms": round(statistics.median(times), 2),
        "p95_ms": round(times[int(len(times) * 0.95) - 1], 2),
        "max_ms": round(times[-1], 2),
    }


def weight(client: httpx.Client, html: str) -> dict[str, Any]:
    assets, seen = {}, set()
    queue = ASSET.findall(html) + SPRITE.findall(html)
    while queue:
        path = queue.pop()
        if path in seen:
            continue
        seen.add(path)
        body = client.get(path).content
        assets[path] = len(body)
        if path.endswith(".js"):
            queue += IMPORT.findall(body.decode("utf-8", "replace"))
    total = len(html.encode()) + sum(assets.values())
    return {"html_bytes": len(html.encode()), "assets": assets, "total_bytes": total}


def login(client: httpx.Client, username: str) -> None:
    page = client.get("/login").text
    token = re.search(r'name="_csrf_token" value="([^"]+)"', page)
    assert token
    done = client.post(
        "/login",
        data={"username": username, "password": PASSWORDS[username], "_csrf_token": token[1]},
    )
    assert done.status_code == 303, done.text


def who_is(client: httpx.Client) -> dict[str, str]:
    """``{me}`` and ``{elder}`` (whom a family proxy acts for) in the pages' paths."""
    me = client.get("/v1/me").json()
    proxied = [g["member_id"] for g in me["roles"] if g["role"] == "family_proxy"]
    return {"me": (me.get("member") or {}).get("id", ""), "elder": next(iter(proxied), "")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200, help="requests per page")
    parser.add_argument("--entries", type=int, default=2000, help="demo ledger entries")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        env = {**os.environ, "TIMEBANK_DATA_DIR": data, "TIMEBANK_AUDIT_SEAL_SECONDS": "3600"}
        env.pop("TIMEBANK_DATABASE_URL", None)
        for step in (["migrate"], ["seed", "--demo", "--entries", str(args.entries)]):
            subprocess.run([str(TIMEBANK), *step], env=env, check=True, capture_output=True)
        port = free_port()
        server = subprocess.Popen(
            [str(TIMEBANK), "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    httpx.get(f"{base}/healthz", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            results: dict[str, Any] = {}
            with httpx.Client(base_url=base) as anonymous:
                floor = timed(anonymous, "/healthz", args.samples)
            for who, paths in PAGES.items():
                with httpx.Client(base_url=base, headers={"accept-language": "zh-CN"}) as client:
                    ids = {"me": "", "elder": ""}
                    if who is not None:
                        login(client, who)
                        ids = who_is(client)
                    for path in (p.format(**ids) for p in paths):
                        html = client.get(path).text
                        entry = {**weight(client, html), **timed(client, path, args.samples)}
                        entry["p95_over_healthz"] = round(entry["p95_ms"] / floor["p95_ms"], 1)
                        shown = path.replace(ids["me"] or "-", "{me}")
                        shown = shown.replace(ids["elder"] or "-", "{elder}")
                        results[f"{who or 'anonymous'} {shown}"] = entry
        finally:
            server.terminate()
            server.wait(timeout=20)
    heaviest = max(results.values(), key=lambda r: r["total_bytes"])
    slowest = max(results.values(), key=lambda r: r["p95_ms"])
    report = {
        "samples_per_page": args.samples,
        "demo_entries": args.entries,
        "loadavg_1m": os.getloadavg()[0],
        "healthz": floor,
        "pages": results,
        "targets": {
            "page_bytes_max": {
                "value": heaviest["total_bytes"],
                "target": LIMIT_BYTES,
                "met": heaviest["total_bytes"] <= LIMIT_BYTES,
            },
            "render_p95_ms_max": {
                "value": slowest["p95_ms"],
                "target": LIMIT_P95_MS,
                "met": slowest["p95_ms"] <= LIMIT_P95_MS,
            },
        },
    }
    json.dump(report, sys.stdout, indent=2, ensure_ascii=False)
    print()


if __name__ == "__main__":
    main()
