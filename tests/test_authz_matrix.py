"""Every route that reaches an object, called by every role that has no business with it.

Each row of the matrix is one route. For each row a fresh object is made in organisation B of
bank b1 (an elder's request, a volunteer's record, a pending member, a relative link …); every
role outside the object's scope calls the route on it and is refused (404 where existence must
not leak, 403 where the object is visible but the action is not the caller's); then the **same
call on the same object by its owner succeeds**. So each refusal is paired with a success: a
wrong path, a missing route or a refusal of everyone would fail the row, and a refused call that
changed the object anyway would make the owner's call fail.

``test_every_route_is_in_the_matrix`` walks the app's JSON routes: a route that takes an object
id, or a POST, is either a row here or listed with the reason it is not an object access. (The
web pages call the same services; their role boundaries are tested in tests/test_web_*.py.)
"""

from __future__ import annotations

import base64
import itertools
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from litestar.routes import HTTPRoute

from accounts.model import Role
from accounts.service import PersonalInput
from ledger.config import Settings
from ledger.log import Log
from partners.delivery import Delivery
from partners.webhooks import HostPolicy, Outbox
from tests.accounts_world import PASSWORD, World, build_world
from tests.conftest import BACKENDS, make_database, require_pg
from tests.test_workflow import _totp_session

# Everyone who calls: two banks' admins, org A's and org B's staff, an auditor, org A's people,
# org B's volunteer, and a partner platform's key.
ROLES = [
    "b1-admin",
    "b1-admin2",
    "b2-admin",
    "staff-a",
    "admin-a",
    "staff-b",
    "staff-b2",
    "auditor",
    "vol-a",
    "elder-a",
    "family-a",
    "vol-b",
    "partner",
]
STAFF_B = frozenset({"staff-b", "staff-b2"})
BANK_ADMINS = frozenset({"b1-admin", "b1-admin2"})
VOLUNTEERS_B1 = frozenset({"vol-a", "family-a", "vol-b"})  # family-a volunteers too


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    if request.param == "postgresql":
        require_pg()
    tmp = tmp_path_factory.mktemp(f"matrix-{request.param}")
    for url in make_database(request.param, request, tmp):
        settings = Settings.from_env(
            {
                "TIMEBANK_DATA_DIR": str(tmp / "data"),
                "TIMEBANK_DATABASE_URL": url,
                "TIMEBANK_LOG_ORIGIN": "timebank.test/log",
            }
        )
        log = Log.open(settings)
        try:
            for w in build_world(settings, log):
                _furnish(w)
                yield w
        finally:
            log.close()


def _furnish(w: World) -> None:
    """What the rows need beyond the accounts world: a second bank admin and a second org B
    staff member (TOTP sessions for verifying), a catalogue, a vol-b with minutes, a pool."""
    for username, role, org in (
        ("b1-admin2", Role.BANK_ADMIN, None),
        ("staff-b2", Role.ORG_STAFF, w.ids["org_b"]),
    ):
        w.ids[username] = w.accounts.create_user("b1", username, role, org, PASSWORD).user.id
        w.tokens[username] = w.accounts.issue_token(username).token
    w.tokens["staff-b2"] = _totp_session(w, "staff-b2")
    _ok(w.client.post("/v1/policy", headers=w.as_("b1-admin"), json={"daily_cap_minutes": 1440}))
    _ok(
        w.client.post(
            "/v1/catalogue",
            headers=w.as_("b1-admin"),
            json={
                "code": "meal",
                "name_zh": "助餐",
                "name_en": "Meals",
                "category": "meals",
                "weight_permille": 1000,
            },
        )
    )
    _ok(w.client.post(f"/v1/relatives/{w.ids['link-b']}/confirm", headers=w.as_("staff-b")))
    for _ in range(2):  # vol-b earns 2 × 30 minutes through the real workflow
        record = _verified_record(w)
        assert record["status"] == "verified", record
    _ok(
        w.client.post(
            "/v1/donations",
            headers=_keyed(w.as_("vol-b")),
            json={"from_member_id": w.ids["vol-b"], "minutes": 20},
        ),
        201,
    )


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def _keyed(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "Idempotency-Key": secrets.token_hex(8)}


_SLOTS = itertools.count(1)


def _slot() -> tuple[datetime, datetime]:
    """A 30-minute visit of its own: vol-b's records never overlap one another."""
    check_in = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=40 * next(_SLOTS))
    return check_in, check_in + timedelta(minutes=30)


def _request_b(w: World, *, assign: bool) -> dict[str, Any]:
    check_in, check_out = _slot()
    request = _ok(
        w.client.post(
            "/v1/requests",
            headers=w.as_("staff-b"),
            json={
                "elder_id": w.ids["elder-b"],
                "service_code": "meal",
                "minutes": 30,
                "window_start": check_in.isoformat(),
                "window_end": check_out.isoformat(),
            },
        ),
        201,
    )
    if assign:
        request = _ok(
            w.client.post(
                f"/v1/requests/{request['id']}/assign",
                headers=w.as_("staff-b"),
                json={"volunteer_id": w.ids["vol-b"]},
            )
        )
    return dict(request)


def _record_b(w: World, *, confirm: bool = False) -> dict[str, Any]:
    request = _request_b(w, assign=True)
    record = _ok(
        w.client.post(
            "/v1/records",
            headers=w.as_("vol-b"),
            json={
                "elder_id": w.ids["elder-b"],
                "service_code": "meal",
                "request_id": request["id"],
                "check_in": request["window_start"],
                "check_out": request["window_end"],
            },
        ),
        201,
    )
    if confirm:  # org B's first staff member confirms for the elder (she has no phone)
        record = _ok(
            w.client.post(f"/v1/records/{record['id']}/confirm", headers=w.as_("staff-b"), json={})
        )
    return dict(record)


def _verified_record(w: World) -> dict[str, Any]:
    record = _record_b(w, confirm=True)
    return dict(_ok(w.client.post(f"/v1/records/{record['id']}/verify", headers=w.as_("staff-b2"))))


def _pending_b(w: World) -> dict[str, str]:
    name = f"pending-{secrets.token_hex(3)}"
    new = w.accounts.self_register("b1", w.ids["org_b"], name, PASSWORD, _person("何新"))
    return {"pending": new.member.id}


def _person(name: str) -> PersonalInput:
    return PersonalInput(name, f"139{secrets.randbelow(10**8):08d}")


def _fresh_elder_b(w: World) -> str:
    staff_b = w.accounts.principal_for_user(w.ids["staff-b"])
    new = w.accounts.register_member(
        staff_b,
        w.ids["org_b"],
        _person("孙梅"),
        volunteer=False,
        elder=True,
    )
    return new.member.id


def _link_b(w: World) -> dict[str, str]:
    staff_b = w.accounts.principal_for_user(w.ids["staff-b"])
    link = w.accounts.declare_relative(staff_b, w.ids["vol-b"], _fresh_elder_b(w), "child")
    return {"link": link.id}


def _flag_b(w: World) -> dict[str, str]:
    elder = _fresh_elder_b(w)
    staff_b = w.accounts.principal_for_user(w.ids["staff-b"])
    return {"member": elder, "flag": w.accounts.set_flag(staff_b, elder, "empty_nest", None).id}


def _proxy_b(w: World) -> dict[str, str]:
    elder = _fresh_elder_b(w)
    w.accounts.grant_proxy(w.accounts.principal_for_user(w.ids["staff-b"]), elder, "vol-b")
    return {"member": elder}


def _staff_b(w: World) -> dict[str, str]:
    name = f"staff-{secrets.token_hex(3)}"
    user = w.accounts.create_user("b1", name, Role.ORG_STAFF, w.ids["org_b"], PASSWORD)
    return {"user": user.user.id}


def _device_b(w: World) -> dict[str, str]:
    key = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    device = _ok(
        w.client.post(
            "/v1/me/devices",
            headers=w.as_("vol-b"),
            json={"public_key": base64.b64encode(key).decode(), "name": "vol-b phone"},
        ),
        201,
    )
    return {"device": device["id"]}


def _partner_key_b1(w: World) -> dict[str, str]:
    admin = w.accounts.principal_for_user(w.ids["b1-admin"])
    key, _ = w.accounts.create_partner_key(admin, "meal platform", ["read_points"])
    return {"key": key.id}


def _webhook_endpoint_b1(w: World) -> dict[str, str]:
    admin = w.accounts.principal_for_user(w.ids["b1-admin"])
    key, _ = w.accounts.create_partner_key(admin, "district platform", ["receive_webhooks"])
    outbox = Outbox(
        w.accounts.store, w.accounts.protector, HostPolicy(frozenset({"hooks.example"}))
    )
    endpoint, _ = outbox.add_endpoint(admin, key.id, "https://hooks.example/timebank", "v1")
    return {"endpoint": endpoint.id, "key": key.id}


def _dead_letter_b1(w: World) -> dict[str, str]:
    """A message whose endpoint was switched off before it went: a dead letter."""
    made = _webhook_endpoint_b1(w)
    outbox: Outbox = w.client.app.state.outbox
    with w.accounts.store.transaction() as tx:
        outbox.partner_event(tx, made["key"], "link.revoked", {"link_id": "l", "handle": "h"})
    admin = w.accounts.principal_for_user(w.ids["b1-admin"])
    outbox.set_enabled(admin, made["endpoint"], False)
    Delivery(w.accounts.store, outbox).run_once()
    (message,) = outbox.messages(admin, made["endpoint"])
    assert message.status == "dead", message
    outbox.set_enabled(admin, made["endpoint"], True)
    return {"message": message.id}


def _link_request(w: World) -> dict[str, str]:
    """A consent request the matrix's partner key made, not decided yet."""
    asked = _ok(
        w.client.post(
            "/v1/partner/link-requests",
            headers=w.as_("partner"),
            json={"scopes": ["read_points"], "valid_days": 30},
        ),
        201,
    )
    return {"link": asked["id"]}


def _vol_b_link(w: World) -> dict[str, str]:
    """The partner's request, approved by vol-b: the link and the handle it gave."""
    link = _link_request(w)["link"]
    approved = _ok(w.client.post(f"/v1/links/{link}/approve", headers=w.as_("vol-b"), json={}))
    return {"link": link, "handle": approved["handle"]}


def _vol_b_statement_link(w: World) -> dict[str, str]:
    """The partner's link with read_statement, approved by vol-b: the handle it gave."""
    asked = _ok(
        w.client.post(
            "/v1/partner/link-requests",
            headers=w.as_("partner"),
            json={"scopes": ["read_statement"], "valid_days": 30},
        ),
        201,
    )
    link = _ok(w.client.post(f"/v1/links/{asked['id']}/approve", headers=w.as_("vol-b"), json={}))
    return {"handle": link["handle"]}


def _vol_b_exchange(w: World) -> dict[str, str]:
    """A pending exchange of 1 minute the partner asked of vol-b through a link vol-b approved."""
    asked = _ok(
        w.client.post(
            "/v1/partner/link-requests",
            headers=w.as_("partner"),
            json={"scopes": ["request_exchange"], "valid_days": 30},
        ),
        201,
    )
    link = _ok(w.client.post(f"/v1/links/{asked['id']}/approve", headers=w.as_("vol-b"), json={}))
    exchange = _ok(
        w.client.post(
            "/v1/partner/exchanges",
            headers=w.as_("partner"),
            json={
                "handle": link["handle"],
                "minutes": 1,
                # letters only: 16 hex digits may hold a run that looks like a mobile number,
                # which the partner API refuses (a public reference carries no personal data)
                "reference": "order-" + "".join(secrets.choice("abcdefghjk") for _ in range(16)),
                "description": "a meal delivered",
            },
        ),
        201,
    )
    return {"exchange": exchange["id"]}


def _reversal(w: World) -> dict[str, str]:
    donation = _ok(
        w.client.post(
            "/v1/donations",
            headers=_keyed(w.as_("vol-b")),
            json={"from_member_id": w.ids["vol-b"], "minutes": 1},
        ),
        201,
    )
    reversal = _ok(
        w.client.post(
            "/v1/reversals",
            headers=w.as_("b1-admin"),
            json={"seq": donation["seq"], "reason": "entered twice", "reason_code": "duplicate"},
        ),
        201,
    )
    return {"reversal": reversal["id"]}


def _donation_seq(w: World) -> dict[str, str]:
    donation = _ok(
        w.client.post(
            "/v1/donations",
            headers=_keyed(w.as_("vol-b")),
            json={"from_member_id": w.ids["vol-b"], "minutes": 1},
        ),
        201,
    )
    return {"seq": str(donation["seq"])}


def _nothing(_: World) -> dict[str, str]:
    return {}


def _open_request(w: World) -> dict[str, str]:
    return {"request": _request_b(w, assign=False)["id"]}


def _assigned_request(w: World) -> dict[str, str]:
    return {"request": _request_b(w, assign=True)["id"]}


def _logged_record(w: World) -> dict[str, str]:
    return {"record": _record_b(w)["id"]}


def _confirmed_record(w: World) -> dict[str, str]:
    return {"record": _record_b(w, confirm=True)["id"]}


def _vol_b_receipt(w: World) -> dict[str, str]:
    history = _ok(w.client.get(f"/v1/members/{w.ids['vol-b']}/history", headers=w.as_("vol-b")))
    return {"seq": str(history[0]["seq"])}


@dataclass(frozen=True)
class Row:
    """One route: the object it reaches, who owns it, and who may also legitimately call it."""

    method: str
    path: str  # {name} from the object made by ``make``, then from World.ids
    owner: str  # the role whose call succeeds, after all the refusals
    status: int  # the owner's success status
    make: Callable[[World], dict[str, str]] = _nothing
    body: dict[str, Any] | None = None
    allowed: frozenset[str] = frozenset()  # neither refused nor tested here
    keyed: bool = False  # the route moves minutes: an Idempotency-Key goes with every call
    rules: dict[str, str] = field(default_factory=dict)  # role → the rule's problem slug
    notes: str = ""

    @property
    def refused(self) -> list[str]:
        return [who for who in ROLES if who != self.owner and who not in self.allowed]

    @property
    def name(self) -> str:
        return f"{self.method} {self.path}"


_RECORD_ALLOWED = STAFF_B | BANK_ADMINS | {"auditor"}

ROWS: list[Row] = [
    # members and their personal data
    Row(
        "GET", "/v1/members/{elder-b}", "staff-b", 200, allowed=STAFF_B | BANK_ADMINS | {"auditor"}
    ),
    Row(
        "GET",
        "/v1/members/{elder-b}?reveal_reason=calling+her+daughter",
        "staff-b",
        200,
        allowed=STAFF_B | BANK_ADMINS,
    ),
    Row(
        "GET",
        "/v1/members/{elder-b}/relatives",
        "staff-b",
        200,
        allowed=STAFF_B | BANK_ADMINS | {"vol-b"},  # vol-b is her confirmed son
    ),
    Row(
        "GET",
        "/v1/members/{elder-b}/access-records",
        "b1-admin",
        200,
        allowed=BANK_ADMINS | {"auditor"},
    ),
    Row(
        "POST",
        "/v1/members/{pending}/approve",
        "staff-b",
        200,
        _pending_b,
        allowed=STAFF_B | BANK_ADMINS,
    ),
    Row(
        "POST",
        "/v1/members/{pending}/reject",
        "staff-b",
        200,
        _pending_b,
        body={"reason": "not known here"},
        allowed=STAFF_B | BANK_ADMINS,
    ),
    Row(
        "POST",
        "/v1/members/{member}/flags",
        "staff-b",
        201,
        lambda w: {"member": _fresh_elder_b(w)},
        body={"flag": "living_alone"},
        allowed=STAFF_B | BANK_ADMINS,
    ),
    Row(
        "POST",
        "/v1/members/{member}/flags/{flag}/clear",
        "staff-b",
        200,
        _flag_b,
        allowed=STAFF_B | BANK_ADMINS,
    ),
    Row(
        "POST",
        "/v1/members/{member}/relatives",
        "staff-b",
        201,
        lambda w: {"member": _fresh_elder_b(w)},
        body={"relative_id": "{vol-b}", "relation": "grandparent"},
        allowed=STAFF_B | BANK_ADMINS,
    ),
    Row(
        "POST",
        "/v1/members/{member}/proxies",
        "staff-b",
        204,
        lambda w: {"member": _fresh_elder_b(w)},
        body={"username": "vol-b"},
        allowed=STAFF_B | BANK_ADMINS,
    ),
    Row(
        "GET",
        "/v1/members/{member}/proxies",
        "staff-b",
        200,
        _proxy_b,
        allowed=STAFF_B | BANK_ADMINS,
    ),
    Row(
        "POST",
        "/v1/members/{member}/proxies/revoke",
        "staff-b",
        204,
        _proxy_b,
        body={"username": "vol-b"},
        allowed=STAFF_B | BANK_ADMINS,
    ),
    Row(
        "POST",
        "/v1/members/{member}/confirmation-codes",
        "staff-b",
        201,
        lambda w: {"member": w.ids["elder-b"]},
        allowed=STAFF_B | BANK_ADMINS,
    ),
    # relatives, organisations, logins, partner keys, devices
    Row(
        "POST",
        "/v1/relatives/{link}/confirm",
        "staff-b",
        200,
        _link_b,
        allowed=STAFF_B | BANK_ADMINS,
    ),
    Row(
        "POST",
        "/v1/relatives/{link}/reject",
        "staff-b",
        200,
        _link_b,
        allowed=STAFF_B | BANK_ADMINS,
    ),
    Row(
        "GET",
        "/v1/orgs/{org_b}/staff",
        "staff-b",
        200,
        allowed=STAFF_B | BANK_ADMINS | {"auditor"},
    ),
    Row(
        "POST",
        "/v1/orgs/{org_b}/staff",
        "b1-admin",
        201,
        lambda w: {"n": secrets.token_hex(3)},
        body={"username": "new-staff-{n}", "role": "org_staff"},
        allowed=BANK_ADMINS,
    ),
    Row(
        "POST",
        "/v1/orgs/{org_b}/staff/{user}/revoke",
        "b1-admin",
        204,
        _staff_b,
        allowed=BANK_ADMINS,
    ),
    Row("POST", "/v1/users/{user}/disable", "b1-admin", 200, _staff_b, allowed=BANK_ADMINS),
    Row("POST", "/v1/users/{user}/enable", "b1-admin", 200, _staff_b, allowed=BANK_ADMINS),
    Row("POST", "/v1/users/{user}/totp-reset", "b1-admin", 201, _staff_b, allowed=BANK_ADMINS),
    Row(
        "POST",
        "/v1/partner-keys/{key}/revoke",
        "b1-admin",
        200,
        _partner_key_b1,
        allowed=BANK_ADMINS,
    ),
    Row("POST", "/v1/me/devices/{device}/revoke", "vol-b", 200, _device_b),
    # webhook endpoints and their messages (bank admins)
    Row(
        "POST",
        "/v1/webhook-endpoints/{endpoint}/disable",
        "b1-admin",
        200,
        _webhook_endpoint_b1,
        allowed=BANK_ADMINS,
    ),
    Row(
        "POST",
        "/v1/webhook-endpoints/{endpoint}/enable",
        "b1-admin",
        200,
        _webhook_endpoint_b1,
        allowed=BANK_ADMINS,
    ),
    Row(
        "GET",
        "/v1/webhook-endpoints/{endpoint}/messages",
        "b1-admin",
        200,
        _webhook_endpoint_b1,
        allowed=BANK_ADMINS,
    ),
    Row(
        "POST",
        "/v1/webhook-messages/{message}/replay",
        "b1-admin",
        200,
        _dead_letter_b1,
        allowed=BANK_ADMINS,
    ),
    # requests and dispatch
    Row(
        "GET",
        "/v1/requests/{request}",
        "staff-b",
        200,
        _open_request,
        allowed=STAFF_B | BANK_ADMINS | {"auditor"} | VOLUNTEERS_B1,  # open: any volunteer
        notes="an open request is visible to the bank's volunteers so they can claim it",
    ),
    Row(
        "GET",
        "/v1/requests/{request}/visit",
        "vol-b",
        200,
        _assigned_request,
        notes="the elder's name and address: only for the volunteer the request is assigned to",
    ),
    Row(
        "POST",
        "/v1/requests/{request}/assign",
        "staff-b",
        200,
        _open_request,
        body={"volunteer_id": "{vol-b}"},
        allowed=STAFF_B | BANK_ADMINS,
    ),
    Row(
        "POST",
        "/v1/requests/{request}/claim",
        "vol-b",
        200,
        _open_request,
        allowed=VOLUNTEERS_B1,
        notes="any volunteer of the bank may claim an open request",
    ),
    Row(
        "POST",
        "/v1/requests/{request}/withdraw",
        "vol-b",
        200,
        _assigned_request,
        allowed=STAFF_B | BANK_ADMINS,
        notes="the assigned volunteer, or staff, give a request back",
    ),
    Row(
        "POST",
        "/v1/requests/{request}/cancel",
        "staff-b",
        200,
        _open_request,
        body={"reason": "no longer needed"},
        allowed=STAFF_B | BANK_ADMINS,
    ),
    # records, confirmation, verification
    Row("GET", "/v1/records/{record}", "vol-b", 200, _logged_record, allowed=_RECORD_ALLOWED),
    Row(
        "POST",
        "/v1/records/{record}/confirm",
        "staff-b",
        200,
        _logged_record,
        body={},
        allowed=STAFF_B | BANK_ADMINS,
        rules={"vol-b": "self-verification"},
    ),
    Row(
        "POST",
        "/v1/records/{record}/verify",
        "staff-b2",
        200,
        _confirmed_record,
        rules={"vol-b": "self-verification"},
        notes="staff-b confirmed it, so only another org B staff member with TOTP may verify",
    ),
    Row(
        "POST",
        "/v1/records/{record}/reject",
        "staff-b",
        200,
        _confirmed_record,
        body={"reason": "never happened"},
        allowed=STAFF_B | BANK_ADMINS,
        rules={"vol-b": "self-verification"},
        notes="the organisation's staff, or a bank administrator supervising it",
    ),
    # minutes that move
    Row(
        "POST",
        "/v1/gifts",
        "vol-b",
        201,
        body={"from_member_id": "{vol-b}", "to_member_id": "{elder-b}", "minutes": 1},
        keyed=True,
    ),
    Row(
        "POST",
        "/v1/donations",
        "vol-b",
        201,
        body={"from_member_id": "{vol-b}", "minutes": 1},
        keyed=True,
    ),
    Row(
        "POST",
        "/v1/peer-transfers",
        "vol-b",
        422,
        body={"from_member_id": "{vol-b}", "peer": "nowhere", "to_member_id": "x", "minutes": 1},
        keyed=True,
        notes="the owner passes the member check and reaches the peer's (422 unknown-peer: this "
        "world has no peer bank); transfers that settle are in test_peer_transfers.py",
    ),
    Row(
        "POST",
        "/v1/grants",
        "b1-admin",
        201,
        body={"elder_id": "{elder-b}", "minutes": 1, "reason": "winter", "reason_code": "other"},
        keyed=True,
        allowed=BANK_ADMINS,
    ),
    Row(
        "POST",
        "/v1/reversals",
        "b1-admin",
        201,
        _donation_seq,
        body={"seq": "{seq:int}", "reason": "entered twice", "reason_code": "duplicate"},
        allowed=BANK_ADMINS,
    ),
    Row(
        "POST",
        "/v1/reversals/{reversal}/approve",
        "b1-admin2",
        200,
        _reversal,
        allowed=frozenset(
            {"b1-admin"}
        ),  # the requester: refused by the two-admin rule, not by scope
    ),
    Row(
        "POST", "/v1/reversals/{reversal}/reject", "b1-admin2", 200, _reversal, allowed=BANK_ADMINS
    ),
    # balances and receipts
    Row(
        "GET",
        "/v1/members/{vol-b}/balance",
        "vol-b",
        200,
        allowed=STAFF_B | BANK_ADMINS | {"auditor"},
        notes="partner keys read points by handle, through a consent link",
    ),
    Row(
        "GET",
        "/v1/members/{vol-b}/history",
        "vol-b",
        200,
        allowed=STAFF_B | BANK_ADMINS | {"auditor"},
    ),
    Row(
        "GET",
        "/v1/members/{vol-b}/receipts/{seq}",
        "vol-b",
        200,
        _vol_b_receipt,
        allowed=STAFF_B | BANK_ADMINS | {"auditor"},
    ),
    # consent links and the partner's reads (issue 13; other partners in test_partner_links.py)
    Row("GET", "/v1/partner/link-requests/{link}", "partner", 200, _link_request),
    Row("GET", "/v1/partner/members/{handle}/points", "partner", 200, _vol_b_link),
    Row("GET", "/v1/links/{link}", "vol-b", 200, _vol_b_link, allowed=STAFF_B | BANK_ADMINS),
    Row(
        "POST",
        "/v1/links/{link}/approve",
        "vol-b",
        200,
        _link_request,
        body={"member_id": "{vol-b}"},
        notes="consent is the member's or their proxy's: staff and admins are refused too",
    ),
    Row(
        "POST",
        "/v1/links/{link}/decline",
        "vol-b",
        200,
        _link_request,
        body={"member_id": "{vol-b}"},
    ),
    Row(
        "POST",
        "/v1/links/{link}/revoke",
        "vol-b",
        200,
        _vol_b_link,
        allowed=STAFF_B | BANK_ADMINS,
    ),
    Row("GET", "/v1/members/{vol-b}/links", "vol-b", 200, allowed=STAFF_B | BANK_ADMINS),
    # exchanges a partner asks of a linked member (issue 13; more in test_partner_exchanges.py)
    Row("GET", "/v1/partner/exchanges/{exchange}", "partner", 200, _vol_b_exchange),
    Row("POST", "/v1/partner/exchanges/{exchange}/cancel", "partner", 200, _vol_b_exchange),
    Row("GET", "/v1/members/{vol-b}/exchanges", "vol-b", 200, allowed=STAFF_B | BANK_ADMINS),
    Row(
        "GET",
        "/v1/exchanges/{exchange}",
        "vol-b",
        200,
        _vol_b_exchange,
        allowed=STAFF_B | BANK_ADMINS,
    ),
    Row(
        "POST",
        "/v1/exchanges/{exchange}/confirm",
        "vol-b",
        200,
        _vol_b_exchange,
        notes="the member or their proxy decides: staff and admins see it but are refused",
    ),
    Row("POST", "/v1/exchanges/{exchange}/decline", "vol-b", 200, _vol_b_exchange),
    # signed statements and certificates (issue 13; more in test_partner_statements.py)
    Row(
        "GET",
        "/v1/members/{vol-b}/statement",
        "vol-b",
        200,
        allowed=STAFF_B | BANK_ADMINS,
        notes="the member, their proxy, their organisation's staff and bank admins",
    ),
    Row("GET", "/v1/members/{vol-b}/certificate", "vol-b", 200, allowed=STAFF_B | BANK_ADMINS),
    Row("GET", "/v1/partner/members/{handle}/statement", "partner", 200, _vol_b_statement_link),
    Row("GET", "/v1/partner/members/{handle}/certificate", "partner", 200, _vol_b_statement_link),
    # the same as PDF (the signed JSON attached; more in test_partner_pdf.py)
    Row("GET", "/v1/members/{vol-b}/statement.pdf", "vol-b", 200, allowed=STAFF_B | BANK_ADMINS),
    Row("GET", "/v1/members/{vol-b}/certificate.pdf", "vol-b", 200, allowed=STAFF_B | BANK_ADMINS),
    Row("GET", "/v1/partner/members/{handle}/statement.pdf", "partner", 200, _vol_b_statement_link),
    Row(
        "GET", "/v1/partner/members/{handle}/certificate.pdf", "partner", 200, _vol_b_statement_link
    ),
    # statistics (issue 14; the figures themselves in test_stats_coverage.py)
    Row(
        "GET",
        "/v1/stats/coverage?org_id={org_b}",
        "staff-b",
        200,
        allowed=BANK_ADMINS | {"staff-b2", "auditor"},
        notes="another bank's admin: 404; org A's staff: 403; people and partners: 403",
    ),
    Row(
        "POST",
        "/v1/reports",
        "b1-admin",
        201,
        body={"half": "2026-H1"},
        allowed=frozenset({"b1-admin2", "b2-admin"}),
        notes="publishes the caller's bank's report: b1's second admin would find it published "
        "(409), b2's admin publishes b2's own; the figures in test_halfyear.py",
    ),
]

# Routes that reach no object of someone else's, with the reason.
NOT_OBJECT_ACCESS: dict[str, str] = {
    "GET /v1/reports/{report_id}": "public: a published report is a public document",
    "GET /v1/reports/{report_id}/document": "public: a published report's canonical bytes",
    "POST /v1/auth/login": "public: the credentials are the object",
    "POST /v1/auth/logout": "the caller's own session",
    "GET /v1/statements/key": "public: the bank's statement verifier key",
    "GET /v1/federation/key": "public: the bank's key for requests to its peers",
    "GET /v1/federation/witness/key": "public: the bank's witness key for its peers",
    "GET /v1/federation/witness/checkpoint": "public: a peer's public checkpoint we cosigned",
    "POST /v1/federation/witness/add-checkpoint": "a peer log's public checkpoint, signed by "
    "the peer's log key (tlog-witness); tested in test_peer_witnessing.py",
    "POST /v1/federation/transfers": "a peer bank's delivery of its transfer_out, signed by "
    "the peer's request key (RFC 9421); unsigned or forged: 401/422 in test_peer_transfers.py",
    "POST /v1/federation/settlements": "a peer bank's settlement proposal, signed by the "
    "peer's request key (RFC 9421); unsigned: 401, wrong figures: 422 in test_settlement.py",
    "POST /v1/auth/logout-all": "the caller's own sessions",
    "POST /v1/auth/password": "the caller's own password",
    "POST /v1/register": "public self-registration into a named organisation",
    "POST /v1/me/totp": "the caller's own second factor",
    "POST /v1/me/totp/confirm": "the caller's own second factor",
    "POST /v1/me/devices": "the caller's own device key",
    "POST /v1/members": "registers a new member into the caller's organisation",
    "POST /v1/orgs": "creates an organisation in the caller's bank (bank admins)",
    "POST /v1/partner-keys": "creates a key in the caller's bank (bank admins)",
    "POST /v1/webhook-endpoints": "creates an endpoint in the caller's bank for a key of its own "
    "(bank admins; another bank's key is a 404 in test_webhooks.py)",
    "POST /v1/partner/link-requests": "a partner key asks in its own name; people get 403 "
    "(test_partner_links.py)",
    "POST /v1/partner/exchanges": "a partner key asks in its own name of a handle it was given; "
    "another partner's handle is a 404, a link without request_exchange a 403 "
    "(test_partner_exchanges.py)",
    "POST /v1/catalogue": "the caller's bank's catalogue (bank admins; role refusals in "
    "test_workflow.py)",
    "POST /v1/policy": "the caller's bank's policy (bank admins; role refusals in test_workflow.py)",
    "POST /v1/requests": "creates a request; the elder it names is checked like an object below",
    "POST /v1/records": "creates a record; the elder it names is checked like an object below",
    "POST /v1/records/draft": "creates nothing; the elder it names is checked like an object below",
    "GET /v1/banks/{bank_id}": "bank names are public within a bank; another bank's is a 404 "
    "(test_a_foreign_bank_is_not_found)",
    "GET /v1/orgs/{org_id}": "organisations are listed to everyone in their bank; another "
    "bank's is a 404",
}


def _fill(text: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        text = text.replace("{" + name + "}", value)
    return text


def _body(row: Row, values: dict[str, str]) -> dict[str, Any] | None:
    if row.body is None:
        return None
    out: dict[str, Any] = {}
    for key, value in row.body.items():
        if isinstance(value, str) and value.endswith(":int}"):
            out[key] = int(values[value[1:-5]])
        elif isinstance(value, str):
            out[key] = _fill(value, values)
        else:
            out[key] = value
    return out


def _call(w: World, who: str, row: Row, values: dict[str, str]) -> Any:
    headers = w.as_(who)
    if row.keyed:
        headers = _keyed(headers)
    path = _fill(row.path, values)
    if row.method == "GET":
        return w.client.get(path, headers=headers)
    return w.client.post(path, headers=headers, json=_body(row, values) or {})


@dataclass
class Misses:
    lines: list[str] = field(default_factory=list)

    def check(self) -> None:
        assert not self.lines, f"{len(self.lines)} cells went wrong:\n" + "\n".join(self.lines)


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_refused_outside_scope_then_the_owner_succeeds(world: World, row: Row) -> None:
    w = world
    values = {**w.ids, **row.make(w)}
    misses = Misses()
    for who in row.refused:
        response = _call(w, who, row, values)
        if who in row.rules:
            slug = f"urn:timebank:problem:{row.rules[who]}"
            if not 400 <= response.status_code < 500 or response.json().get("type") != slug:
                misses.lines.append(f"{who}: {response.status_code} {response.text[:200]}")
            continue
        if response.status_code not in (401, 403, 404) or (
            response.status_code == 401 and who != "partner"
        ):
            misses.lines.append(f"{who}: {response.status_code} {response.text[:200]}")
        elif response.headers["content-type"] != "application/problem+json":
            misses.lines.append(f"{who}: {response.status_code} not a problem document")
    owner = _call(w, row.owner, row, values)
    if owner.status_code != row.status:
        misses.lines.append(f"owner {row.owner}: {owner.status_code} {owner.text[:300]}")
    misses.check()


def test_another_banks_admin_finds_nothing_of_this_bank(world: World) -> None:
    """Across banks the answer is 404 (existence does not leak), never 403."""
    w = world
    for path in (
        f"/v1/members/{w.ids['elder-b']}",
        f"/v1/orgs/{w.ids['org_b']}",
        f"/v1/orgs/{w.ids['org_b']}/staff",
        f"/v1/members/{w.ids['vol-b']}/balance",
    ):
        assert w.client.get(path, headers=w.as_("b2-admin")).status_code == 404, path
        assert w.client.get(path, headers=w.as_("b1-admin")).status_code == 200, path


def test_a_foreign_bank_is_not_found(world: World) -> None:
    w = world
    assert w.client.get("/v1/banks/b2", headers=w.as_("vol-a")).status_code == 404
    assert w.client.get("/v1/banks/b1", headers=w.as_("vol-a")).status_code == 200
    assert w.client.get(f"/v1/orgs/{w.ids['org_c']}", headers=w.as_("vol-a")).status_code == 404
    assert w.client.get(f"/v1/orgs/{w.ids['org_b']}", headers=w.as_("vol-a")).status_code == 200


def _route_names(w: World) -> set[str]:
    names = set()
    for route in w.client.app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        path = re.sub(r"\{[^}]+\}", "{x}", route.path)
        for method in route.methods - {"HEAD", "OPTIONS"}:
            names.add(f"{method} {path}")
    return names


def _template(name: str) -> str:
    """``GET /v1/members/{elder-b}?…`` → ``GET /v1/members/{x}``: the route a row calls."""
    method, path = name.split(" ", 1)
    path = path.split("?", 1)[0]
    parts = ["{x}" if part.startswith("{") else part for part in path.split("/")]
    return f"{method} {'/'.join(parts)}"


def test_every_route_is_in_the_matrix(world: World) -> None:
    routes = _route_names(world)
    covered = {_template(row.name) for row in ROWS} | {
        _template(name) for name in NOT_OBJECT_ACCESS
    }
    assert covered <= routes, f"not routes of the app: {sorted(covered - routes)}"
    missing = sorted(
        name
        for name in routes
        if " /v1/" in name and (name.startswith("POST") or "{x}" in name) and name not in covered
    )
    assert not missing, (
        "routes that take an object id or change state, missing from the matrix "
        "(add a Row with its owner, or a reason in NOT_OBJECT_ACCESS):\n" + "\n".join(missing)
    )


def test_the_matrix_counts_its_cells() -> None:
    """The figure in docs/reliability.md: refusals, each paired with its owner's success."""
    cells = sum(len(row.refused) for row in ROWS)
    assert len(ROWS) >= 35 and cells >= 250, (len(ROWS), cells)
    print(f"BOLA matrix: {len(ROWS)} routes, {cells} refusal cells, {len(ROWS)} paired successes")
