"""Webhook delivery and the outbox's cost, as JSON on stdout (issue 13's targets).

``delivery``: ``--events`` events queued in the outbox of a fresh SQLite bank for one endpoint,
then delivered by the real worker (``partners.delivery.Delivery``: claim, sign, POST, mark) to a
receiver on 127.0.0.1 in another process, which answers 204 and counts what it got. Baseline in
the same run: the same number of signed POSTs sent by the same HTTP code with no database (the
sender's ceiling on this machine). Target: ≥ 500 events/s.

``outbox_cost``: ``--grants`` pool grants (``CareService.grant``, the same call as ``POST
/v1/grants``: a ledger append, then the note and the event in one transaction) to an elder
linked to a partner with ``receive_webhooks`` and a live endpoint (one outbox row each), and as
many to an elder without any link (no row), alternating, on the real log. ``added`` is the
median, over blocks of 50 pairs, of the linked grants' mean over the unlinked ones' minus one
(``added_overall`` over all of them). Target: < 10 %.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import secrets
import statistics
import sys
import tempfile
import time
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from accounts.model import Role
from accounts.protection import Protector
from accounts.service import AccountsService, PersonalInput
from accounts.storage import AccountsStore
from care.service import CareService
from database import Database
from ledger.config import Settings
from ledger.entry import EntryRequest, Posting
from ledger.log import Log
from migrations.runner import upgrade
from partners.delivery import Delivery, http_send
from partners.links import PartnerLinks
from partners.storage import webhook_outbox
from partners.webhooks import HostPolicy, Outbox, signature

PASSWORD = "correct horse battery"


class Counting(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        self.rfile.read(length)
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def serve(port: int) -> None:
    ThreadingHTTPServer(("127.0.0.1", port), Counting).serve_forever()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bank(tmp: Path) -> tuple[Settings, Log, AccountsService, CareService, Outbox, PartnerLinks]:
    settings = Settings.from_env(
        {
            "TIMEBANK_DATA_DIR": str(tmp / "data"),
            "TIMEBANK_DATABASE_URL": f"sqlite:///{tmp / 'bench.db'}",
            "TIMEBANK_LOG_ORIGIN": "timebank.bench/log",
        }
    )
    upgrade(settings.database_url)
    log = Log.open(settings)
    database = Database(settings.database_url)
    store = AccountsStore(database)
    protector = Protector(secrets.token_bytes(32))
    accounts = AccountsService(store, protector, log)
    outbox = Outbox(store, protector, HostPolicy(frozenset(), allow_loopback=True))
    care = CareService(store, accounts, log, events=outbox)
    links = PartnerLinks(store, accounts, log, care.policy, outbox=outbox)
    return settings, log, accounts, care, outbox, links


def delivery(events: int, port: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        _, log, accounts, _, outbox, _ = bank(Path(tmp))
        accounts.create_bank("bench", "bench")
        admin_user = accounts.create_user("bench", "admin", Role.BANK_ADMIN, None, PASSWORD)
        admin = accounts.principal_for_user(admin_user.user.id)
        key, _ = accounts.create_partner_key(admin, "receiver", ["receive_webhooks"])
        url = f"http://127.0.0.1:{port}/hook"
        endpoint, secret = outbox.add_endpoint(admin, key.id, url, "v1", ["transfer.posted"])
        assert secret is not None
        for start in range(0, events, 500):
            with outbox.store.transaction() as tx:
                for n in range(start, min(start + 500, events)):
                    data = {"handle": "mh_bench", "kind": "grant", "minutes": 60, "seq": n}
                    outbox.partner_event(tx, key.id, "transfer.posted", data)
        worker = Delivery(outbox.store, outbox)
        began = time.perf_counter()
        delivered = 0
        while delivered < events:
            attempted = worker.run_once(limit=1000)
            if attempted == 0:
                break
            delivered += attempted
        seconds = time.perf_counter() - began
        with outbox.store.snapshot() as tx:
            left = tx.count(webhook_outbox, webhook_outbox.c.status != "delivered")
        body = b'{"type":"transfer.posted","data":{"minutes":60}}'
        raw_began = time.perf_counter()
        for n in range(events):
            stamp = int(time.time())
            headers = {
                "content-type": "application/json",
                "webhook-id": f"msg_{n}",
                "webhook-timestamp": str(stamp),
                "webhook-signature": signature(secret, f"msg_{n}", stamp, body),
            }
            assert 200 <= http_send(url, headers, body).status < 300
        raw_seconds = time.perf_counter() - raw_began
        log.close()
    return {
        "events": events,
        "delivered": events - left,
        "seconds": round(seconds, 3),
        "events_per_second": round(events / seconds, 1),
        "raw_sender_per_second": round(events / raw_seconds, 1),
        "over_raw": round(raw_seconds / seconds, 3),
        "endpoint": endpoint.id,
    }


def outbox_cost(grants: int, port: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        _, log, accounts, care, outbox, links = bank(Path(tmp))
        accounts.create_bank("bench", "bench")
        admin_user = accounts.create_user("bench", "admin", Role.BANK_ADMIN, None, PASSWORD)
        admin = accounts.principal_for_user(admin_user.user.id)
        org = accounts.create_org(admin, "centre", "community_centre")
        staff_user = accounts.create_user("bench", "staff", Role.ORG_STAFF, org.id, PASSWORD)
        staff = accounts.principal_for_user(staff_user.user.id)
        elders = {}
        for name in ("linked", "unlinked"):
            new = accounts.register_member(
                staff,
                org.id,
                PersonalInput(
                    f"长者{name}", f"1390000000{len(elders)}", birth_date=date(1940, 1, 1)
                ),
                volunteer=False,
                elder=True,
                username=f"elder-{name}",
                password=PASSWORD,
            )
            accounts.set_flag(staff, new.member.id, "living_alone", None)
            assert new.user is not None
            elders[name] = (new.member.id, accounts.principal_for_user(new.user.id))
        key, partner_secret = accounts.create_partner_key(admin, "district", ["receive_webhooks"])
        outbox.add_endpoint(admin, key.id, f"http://127.0.0.1:{port}/hook", "v1")
        partner = accounts.authenticate(partner_secret)
        asked = links.request(partner, ["receive_webhooks"], 30)
        links.approve(elders["linked"][1], asked.id, None)
        donor = accounts.register_member(
            staff,
            org.id,
            PersonalInput("捐赠者", "13800000009", birth_date=date(1980, 1, 1)),
            volunteer=True,
            elder=False,
            username="donor",
            password=PASSWORD,
        )
        assert donor.user is not None
        log.append(  # the donor's served hours, then the pool from her donation
            EntryRequest(
                "deposit",
                "bench-served",
                (
                    Posting("bench:issuance", -grants * 4),
                    Posting(donor.member.ledger_account, grants * 4),
                ),
            )
        )
        giver = accounts.principal_for_user(donor.user.id)
        care.donate(giver, donor.member.id, grants * 4, "bench-pool")
        seconds: dict[str, list[float]] = {"linked": [], "unlinked": []}
        for n in range(grants):
            for name in ("linked", "unlinked") if n % 2 else ("unlinked", "linked"):
                began = time.perf_counter()
                care.grant(admin, elders[name][0], 1, "bench", key=f"{name}-{n}")
                seconds[name].append(time.perf_counter() - began)
        with outbox.store.snapshot() as tx:
            queued = tx.count(webhook_outbox)
        log.close()
    linked, unlinked = statistics.mean(seconds["linked"]), statistics.mean(seconds["unlinked"])
    # The machine is shared: the ratio of each block of 50 alternating pairs, and their median.
    blocks = [
        statistics.mean(seconds["linked"][at : at + 50])
        / statistics.mean(seconds["unlinked"][at : at + 50])
        - 1
        for at in range(0, grants, 50)
    ]
    return {
        "grants_each": grants,
        "outbox_rows": queued,
        "linked_ms": round(linked * 1000, 3),
        "unlinked_ms": round(unlinked * 1000, 3),
        "linked_median_ms": round(statistics.median(seconds["linked"]) * 1000, 3),
        "unlinked_median_ms": round(statistics.median(seconds["unlinked"]) * 1000, 3),
        "added_overall": round(linked / unlinked - 1, 4),
        "added_by_block": [round(b, 4) for b in blocks],
        "added": round(statistics.median(blocks), 4),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--grants", type=int, default=500)
    args = parser.parse_args()
    port = free_port()
    receiver = multiprocessing.Process(target=serve, args=(port,), daemon=True)
    receiver.start()
    time.sleep(0.5)
    try:
        print("delivery …", file=sys.stderr)
        sent = delivery(args.events, port)
        print("outbox cost …", file=sys.stderr)
        cost = outbox_cost(args.grants, port)
    finally:
        receiver.terminate()
    result = {
        "machine": {"cpus": os.cpu_count(), "load": os.getloadavg()},
        "delivery": sent,
        "outbox_cost": cost,
        "targets": {
            "delivery_events_per_second": {
                "target": 500,
                "value": sent["events_per_second"],
                "met": sent["events_per_second"] >= 500,
            },
            "outbox_added_to_a_write": {
                "target": 0.10,
                "value": cost["added"],
                "met": cost["added"] < 0.10,
            },
        },
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
