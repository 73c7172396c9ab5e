"""Exchanges (issue 13): a partner with ``request_exchange`` on a member's consent link asks to
spend the member's minutes on a service it delivers; the member (or their proxy) confirms or
declines in Timebank; the partner may cancel while it is pending; unanswered ones expire. A
confirmed exchange posts one ``exchange`` entry into the partner's clearing account; a
cancelled, declined or expired one posts nothing; racing confirmations never overdraw. Each
refusal sits next to the same call succeeding for someone allowed."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from accounts.errors import AccountsError
from api.services import Services
from care.errors import CareError
from cli.base import open_log
from demo.bank import (
    DEMO_EXCHANGE_MINUTES,
    DEMO_EXCHANGE_REFERENCE,
    DEMO_PARTNER_NAME,
    seed_demo_bank,
)
from demo.history import DemoClock
from ledger.config import Settings
from ledger.entry import EntryRequest, Posting
from ledger.postings import clearing_account
from partners.exchanges import Exchanges
from tests.accounts_world import World
from tests.conftest import BACKENDS
from tests.partners_world import partners_world

_refs = itertools.count(1)


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    for w in partners_world(request, tmp_path_factory):
        admin = w.accounts.principal_for_user(w.ids["b1-admin"])
        key, secret = w.accounts.create_partner_key(
            admin, "meal platform", ["read_points", "request_exchange"]
        )
        w.tokens["meals"] = secret
        w.ids["meals"] = key.id
        yield w


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def _linked(w: World, partner: str, who: str, scopes: list[str], **body: str) -> str:
    asked = _ok(
        w.client.post(
            "/v1/partner/link-requests",
            headers=w.as_(partner),
            json={"scopes": scopes, "valid_days": 30},
        ),
        201,
    )
    approved = _ok(w.client.post(f"/v1/links/{asked['id']}/approve", headers=w.as_(who), json=body))
    return str(approved["handle"])


def _ask(w: World, handle: str, minutes: int, reference: str | None = None) -> Any:
    return w.client.post(
        "/v1/partner/exchanges",
        headers=w.as_("meals"),
        json={
            "handle": handle,
            "minutes": minutes,
            "reference": reference or f"order-{next(_refs)}",
            "description": "午餐送餐 lunch delivered",
        },
    )


def _balance(w: World, account: str) -> int:
    return w.log.balances([account])[account]


def _entry_id(w: World, exchange_id: str) -> str:
    return "exchange:" + w.accounts.protector.reference("exchange", exchange_id)


def _fund(w: World, account: str, minutes: int) -> None:
    """Minutes into a member's account, as a verified deposit would put them."""
    bank = account.split(":")[0]
    w.log.append(
        EntryRequest(
            "deposit",
            f"test-fund:{next(_refs)}",
            (Posting(f"{bank}:issuance", -minutes), Posting(account, minutes)),
        )
    )


def test_a_partner_asks_and_the_member_confirms_once(world: World) -> None:
    w = world
    account = w.ids["vol-b-account"]
    clearing = clearing_account(account.split(":")[0], w.ids["meals"])
    _fund(w, account, 30)
    before, cleared = _balance(w, account), _balance(w, clearing)

    # a link without request_exchange asks nothing; the same member's link with it does
    reading = _linked(w, "meals", "vol-b", ["read_points"])
    refused = _ask(w, reading, 15)
    assert refused.status_code == 403 and "request_exchange" in refused.json()["detail"]
    handle = _linked(w, "meals", "vol-b", ["read_points", "request_exchange"])
    assert handle == reading  # one handle per member and partner
    asked = _ok(_ask(w, handle, 15, "order-A1"), 201)
    assert asked["status"] == "pending" and asked["seq"] is None and asked["member_id"] is None
    assert (asked["partner"], asked["reference"], asked["minutes"]) == (
        "meal platform",
        "order-A1",
        15,
    )
    # the same reference again is the same exchange; other content under it is a conflict
    again = _ok(_ask(w, handle, 15, "order-A1"))
    assert again["id"] == asked["id"]
    other = _ask(w, handle, 20, "order-A1")
    assert other.status_code == 409 and other.json()["field"] == "reference"
    # a partner without the scope on its key, or with another partner's handle: refused
    assert _ok(_ask(w, handle, 0, "order-A2"), 400)["field"] == "minutes"
    assert (
        w.client.post(
            "/v1/partner/exchanges",
            headers=w.as_("school"),
            json={"handle": handle, "minutes": 5, "reference": "x1", "description": "meal"},
        ).status_code
        == 404
    )

    # the member sees it pending; another volunteer does not; the partner reads only its own
    listed = _ok(w.client.get(f"/v1/members/{w.ids['vol-b']}/exchanges", headers=w.as_("vol-b")))
    assert listed[0]["id"] == asked["id"] and listed[0]["status"] == "pending"
    assert listed[0]["member_id"] == w.ids["vol-b"]
    assert (
        w.client.get(f"/v1/members/{w.ids['vol-b']}/exchanges", headers=w.as_("vol-a")).status_code
        == 404
    )
    path = f"/v1/exchanges/{asked['id']}"
    assert w.client.get(f"/v1/partner{path[3:]}", headers=w.as_("district")).status_code == 404
    assert (
        _ok(w.client.get(f"/v1/partner{path[3:]}", headers=w.as_("meals")))["status"] == "pending"
    )

    # only the member (or their proxy) confirms: not the partner, not another member, not staff
    assert w.client.post(f"{path}/confirm", headers=w.as_("meals")).status_code == 403
    assert w.client.post(f"{path}/confirm", headers=w.as_("vol-a")).status_code == 404
    assert w.client.post(f"{path}/confirm", headers=w.as_("staff-b")).status_code == 403
    assert _balance(w, account) == before
    confirmed = _ok(w.client.post(f"{path}/confirm", headers=w.as_("vol-b")))
    assert confirmed["status"] == "confirmed" and confirmed["seq"] is not None
    assert confirmed["receipt_url"] == f"/v1/log/receipt?index={confirmed['seq']}"
    assert _balance(w, account) == before - 15
    assert _balance(w, clearing) == cleared + 15

    # once: a second confirmation, a decline or a cancellation now are conflicts
    for who, url in (
        ("vol-b", f"{path}/confirm"),
        ("vol-b", f"{path}/decline"),
        ("meals", f"/v1/partner{path[3:]}/cancel"),
    ):
        assert w.client.post(url, headers=w.as_(who)).status_code == 409
    assert _balance(w, account) == before - 15
    entry = w.log.entries_by_id([_entry_id(w, asked["id"])])[_entry_id(w, asked["id"])]
    assert entry.seq == confirmed["seq"] and entry.request.kind == "exchange"
    assert entry.request.body["reference"] == "order-A1"
    assert {p.account: p.minutes for p in entry.request.postings} == {
        account: -15,
        clearing: 15,
    }
    partner_view = _ok(w.client.get(f"/v1/partner{path[3:]}", headers=w.as_("meals")))
    assert partner_view["status"] == "confirmed" and partner_view["seq"] == entry.seq
    assert w.log.verify().ok


def test_a_reference_that_looks_like_a_phone_or_id_number_is_refused(world: World) -> None:
    """The reference goes into the public log: never a mainland mobile or a resident ID."""
    w = world
    handle = _linked(w, "meals", "vol-b", ["read_points", "request_exchange"])
    for personal in (
        "13912345678",
        "tel-13912345678",
        "32010219800101123X",
        "id:320102198001011234",
        "139-1234-5678",  # in groups, as people write them
        "130.5555.4444",
        "320102-19800101-123X",
    ):
        refused = _ok(_ask(w, handle, 5, personal), 400)
        assert refused["field"] == "reference" and "phone or ID" in refused["detail"]
    for fine in (
        "order-20261205-0001",
        "ORD:1391234567",
        "139123456789012",
        "inv/17/202605171",  # digits that only run into a number once the / are gone
        "order:2026:0517:1234567890",
    ):
        assert _ok(_ask(w, handle, 5, fine), 201)["reference"] == fine


def test_a_cancelled_declined_or_expired_exchange_posts_nothing(world: World) -> None:
    w = world
    account = w.ids["vol-b-account"]
    handle = _linked(w, "meals", "vol-b", ["request_exchange"])
    before = _balance(w, account)

    cancelled = _ok(_ask(w, handle, 5), 201)
    path = f"/v1/exchanges/{cancelled['id']}"
    assert (
        w.client.post(f"/v1/partner{path[3:]}/cancel", headers=w.as_("district")).status_code == 404
    )
    assert w.client.post(f"/v1/partner{path[3:]}/cancel", headers=w.as_("vol-b")).status_code == 403
    assert _ok(w.client.post(f"/v1/partner{path[3:]}/cancel", headers=w.as_("meals")))[
        "status"
    ] == ("cancelled")
    assert w.client.post(f"{path}/confirm", headers=w.as_("vol-b")).status_code == 409

    declined = _ok(_ask(w, handle, 5), 201)
    path = f"/v1/exchanges/{declined['id']}"
    assert w.client.post(f"{path}/decline", headers=w.as_("meals")).status_code == 403
    assert _ok(w.client.post(f"{path}/decline", headers=w.as_("vol-b")))["status"] == "declined"
    assert w.client.post(f"{path}/confirm", headers=w.as_("vol-b")).status_code == 409

    lapsing = _ok(_ask(w, handle, 5), 201)
    path = f"/v1/exchanges/{lapsing['id']}"
    service: Exchanges = w.client.app.state.exchanges
    real_clock = service.links.clock
    try:
        service.links.clock = lambda: real_clock() + timedelta(hours=49)
        response = w.client.post(f"{path}/confirm", headers=w.as_("vol-b"))
        assert response.status_code == 409 and "expired" in response.json()["detail"]
        assert _ok(w.client.get(path, headers=w.as_("vol-b")))["status"] == "expired"
    finally:
        service.links.clock = real_clock

    ids = [_entry_id(w, e["id"]) for e in (cancelled, declined, lapsing)]
    assert w.log.entries_by_id(ids) == {}
    assert _balance(w, account) == before
    # the same exchange still pending before its expiry is confirmed by the member
    assert _ok(w.client.post(f"{path}/confirm", headers=w.as_("vol-b")))["status"] == "confirmed"


def test_a_proxy_decides_for_an_elder_and_minutes_must_be_there(world: World) -> None:
    w = world
    elder = w.ids["elder-a"]
    handle = _linked(w, "meals", "family-a", ["request_exchange"], member_id=elder)
    elder_account = w.accounts.member(elder).ledger_account
    have = _balance(w, elder_account)
    too_much = _ok(_ask(w, handle, have + 10), 201)
    path = f"/v1/exchanges/{too_much['id']}"
    assert w.client.post(f"{path}/confirm", headers=w.as_("vol-b")).status_code == 404
    refused = w.client.post(f"{path}/confirm", headers=w.as_("family-a"))
    assert refused.status_code == 422 and refused.json()["field"] == "minutes"
    # refused for want of minutes: still pending, nothing posted, and it can be tried again
    assert _ok(w.client.get(path, headers=w.as_("family-a")))["status"] == "pending"
    assert w.log.entries_by_id([_entry_id(w, too_much["id"])]) == {}
    _fund(w, elder_account, 10)
    confirmed = _ok(w.client.post(f"{path}/confirm", headers=w.as_("family-a")))
    assert confirmed["status"] == "confirmed"
    assert _balance(w, elder_account) == 0


def test_racing_confirmations_never_overdraw_and_post_once(world: World) -> None:
    w = world
    account = w.ids["vol-b-account"]
    handle = _linked(w, "meals", "vol-b", ["request_exchange"])
    _fund(w, account, 100)
    start = _balance(w, account)
    assert 30 <= start < 180
    asked = [_ok(_ask(w, handle, 30), 201)["id"] for _ in range(8)]
    service: Exchanges = w.client.app.state.exchanges
    member, partner = w.principal("vol-b"), w.principal("meals")
    calls: list[Callable[[], object]] = []
    for n, exchange_id in enumerate(asked):
        calls += [lambda e=exchange_id: service.confirm(member, e)] * 2
        if n < 2:
            calls.append(lambda e=exchange_id: service.cancel(partner, e))
    random.shuffle(calls)
    refusals: list[str] = []

    def call(fn: Callable[[], object]) -> None:
        try:
            fn()
        except (AccountsError, CareError) as exc:
            refusals.append(type(exc).__name__)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(call, calls))

    posted = w.log.entries_by_id([_entry_id(w, e) for e in asked])
    statuses = {e: service.partner_exchange(partner, e).status for e in asked}
    confirmed = [e for e, s in statuses.items() if s == "confirmed"]
    assert {_entry_id(w, e) for e in confirmed} == set(posted)  # posted once, only if confirmed
    assert all(s in ("confirmed", "cancelled", "pending") for s in statuses.values()), statuses
    final = _balance(w, account)
    assert final >= 0 and final == start - 30 * len(confirmed)
    if "pending" in statuses.values():  # left pending only when refused for want of minutes
        assert final < 30
    assert "InsufficientBalance" in refusals  # the balance ran short: the race was real
    assert w.log.verify().ok


def test_the_demo_has_one_confirmed_exchange_of_the_demo_platform(tmp_path: Path) -> None:
    """``timebank seed --demo`` (as ``make run``): the platform asked a meal of the elder's
    minutes and her son confirmed it; it is on his /exchanges page and in the log."""
    settings = Settings.from_env(
        {"TIMEBANK_DATA_DIR": str(tmp_path / "data"), "TIMEBANK_LOG_ORIGIN": "timebank.test/demo"}
    )
    services = Services.open(settings, open_log(settings, clock=DemoClock()))
    try:
        seed_demo_bank(
            services.accounts,
            services.care,
            services.log,
            2000,
            members=40,
            partners=services.partners,
        )
        son = services.accounts.user_by_username("family")
        assert son is not None
        family = services.accounts.principal_for_user(son.id)
        (elder_id,) = family.proxied_members()
        (exchange,) = services.exchanges.exchanges_of(family, elder_id)
        assert (exchange.status, exchange.minutes, exchange.reference) == (
            "confirmed",
            DEMO_EXCHANGE_MINUTES,
            DEMO_EXCHANGE_REFERENCE,
        )
        assert exchange.partner_name == DEMO_PARTNER_NAME and exchange.seq is not None
        entry = services.log.entry(exchange.seq)
        assert entry is not None and entry.request.kind == "exchange"
        assert entry.request.body["reference"] == DEMO_EXCHANGE_REFERENCE
    finally:
        services.close()


def test_an_unrelated_login_learns_no_member_id_from_a_link_or_exchange_id(world: World) -> None:
    """A partner holds a handle, never the member's id: a login of the bank that may not see
    the member finds no such link or exchange, worded without the member's id (it named it)."""
    w = world
    _fund(w, w.ids["vol-b-account"], 30)
    asked = _ok(
        w.client.post(
            "/v1/partner/link-requests",
            headers=w.as_("meals"),
            json={"scopes": ["read_points", "request_exchange"], "valid_days": 30},
        ),
        201,
    )
    link = _ok(w.client.post(f"/v1/links/{asked['id']}/approve", headers=w.as_("vol-b"), json={}))
    exchange = _ok(_ask(w, link["handle"], 5), 201)
    member = w.ids["vol-b"]
    for path, missing in (
        (f"/v1/links/{link['id']}", f"no link {link['id']}"),
        (f"/v1/exchanges/{exchange['id']}", f"no exchange {exchange['id']}"),
    ):
        assert _ok(w.client.get(path, headers=w.as_("vol-b")))["id"] in path
        for outsider in ("vol-a", "elder-a"):
            answer = w.client.get(path, headers=w.as_(outsider))
            assert answer.status_code == 404 and member not in answer.text, answer.text
            assert answer.json()["detail"] == missing
    for action in ("confirm", "decline"):
        answer = w.client.post(
            f"/v1/exchanges/{exchange['id']}/{action}",
            headers={**w.as_("vol-a"), "Idempotency-Key": f"outsider-{action}"},
            json={},
        )
        assert answer.status_code == 404 and member not in answer.text, answer.text
    revoke = w.client.post(f"/v1/links/{link['id']}/revoke", headers=w.as_("vol-a"), json={})
    assert revoke.status_code == 404 and member not in revoke.text, revoke.text
    assert _ok(w.client.post(f"/v1/links/{link['id']}/revoke", headers=w.as_("vol-b"), json={}))
