"""Signed webhooks (issue 13): events enter the outbox with the change that causes them and reach
a real receiver on 127.0.0.1, signed (``v1`` checked with the ``standardwebhooks`` package,
``v1a`` with PyNaCl), exactly once after deduplication by ``webhook-id``, through a receiver
that fails, throttles, goes away or is gone for good, and through a worker that dies between
sending and marking."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from accounts.errors import Conflict, InvalidInput
from accounts.storage import AccountsStore
from ledger.entry import EntryRequest, Posting
from partners.delivery import SCHEDULE, Delivery, Reply, http_send
from partners.storage import webhook_endpoints, webhook_outbox
from partners.webhooks import HostPolicy, Outbox
from tests.accounts_world import World
from tests.conftest import BACKENDS
from tests.partners_world import partners_world
from tests.test_authz_matrix import _fresh_elder_b, _slot, _verified_record


class Receiver:
    """A partner's webhook receiver: answers what it is told to, verifies every signature and
    keeps what it received, by ``webhook-id``."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, dict[str, str]]] = []  # scripted, then 204
        self.received: list[dict[str, Any]] = []
        self.secrets: dict[str, str] = {}  # path → whsec_… or whpk_…
        self.bad: list[str] = []
        self.port = 0
        self.server: ThreadingHTTPServer | None = None
        self.start()

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.check(self.path, body, headers)
                receiver.received.append(
                    {"id": headers["webhook-id"], "path": self.path, "body": json.loads(body)}
                )
                status, extra = receiver.answers.pop(0) if receiver.answers else (204, {})
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def check(self, path: str, body: bytes, headers: dict[str, str]) -> None:
        secret = self.secrets[path]
        try:
            if secret.startswith("whsec_"):
                Webhook(secret).verify(body, headers)
            else:
                key = VerifyKey(base64.b64decode(secret.removeprefix("whpk_")))
                signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
                scheme, sig = headers["webhook-signature"].split(",", 1)
                assert scheme == "v1a"
                key.verify(signed, base64.b64decode(sig))
        except (WebhookVerificationError, BadSignatureError, AssertionError) as exc:
            self.bad.append(f"{path}: {exc!r}")

    def unique(self, path: str) -> dict[str, dict[str, Any]]:
        return {m["id"]: m["body"] for m in self.received if m["path"] == path}


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def catch_up(self) -> None:
        """To the real time, when the app (on the real clock) has queued events."""
        self.now = max(self.now, datetime.now(UTC))

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    yield from _started(
        {"TIMEBANK_WEBHOOK_HOSTS": "hooks.district.example"}, request, tmp_path_factory
    )


def _started(
    settings: dict[str, str],
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[World]:
    """The world, its app started with ``settings`` in the environment (read when it opens)
    and the environment restored at once, so no other app of the session sees them."""
    with pytest.MonkeyPatch.context() as env:
        for name, value in settings.items():
            env.setenv(name, value)
        worlds = _world(request, tmp_path_factory)
        w = next(worlds)
    yield w
    for _ in worlds:  # closes the app and the log
        pass


def _world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    for w in partners_world(request, tmp_path_factory):
        admin = w.accounts.principal_for_user(w.ids["b1-admin"])
        key, secret = w.accounts.create_partner_key(
            admin, "district service platform", ["read_points", "receive_webhooks"]
        )
        w.tokens["platform"] = secret
        w.ids["platform"] = key.id
        yield w


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def _store(w: World) -> AccountsStore:
    return w.accounts.store


def _outbox(w: World, clock: Clock) -> Outbox:
    """The app's outbox, which care and the links write to; endpoints to loopback allowed."""
    outbox: Outbox = w.client.app.state.outbox
    return Outbox(_store(w), outbox.protector, HostPolicy(frozenset(), allow_loopback=True), clock)


def _endpoint(w: World, receiver: Receiver, path: str, scheme: str, clock: Clock) -> str:
    admin = w.accounts.principal_for_user(w.ids["b1-admin"])
    endpoint, secret = _outbox(w, clock).add_endpoint(
        admin, w.ids["platform"], receiver.url(path), scheme
    )
    receiver.secrets[path] = (endpoint.public_key or "") if scheme == "v1a" else secret
    return endpoint.id


def _link(w: World, partner: str, who: str, scopes: list[str], **body: str) -> dict[str, Any]:
    asked = w.client.post(
        "/v1/partner/link-requests",
        headers=w.as_(partner),
        json={"scopes": scopes, "valid_days": 30},
    ).json()
    response = w.client.post(f"/v1/links/{asked['id']}/approve", headers=w.as_(who), json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _messages(w: World, endpoint_id: str) -> list[Any]:
    with _store(w).snapshot() as tx:
        return tx.find(webhook_outbox, webhook_outbox.c.endpoint_id == endpoint_id)


def _disable_all(w: World) -> None:
    """Each test starts with no live endpoint (the world is shared by the module)."""
    with _store(w).transaction() as tx:
        for row in tx.find(webhook_endpoints):
            tx.update(webhook_endpoints, row.id, enabled=False)


def _drain(delivery: Delivery, clock: Clock, rounds: int = 40) -> None:
    """Run the worker, moving the clock to the next due time, until nothing is pending."""
    for _ in range(rounds):
        delivery.run_once()
        with delivery.store.snapshot() as tx:
            pending = tx.find(webhook_outbox, webhook_outbox.c.status == "pending")
        if not pending:
            return
        due = min(r.next_attempt_at.replace(tzinfo=UTC) for r in pending)
        clock.now = max(clock.now, due)
    raise AssertionError("messages still pending")


def test_committed_events_arrive_signed_and_once_through_failures(
    world: World, receiver: Receiver
) -> None:
    w = world
    _disable_all(w)
    clock = Clock()
    hmac_id = _endpoint(w, receiver, "/hmac", "v1", clock)
    ed_id = _endpoint(w, receiver, "/ed25519", "v1a", clock)
    link = _link(w, "platform", "vol-b", ["read_points", "receive_webhooks"])
    school = _link(w, "school", "vol-b", ["read_points"])
    handle = link["handle"]

    record = _verified_record(w)  # the deposit commits with its event, one per endpoint
    for endpoint_id in (hmac_id, ed_id):
        (message,) = _messages(w, endpoint_id)
        assert message.event_type == "deposit.verified"
        data = json.loads(message.payload)["data"]
        assert data["handle"] == handle
        assert data["record_id"] == record["id"]
        assert w.ids["vol-b"] not in message.payload  # the member id never leaves
        assert data["receipt_url"] == f"/v1/log/receipt?index={data['seq']}"
    assert school["handle"] not in json.dumps([m.payload for m in _messages(w, hmac_id)])

    clock.catch_up()
    delivery = Delivery(_store(w), _outbox(w, clock), clock=clock, jitter=lambda: 0.5)
    receiver.answers = [(500, {}), (429, {"Retry-After": "900"})]
    delivery.run_once()  # attempt 1 of both: 500 and 429
    assert len(receiver.received) == 2
    clock.advance(SCHEDULE[1] + 1)
    delivery.run_once()  # the one that got 500 is retried after 5 s; the throttled one waits
    assert len(receiver.received) == 3
    clock.advance(600)
    assert delivery.run_once() == 0  # 900 s asked, more than the schedule's 5 min
    clock.advance(301)
    assert delivery.run_once() == 1

    # The link is revoked while the receiver is down: the event waits and arrives later.
    receiver.stop()
    revoked = w.client.post(f"/v1/links/{link['id']}/revoke", headers=w.as_("vol-b"))
    assert revoked.status_code == 200, revoked.text
    assert delivery.run_once() == 2
    assert {m.last_error.split(":")[0] for m in _messages(w, hmac_id) if m.last_error} >= {
        "ConnectionRefusedError"
    }
    receiver.start()  # back on the same port
    _drain(delivery, clock)

    assert receiver.bad == []
    for path, endpoint_id in (("/hmac", hmac_id), ("/ed25519", ed_id)):
        got = receiver.unique(path)
        committed = _messages(w, endpoint_id)
        assert set(got) == {m.id for m in committed}
        assert sorted(b["type"] for b in got.values()) == ["deposit.verified", "link.revoked"]
        assert all(m.status == "delivered" and m.attempts <= len(SCHEDULE) for m in committed)
    # after the revocation, a new deposit tells this partner nothing
    _verified_record(w)
    assert len(_messages(w, hmac_id)) == 2


def test_nothing_is_queued_for_a_change_rolled_back(world: World, receiver: Receiver) -> None:
    w = world
    _disable_all(w)
    clock = Clock()
    endpoint_id = _endpoint(w, receiver, "/rollback", "v1", clock)
    link = _link(w, "platform", "vol-b", ["receive_webhooks"])

    def revoke_that_fails() -> None:
        with _store(w).transaction() as tx:
            w.client.app.state.outbox.partner_event(
                tx, w.ids["platform"], "link.revoked", {"link_id": link["id"]}
            )
            raise Conflict("the revocation failed after its event was written")

    with pytest.raises(Conflict):
        revoke_that_fails()
    assert _messages(w, endpoint_id) == []
    clock.catch_up()
    Delivery(_store(w), _outbox(w, clock), clock=clock).run_once()
    assert receiver.received == []


def test_gone_disables_the_endpoint(world: World, receiver: Receiver) -> None:
    w = world
    _disable_all(w)
    clock = Clock()
    gone_id = _endpoint(w, receiver, "/gone", "v1", clock)
    _link(w, "platform", "vol-b", ["receive_webhooks"])
    _verified_record(w)
    receiver.answers = [(410, {})]
    _drain(Delivery(_store(w), _outbox(w, clock), clock=clock), clock)
    (gone,) = _messages(w, gone_id)
    assert (gone.status, gone.attempts, gone.last_error) == ("dead", 1, "410 Gone")
    with _store(w).snapshot() as tx:
        assert tx.get(webhook_endpoints, gone_id).enabled is False
    _verified_record(w)  # nothing more is queued for a disabled endpoint
    assert len(_messages(w, gone_id)) == 1
    assert len(receiver.received) == 1


def test_after_the_last_attempt_a_dead_letter_and_its_replay(
    world: World, receiver: Receiver
) -> None:
    w = world
    _disable_all(w)
    clock = Clock()
    endpoint_id = _endpoint(w, receiver, "/failing", "v1a", clock)
    _link(w, "platform", "vol-b", ["receive_webhooks"])
    _verified_record(w)
    delivery = Delivery(_store(w), _outbox(w, clock), clock=clock)
    receiver.answers = [(500, {})] * len(SCHEDULE)
    _drain(delivery, clock)
    (dead,) = _messages(w, endpoint_id)
    assert (dead.status, dead.attempts, dead.last_error) == ("dead", len(SCHEDULE), "HTTP 500")
    assert len(receiver.received) == len(SCHEDULE)  # bounded: immediately, then 7 retries
    # the schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h between attempts (±10 %)
    _outbox(w, clock).replay(None, dead.id)
    _drain(delivery, clock)
    (delivered,) = _messages(w, endpoint_id)
    assert (delivered.status, delivered.attempts) == ("delivered", 1)
    assert set(receiver.unique("/failing")) == {dead.id}
    assert receiver.bad == []
    with pytest.raises(Conflict):
        _outbox(w, clock).replay(None, dead.id)  # delivered, not dead


class Crash(BaseException):
    """The worker process dying: nothing in the worker catches it."""


def test_a_worker_dying_between_send_and_mark_sends_again(world: World, receiver: Receiver) -> None:
    w = world
    _disable_all(w)
    clock = Clock()
    endpoint_id = _endpoint(w, receiver, "/crash", "v1", clock)
    _link(w, "platform", "vol-b", ["receive_webhooks"])
    _verified_record(w)

    def send_then_die(url: str, headers: dict[str, str], body: bytes) -> Reply:
        http_send(url, headers, body)
        raise Crash

    clock.catch_up()
    with pytest.raises(Crash):
        Delivery(_store(w), _outbox(w, clock), send_then_die, clock=clock).run_once()
    (message,) = _messages(w, endpoint_id)
    assert (message.status, message.attempts) == ("pending", 1)
    _drain(Delivery(_store(w), _outbox(w, clock), clock=clock), clock)  # a new worker
    assert [m["id"] for m in receiver.received] == [message.id, message.id]
    assert set(receiver.unique("/crash")) == {message.id}  # once after dedup
    assert receiver.bad == []


def test_webhooks_go_only_where_the_admin_allowed() -> None:
    strict = HostPolicy(frozenset({"hooks.district.example"}))
    strict.check("https://hooks.district.example/timebank")
    for url in (
        "http://hooks.district.example/timebank",  # not https
        "https://evil.example/timebank",  # not allowed
        "https://127.0.0.1/timebank",  # loopback
        "http://localhost:8080/x",
        "https://[::1]/x",
        "https://user:pw@hooks.district.example/x",
    ):
        with pytest.raises(InvalidInput) as caught:
            strict.check(url)
        assert caught.value.field == "url"
    HostPolicy(frozenset(), allow_loopback=True).check("http://127.0.0.1:9/x")


def test_a_bank_admin_manages_endpoints_through_the_api(world: World) -> None:
    w = world
    body = {"partner_key_id": w.ids["platform"], "url": "https://hooks.district.example/tb"}
    for who, status in (("staff-b", 403), ("vol-b", 403), ("platform", 403), ("b2-admin", 404)):
        response = w.client.post("/v1/webhook-endpoints", headers=w.as_(who), json=body)
        assert response.status_code == status, (who, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
    for bad, field in (
        ({**body, "url": "http://hooks.district.example/tb"}, "url"),
        ({**body, "url": "https://other.example/tb"}, "url"),
        ({**body, "url": "https://127.0.0.1/tb"}, "url"),
        ({**body, "scheme": "v2"}, "scheme"),
        ({**body, "partner_key_id": w.ids["school"]}, "partner_key_id"),  # no receive_webhooks
    ):
        response = w.client.post("/v1/webhook-endpoints", headers=w.as_("b1-admin"), json=bad)
        assert response.status_code == 400, response.text
        assert response.json()["field"] == field, response.text
    made = w.client.post(
        "/v1/webhook-endpoints", headers=w.as_("b1-admin"), json={**body, "scheme": "v1"}
    )
    assert made.status_code == 201, made.text
    endpoint = made.json()
    assert endpoint["secret"].startswith("whsec_") and endpoint["public_key"] is None
    ed = w.client.post("/v1/webhook-endpoints", headers=w.as_("b1-admin"), json=body).json()
    assert ed["scheme"] == "v1a" and ed["secret"] is None and ed["public_key"].startswith("whpk_")
    listed = w.client.get("/v1/webhook-endpoints", headers=w.as_("b1-admin")).json()
    assert {endpoint["id"], ed["id"]} <= {e["id"] for e in listed}
    assert all("secret" not in e or e["secret"] is None for e in listed)
    off = w.client.post(
        f"/v1/webhook-endpoints/{endpoint['id']}/disable", headers=w.as_("b1-admin")
    ).json()
    assert (off["enabled"], off["disabled_reason"]) == (False, "disabled by an administrator")
    for e in (endpoint, ed):
        w.client.post(f"/v1/webhook-endpoints/{e['id']}/disable", headers=w.as_("b1-admin"))


def test_a_pool_grant_reaches_the_elders_partner_once(world: World, receiver: Receiver) -> None:
    w = world
    _disable_all(w)
    clock = Clock()
    endpoint_id = _endpoint(w, receiver, "/grants", "v1", clock)
    link = _link(w, "platform", "family-a", ["receive_webhooks"], member_id=w.ids["elder-a"])
    body = {"elder_id": w.ids["elder-a"], "minutes": 2, "reason": "winter", "reason_code": "other"}
    headers = {**w.as_("b1-admin"), "Idempotency-Key": f"grant-{endpoint_id}"}
    for _ in range(2):  # a retried grant posts once and tells once
        posted = w.client.post("/v1/grants", headers=headers, json=body)
        assert posted.status_code == 201, posted.text
    (message,) = _messages(w, endpoint_id)
    assert message.event_type == "transfer.posted"
    data = json.loads(message.payload)["data"]
    assert (data["handle"], data["kind"], data["minutes"]) == (link["handle"], "grant", 2)
    assert w.ids["elder-a"] not in message.payload
    _drain(Delivery(_store(w), _outbox(w, clock), clock=clock), clock)
    assert set(receiver.unique("/grants")) == {message.id}
    assert receiver.bad == []


def _meal_endpoint(w: World, receiver: Receiver, clock: Clock) -> str:
    """A partner key asking exchanges and receiving events, with a ``v1`` endpoint."""
    admin = w.accounts.principal_for_user(w.ids["b1-admin"])
    if "meals" not in w.ids:
        key, secret = w.accounts.create_partner_key(
            admin, "meal platform", ["request_exchange", "receive_webhooks"]
        )
        w.ids["meals"], w.tokens["meals"] = key.id, secret
    endpoint, secret = _outbox(w, clock).add_endpoint(
        admin, w.ids["meals"], receiver.url("/meals"), "v1"
    )
    receiver.secrets["/meals"] = secret
    return endpoint.id


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def test_a_confirmed_exchange_tells_its_partner_once(world: World, receiver: Receiver) -> None:
    w = world
    _disable_all(w)
    clock = Clock()
    endpoint_id = _meal_endpoint(w, receiver, clock)
    handle = _link(w, "meals", "vol-b", ["request_exchange"])["handle"]
    asked = []
    for reference in ("meal-cancelled", "meal-confirmed"):
        body = {"handle": handle, "minutes": 1, "reference": reference, "description": "lunch"}
        asked.append(
            _ok(w.client.post("/v1/partner/exchanges", headers=w.as_("meals"), json=body), 201)
        )
    cancel = f"/v1/partner/exchanges/{asked[0]['id']}/cancel"
    _ok(w.client.post(cancel, headers=w.as_("meals")))
    assert _messages(w, endpoint_id) == []  # asking and cancelling tell nothing
    confirm = f"/v1/exchanges/{asked[1]['id']}/confirm"
    confirmed = _ok(w.client.post(confirm, headers=w.as_("vol-b")))
    assert w.client.post(confirm, headers=w.as_("vol-b")).status_code == 409
    (message,) = _messages(w, endpoint_id)
    assert message.event_type == "exchange.confirmed"
    data = json.loads(message.payload)["data"]
    assert data == {
        "exchange_id": asked[1]["id"],
        "reference": "meal-confirmed",
        "handle": handle,
        "minutes": 1,
        "seq": confirmed["seq"],
        "receipt_url": f"/v1/log/receipt?index={confirmed['seq']}",
    }
    assert w.ids["vol-b"] not in message.payload
    _drain(Delivery(_store(w), _outbox(w, clock), clock=clock), clock)
    assert set(receiver.unique("/meals")) == {message.id}
    assert receiver.bad == []


def test_a_paid_redemption_tells_the_elders_partner_when_verified(
    world: World, receiver: Receiver
) -> None:
    w = world
    _disable_all(w)
    clock = Clock()
    endpoint_id = _meal_endpoint(w, receiver, clock)
    staff_b = w.accounts.principal_for_user(w.ids["staff-b"])
    elder = _fresh_elder_b(w)
    w.accounts.grant_proxy(staff_b, elder, "vol-b")
    w.accounts.set_flag(staff_b, elder, "living_alone", None)
    handle = _link(w, "meals", "vol-b", ["receive_webhooks"], member_id=elder)["handle"]
    account = w.accounts.member(elder).ledger_account
    w.log.append(
        EntryRequest(
            "deposit",
            f"test-fund:{elder}",
            (Posting(f"{account.split(':')[0]}:issuance", -60), Posting(account, 60)),
        )
    )
    check_in, check_out = _slot()
    request = _ok(
        w.client.post(
            "/v1/requests",
            headers=w.as_("staff-b"),
            json={
                "elder_id": elder,
                "service_code": "meal",
                "minutes": 30,
                "window_start": check_in.isoformat(),
                "window_end": check_out.isoformat(),
                "redeem": True,
            },
        ),
        201,
    )
    _ok(
        w.client.post(
            f"/v1/requests/{request['id']}/assign",
            headers=w.as_("staff-b"),
            json={"volunteer_id": w.ids["vol-b"]},
        )
    )
    record = _ok(
        w.client.post(
            "/v1/records",
            headers=w.as_("vol-b"),
            json={
                "elder_id": elder,
                "service_code": "meal",
                "request_id": request["id"],
                "check_in": request["window_start"],
                "check_out": request["window_end"],
            },
        ),
        201,
    )
    confirm = f"/v1/records/{record['id']}/confirm"
    _ok(w.client.post(confirm, headers=w.as_("staff-b"), json={}))
    assert _messages(w, endpoint_id) == []  # paid, not yet verified: nothing yet
    _ok(w.client.post(f"/v1/records/{record['id']}/verify", headers=w.as_("staff-b2")))
    (message,) = [m for m in _messages(w, endpoint_id) if m.event_type == "redemption.completed"]
    data = json.loads(message.payload)["data"]
    ref = w.accounts.protector.reference("request", request["id"])
    redeemed = w.log.entries_by_id([f"redeem:{ref}"])[f"redeem:{ref}"]
    assert data == {
        "handle": handle,
        "request_id": request["id"],
        "record_id": record["id"],
        "entry_id": f"redeem:{ref}",
        "minutes": 30,
        "seq": redeemed.seq,
        "receipt_url": f"/v1/log/receipt?index={redeemed.seq}",
    }
    assert elder not in message.payload
    _drain(Delivery(_store(w), _outbox(w, clock), clock=clock), clock)
    assert message.id in receiver.unique("/meals")
    assert receiver.bad == []


def test_a_new_checkpoint_is_published_to_subscribed_endpoints_once(
    world: World, receiver: Receiver
) -> None:
    w = world
    _disable_all(w)
    clock = Clock()
    admin = w.accounts.principal_for_user(w.ids["b1-admin"])
    outbox = _outbox(w, clock)
    with pytest.raises(InvalidInput) as refused:
        outbox.add_endpoint(admin, w.ids["platform"], receiver.url("/x"), "v1", ["nope"])
    assert refused.value.field == "events"
    subscribed, secret = outbox.add_endpoint(
        admin, w.ids["platform"], receiver.url("/log"), "v1", ["checkpoint.published"]
    )
    receiver.secrets["/log"] = secret
    default_id = _endpoint(w, receiver, "/default", "v1", clock)
    delivery = Delivery(_store(w), _outbox(w, clock), clock=clock, checkpoint=w.log.size)

    def told() -> list[int]:
        return [
            json.loads(m.payload)["data"]["tree_size"]
            for m in sorted(_messages(w, subscribed.id), key=lambda m: m.created_at)
        ]

    delivery.run_once()
    first = w.log.size()
    assert told() == [first]
    delivery.run_once()  # nothing appended: nothing new to tell
    assert told() == [first]
    _verified_record(w)  # the log grows
    grown = w.log.size()
    assert grown > first
    _drain(delivery, clock)
    assert told() == [first, grown]
    assert "checkpoint.published" not in {m.event_type for m in _messages(w, default_id)}
    got = receiver.unique("/log")
    assert sorted(b["data"]["tree_size"] for b in got.values()) == [first, grown]
    assert {b["type"] for b in got.values()} == {"checkpoint.published"}
    assert next(iter(got.values()))["data"]["checkpoint_url"] == "/v1/log/checkpoint"
    assert receiver.bad == []


@pytest.fixture(scope="module", params=["sqlite"])  # the thread is the same on PostgreSQL
def serving_world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """An app that delivers webhooks itself, as ``timebank serve`` does by default."""
    yield from _started(
        {"TIMEBANK_WEBHOOK_WORKER": "1", "TIMEBANK_WEBHOOK_ALLOW_LOOPBACK": "1"},
        request,
        tmp_path_factory,
    )


def test_the_app_delivers_webhooks_itself(serving_world: World, receiver: Receiver) -> None:
    w = serving_world
    made = w.client.post(
        "/v1/webhook-endpoints",
        headers=w.as_("b1-admin"),
        json={"partner_key_id": w.ids["platform"], "url": receiver.url("/served")},
    ).json()
    receiver.secrets["/served"] = made["public_key"]
    link = _link(w, "platform", "vol-b", ["receive_webhooks"])
    revoked = w.client.post(f"/v1/links/{link['id']}/revoke", headers=w.as_("vol-b"))
    assert revoked.status_code == 200, revoked.text
    for _ in range(100):
        if receiver.received:
            break
        time.sleep(0.05)
    (got,) = receiver.received
    assert got["body"]["type"] == "link.revoked"
    assert got["body"]["data"] == {"link_id": link["id"], "handle": link["handle"]}
    assert receiver.bad == []
    messages = w.client.get(
        f"/v1/webhook-endpoints/{made['id']}/messages", headers=w.as_("b1-admin")
    ).json()
    for _ in range(100):  # marked just after the receiver answered
        if messages[0]["status"] == "delivered":
            break
        time.sleep(0.05)
        messages = w.client.get(
            f"/v1/webhook-endpoints/{made['id']}/messages", headers=w.as_("b1-admin")
        ).json()
    assert [(m["id"], m["status"], m["attempts"]) for m in messages] == [
        (got["id"], "delivered", 1)
    ]
