"""The workflow's state machine cannot be bent: no hours minted through members who are not
active, no care served for free, no minutes stuck in a hold, and a repair for a killed step.

Each test here reproduces a way the workflow was bent from outside (see docs/workflow.md,
"What cannot happen"), next to the same call succeeding for someone allowed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from sqlalchemy import update

from care.holds import hold_discrepancies
from care.service import CareService
from care.storage import service_records, service_requests
from ledger.entry import EntryRequest, Posting
from ledger.postings import hold_account
from tests.accounts_world import PASSWORD, World
from tests.test_workflow import (
    _redemption_with_record,
    balance,
    hours_ago,
    log_record,
    ok,
    refused,
)
from tests.test_workflow import world as world

__all__ = ["world"]


def _care(w: World) -> CareService:
    care: CareService = w.client.app.state.care
    return care


def _holds_agree(w: World) -> list[str]:
    return hold_discrepancies(w.accounts.store, lambda accounts: w.log.balances(list(accounts)))


def _login(w: World, username: str) -> dict[str, str]:
    response = w.client.post("/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def _unapproved_session(w: World, username: str) -> dict[str, str]:
    """A session of a member nobody approved: the password does not open one (no login before
    approval), so the test takes an operator's token, as a session opened another way would
    be: the rules below must refuse it all the same."""
    response = w.client.post("/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 401, response.text
    return {"Authorization": f"Bearer {w.accounts.issue_token(username).token}"}


def _fake_elder(w: World) -> str:
    """What the attacker did: a volunteer registers an elder with a login (stays pending)."""
    body = ok(
        w.client.post(
            "/v1/members",
            headers=w.as_("vol-a"),
            json={
                "org_id": w.ids["org_a"],
                "is_elder": True,
                "personal": {"name": "假老人", "phone": "13599990000"},
                "username": "fake-elder",
                "password": PASSWORD,
            },
        ),
        201,
    )
    assert body["member"]["status"] == "pending"
    w.ids["fake-elder"] = body["member"]["id"]
    return str(body["member"]["id"])


def test_no_hours_are_minted_through_a_pending_or_rejected_elder(world: World) -> None:
    w = world
    fake = _fake_elder(w)
    emergency = {"service": "nursing", "minutes": 600}
    body = refused(
        log_record(w, "vol-a", "fake-elder", 12, 1, **emergency), 422, "member-not-active"
    )
    assert body["field"] == "elder_id"
    # the pending elder, logged in, is nobody's elder: no code, no confirmation
    fake_headers = _unapproved_session(w, "fake-elder")
    refused(
        w.client.post(f"/v1/members/{fake}/confirmation-codes", headers=fake_headers),
        422,
        "member-not-active",
    )
    # the same record for an active elder is accepted
    ok(log_record(w, "vol-a", "elder-a", 12, 11), 201)
    # rejected by staff: still refused
    ok(
        w.client.post(
            f"/v1/members/{fake}/reject",
            headers=w.as_("staff-a"),
            json={"reason": "no such person"},
        )
    )
    refused(log_record(w, "vol-a", "fake-elder", 10, 9), 422, "member-not-active")


def test_an_approved_elder_takes_part_once_approved(world: World) -> None:
    w = world
    fake = _fake_elder(w)
    refused(log_record(w, "vol-a", "fake-elder", 10, 9), 422, "member-not-active")
    ok(w.client.post(f"/v1/members/{fake}/approve", headers=w.as_("staff-a")))
    record = ok(log_record(w, "vol-a", "fake-elder", 10, 9), 201)
    confirmed = ok(
        w.client.post(
            f"/v1/records/{record['id']}/confirm",
            headers=_login(w, "fake-elder"),  # approved: her password opens a session now
            json={},
        )
    )
    assert confirmed["status"] == "confirmed"


def test_a_pending_volunteer_is_told_so(world: World) -> None:
    w = world
    registered = w.client.post(
        "/v1/register",
        json={
            "bank_id": "b1",
            "org_id": w.ids["org_a"],
            "username": "new-volunteer",
            "password": PASSWORD,
            "personal": {"name": "新志愿者", "phone": "13700007777"},
        },
    )
    assert registered.status_code == 202, registered.text
    pending = _unapproved_session(w, "new-volunteer")
    response = w.client.post(
        "/v1/records",
        headers=pending,
        json={
            "elder_id": w.ids["elder-a"],
            "service_code": "meal",
            "check_in": hours_ago(3),
            "check_out": hours_ago(2),
        },
    )
    refused(response, 422, "member-not-active")
    ok(log_record(w, "vol-a", "elder-a", 3, 2), 201)  # an approved volunteer logs it


def test_a_request_with_a_record_is_paid_or_released_never_neither(world: World) -> None:
    w = world
    meal, record = _redemption_with_record(w)
    assert balance(w, "elder-a") == (30, 30)
    # the elder cannot cancel once the service is recorded ...
    refused(
        w.client.post(
            f"/v1/requests/{meal['id']}/cancel",
            headers=w.as_("elder-a"),
            json={"reason": "changed my mind"},
        ),
        409,
        "wrong-state",
    )
    # ... staff reject the record, and then the cancel releases the held minutes
    ok(
        w.client.post(
            f"/v1/records/{record['id']}/reject",
            headers=w.as_("staff-a"),
            json={"reason": "the volunteer did not come"},
        )
    )
    ok(
        w.client.post(
            f"/v1/requests/{meal['id']}/cancel",
            headers=w.as_("elder-a"),
            json={"reason": "changed my mind"},
        )
    )
    assert balance(w, "elder-a") == (60, 0)
    # a record can no longer be logged or confirmed against the cancelled request
    refused(log_record(w, "vol-a", "elder-a", 1.4, 1.2, request_id=meal["id"]), 409, "wrong-state")
    refused(
        w.client.post(f"/v1/records/{record['id']}/confirm", headers=w.as_("elder-a"), json={}),
        409,
        "wrong-state",
    )
    assert balance(w, "vol-a") == (0, 0)
    assert _holds_agree(w) == []
    assert w.log.verify().ok


def test_rejecting_the_record_of_a_paid_redemption_pays_the_elder_back(world: World) -> None:
    w = world
    meal, record = _redemption_with_record(w)
    ok(w.client.post(f"/v1/records/{record['id']}/confirm", headers=w.as_("elder-a"), json={}))
    assert balance(w, "elder-a") == (30, 0)  # paid
    ok(
        w.client.post(
            f"/v1/records/{record['id']}/reject",
            headers=w.as_("staff-a"),
            json={"reason": "a neighbour served, not the volunteer"},
        )
    )
    assert balance(w, "elder-a") == (60, 0)  # paid back in the same step
    request = ok(w.client.get(f"/v1/requests/{meal['id']}", headers=w.as_("elder-a")))
    assert request["status"] == "cancelled"
    refunds = [
        e
        for e in _entries(w)
        if e.request.kind == "refund"
        and e.request.id == f"refund:{w.accounts.protector.reference('request', meal['id'])}"
    ]
    assert len(refunds) == 1 and refunds[0].request.body["record"] == record["digest"]
    assert w.log.verify().ok


def test_a_volunteer_withdraws_and_the_request_opens_again_still_held(world: World) -> None:
    w = world
    meal, record = _redemption_with_record(w)
    refused(
        w.client.post(f"/v1/requests/{meal['id']}/withdraw", headers=w.as_("vol-a")),
        409,
        "wrong-state",  # a record was logged: staff reject it first
    )
    ok(
        w.client.post(
            f"/v1/records/{record['id']}/reject", headers=w.as_("staff-a"), json={"reason": "x"}
        )
    )
    back = ok(w.client.post(f"/v1/requests/{meal['id']}/withdraw", headers=w.as_("vol-a")))
    assert (back["status"], back["volunteer_id"]) == ("open", None)
    assert balance(w, "elder-a") == (30, 30)
    # another volunteer takes it: the hold is not placed twice
    ok(w.client.post(f"/v1/requests/{meal['id']}/claim", headers=w.as_("vol-b")))
    assert balance(w, "elder-a") == (30, 30)
    # a volunteer who does not hold the request cannot cancel or withdraw it
    refused(
        w.client.post(
            f"/v1/requests/{meal['id']}/cancel", headers=w.as_("vol-a"), json={"reason": "x"}
        ),
        404,
        "not-found",
    )
    served = ok(log_record(w, "vol-b", "elder-a", 1.4, 1.1, request_id=meal["id"]), 201)
    ok(w.client.post(f"/v1/records/{served['id']}/confirm", headers=w.as_("elder-a"), json={}))
    assert balance(w, "elder-a") == (30, 0)
    assert _holds_agree(w) == []


def _open_redemption(w: World, minutes: int = 10) -> dict[str, Any]:
    return dict(
        ok(
            w.client.post(
                "/v1/requests",
                headers=w.as_("elder-a"),
                json={
                    "elder_id": w.ids["elder-a"],
                    "service_code": "meal",
                    "minutes": minutes,
                    "redeem": True,
                    "window_start": hours_ago(-1),
                    "window_end": hours_ago(-3),
                },
            ),
            201,
        )
    )


def _fund_elder(w: World, minutes: int) -> None:
    w.log.append(
        EntryRequest(
            "deposit",
            f"fund-{minutes}",
            (Posting("b1:issuance", -minutes), Posting(w.ids["elder-a-account"], minutes)),
            {"record": "funding for the test", "minutes": minutes, "weight": 1000},
        )
    )


def test_claims_and_cancels_racing_leave_no_minutes_stuck(world: World) -> None:
    w = world
    _fund_elder(w, 600)
    requests = [_open_redemption(w) for _ in range(12)]
    barrier = threading.Barrier(2)

    def claim(request_id: str) -> None:
        barrier.wait()
        w.client.post(f"/v1/requests/{request_id}/claim", headers=w.as_("vol-a"))

    def cancel(request_id: str) -> None:
        barrier.wait()
        w.client.post(
            f"/v1/requests/{request_id}/cancel", headers=w.as_("elder-a"), json={"reason": "x"}
        )

    for request in requests:
        threads = [
            threading.Thread(target=claim, args=(request["id"],)),
            threading.Thread(target=cancel, args=(request["id"],)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        barrier.reset()
    assert _holds_agree(w) == []
    held = sum(
        ok(w.client.get(f"/v1/requests/{r['id']}", headers=w.as_("elder-a")))["hold_minutes"]
        for r in requests
        if ok(w.client.get(f"/v1/requests/{r['id']}", headers=w.as_("elder-a")))["status"]
        != "cancelled"
    )
    assert balance(w, "elder-a") == (600 - held, held)
    assert w.log.verify().ok


def test_repair_releases_a_hold_a_killed_claim_left_behind(world: World) -> None:
    w = world
    _fund_elder(w, 100)
    request = _open_redemption(w)
    # a claim that appended its reserve and was killed before it marked the request assigned
    w.log.append(
        EntryRequest(
            "reserve",
            f"reserve:{request['id']}",
            (
                Posting(w.ids["elder-a-account"], -10),
                Posting(hold_account(w.ids["elder-a-account"]), 10),
            ),
            {"request": request["id"], "service": "meal", "minutes": 10, "weight": 1000},
        )
    )
    ok(
        w.client.post(
            f"/v1/requests/{request['id']}/cancel", headers=w.as_("elder-a"), json={"reason": "x"}
        )
    )
    problems = _holds_agree(w)
    assert len(problems) == 1 and "holds 10 minutes, but its open requests hold 0" in problems[0]
    assert balance(w, "elder-a") == (90, 10)
    done = _care(w).repair()
    assert done == [f"released 10 minutes held for cancelled request {request['id']}"]
    assert _holds_agree(w) == [] and balance(w, "elder-a") == (100, 0)
    assert _care(w).repair() == []  # nothing left to do, nothing posted twice
    assert w.log.verify().ok


def test_a_hold_placed_before_the_log_used_references_keeps_its_old_name(world: World) -> None:
    """Entries written before requests were named by keyed references say ``reserve:<id>``:
    the rest of such a request's life (here its release) must use the same name, or the
    auditor could not pair them, and nothing is released twice."""
    w = world
    _fund_elder(w, 100)
    request = _open_redemption(w)
    w.log.append(  # what a claim of the older version appended
        EntryRequest(
            "reserve",
            f"reserve:{request['id']}",
            (
                Posting(w.ids["elder-a-account"], -10),
                Posting(hold_account(w.ids["elder-a-account"]), 10),
            ),
            {"request": request["id"], "service": "meal", "minutes": 10, "weight": 1000},
        )
    )
    with w.accounts.store.transaction() as tx:
        tx.conn.execute(
            update(service_requests)
            .where(service_requests.c.id == request["id"])
            .values(status="assigned", volunteer_id=w.ids["vol-a"], hold_minutes=10)
        )
    cancel = f"/v1/requests/{request['id']}/cancel"
    ok(w.client.post(cancel, headers=w.as_("elder-a"), json={"reason": "x"}))
    keyed_name = w.accounts.protector.reference("request", request["id"])
    posted = w.log.entries_by_id([f"release:{request['id']}", f"release:{keyed_name}"])
    assert list(posted) == [f"release:{request['id']}"]
    assert posted[f"release:{request['id']}"].request.body == {"request": request["id"]}
    assert balance(w, "elder-a") == (100, 0) and _holds_agree(w) == []
    assert _care(w).repair() == []


def test_repair_posts_the_deposit_of_a_verification_killed_midway(world: World) -> None:
    w = world
    record = ok(log_record(w, "vol-a", "elder-a", 3, 2), 201)
    ok(w.client.post(f"/v1/records/{record['id']}/confirm", headers=w.as_("elder-a"), json={}))
    # the verification marked the record verified and was killed before its deposit
    with w.accounts.store.transaction() as tx:
        tx.conn.execute(
            update(service_records)
            .where(service_records.c.id == record["id"])
            .values(status="verified", verified_by=w.ids["staff-a"])
        )
    assert balance(w, "vol-a") == (0, 0)
    assert _care(w).repair() == [f"posted the deposit of verified record {record['id']}"]
    assert balance(w, "vol-a") == (60, 0)
    after = ok(w.client.get(f"/v1/records/{record['id']}", headers=w.as_("vol-a")))
    assert after["deposit_seq"] is not None and after["deposit_minutes"] == 60
    assert _care(w).repair() == []


def test_a_reject_after_verification_started_is_refused(world: World) -> None:
    w = world
    record = ok(log_record(w, "vol-a", "elder-a", 3, 2), 201)
    ok(w.client.post(f"/v1/records/{record['id']}/confirm", headers=w.as_("elder-a"), json={}))
    ok(w.client.post(f"/v1/records/{record['id']}/verify", headers=w.as_("staff-a-2fa")))
    refused(
        w.client.post(
            f"/v1/records/{record['id']}/reject", headers=w.as_("staff-a"), json={"reason": "x"}
        ),
        409,
        "wrong-state",
    )
    # racing: many verify/reject pairs, never a deposit for a rejected record
    for n in range(6):
        rec = ok(log_record(w, "vol-a", "elder-a", 10 + n, 9.5 + n), 201)
        ok(w.client.post(f"/v1/records/{rec['id']}/confirm", headers=w.as_("elder-a"), json={}))
        barrier = threading.Barrier(2)

        def verify(record_id: str = rec["id"], gate: threading.Barrier = barrier) -> None:
            gate.wait()
            w.client.post(f"/v1/records/{record_id}/verify", headers=w.as_("staff-a-2fa"))

        def reject(record_id: str = rec["id"], gate: threading.Barrier = barrier) -> None:
            gate.wait()
            w.client.post(
                f"/v1/records/{record_id}/reject", headers=w.as_("staff-a"), json={"reason": "x"}
            )

        threads = [threading.Thread(target=verify), threading.Thread(target=reject)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        final = ok(w.client.get(f"/v1/records/{rec['id']}", headers=w.as_("vol-a")))
        reference = w.accounts.protector.reference("record", rec["id"])
        deposits = [e for e in _entries(w) if e.request.id == f"deposit:{reference}"]
        assert (final["status"] == "verified") == (len(deposits) == 1), final
        assert final["status"] in ("verified", "rejected")


def _entries(w: World) -> Iterator[Any]:
    from ledger.entry import Entry

    size = w.log.size()
    for leaf in w.log.leaves(0, size):
        yield Entry.from_leaf(leaf.data)


def _code(w: World) -> str:
    return str(
        ok(
            w.client.post(
                f"/v1/members/{w.ids['elder-a']}/confirmation-codes", headers=w.as_("family-a")
            ),
            201,
        )["code"]
    )


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def test_confirmation_codes_cannot_be_guessed(world: World) -> None:
    w = world
    record = ok(log_record(w, "vol-a", "elder-a", 3, 2), 201)
    code = _code(w)
    confirm = f"/v1/records/{record['id']}/confirm"
    for _ in range(5):
        refused(
            w.client.post(
                confirm, headers=w.as_("vol-a"), json={"confirmation_code": _wrong(code)}
            ),
            422,
            "invalid-confirmation-code",
        )
    # the record's code confirmation is locked now, even for the right code ...
    body = refused(
        w.client.post(confirm, headers=w.as_("vol-a"), json={"confirmation_code": code}),
        429,
        "too-many-code-attempts",
    )
    assert body["field"] == "confirmation_code"
    # ... and the elder confirms it herself
    assert ok(w.client.post(confirm, headers=w.as_("elder-a"), json={}))["status"] == "confirmed"


def test_a_code_guesser_is_stopped_across_records(world: World) -> None:
    w = world
    code = _code(w)
    for n in range(10):  # wrong codes sent with new records
        refused(
            log_record(w, "vol-a", "elder-a", 30 - n, 29.5 - n, confirmation_code=_wrong(code)),
            422,
            "invalid-confirmation-code",
        )
    refused(
        log_record(w, "vol-a", "elder-a", 15, 14.5, confirmation_code=code),
        429,
        "too-many-code-attempts",
    )
    # the code itself was never used up: the elder's family can still confirm a logged record
    record = ok(log_record(w, "vol-a", "elder-a", 15, 14.5), 201)
    assert (
        ok(
            w.client.post(f"/v1/records/{record['id']}/confirm", headers=w.as_("family-a"), json={})
        )["status"]
        == "confirmed"
    )


def test_parallel_verifications_never_pass_the_stored_time_cap(world: World) -> None:
    w = world
    ok(w.client.post("/v1/policy", headers=w.as_("b1-admin"), json={"stored_cap_minutes": 160}))
    records = []
    for n in range(12):
        record = ok(log_record(w, "vol-a", "elder-a", 30 - n, 29 - n), 201)
        ok(w.client.post(f"/v1/records/{record['id']}/confirm", headers=w.as_("elder-a"), json={}))
        records.append(record["id"])
    barrier = threading.Barrier(len(records))

    def verify(record_id: str) -> None:
        barrier.wait()
        w.client.post(f"/v1/records/{record_id}/verify", headers=w.as_("staff-a-2fa"))

    threads = [threading.Thread(target=verify, args=(r,)) for r in records]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    verified = [ok(w.client.get(f"/v1/records/{r}", headers=w.as_("vol-a"))) for r in records]
    assert all(r["status"] == "verified" for r in verified)
    assert balance(w, "vol-a") == (160, 0)  # the cap, not 12 × 60
    deposits = [
        e
        for e in _entries(w)
        if e.request.kind == "deposit" and e.request.id.startswith("deposit:")
    ]
    assert sum(int(str(e.request.body["to_pool"])) for e in deposits) == 12 * 60 - 160
    for entry in deposits:  # each entry's to_pool is its pool posting
        pooled = sum(p.minutes for p in entry.request.postings if p.account == "b1:pool")
        assert entry.request.body["to_pool"] == pooled
    assert w.log.verify().ok


def test_proxies_are_active_members_and_can_be_revoked(world: World) -> None:
    w = world
    elder = w.ids["elder-a"]
    proxies = f"/v1/members/{elder}/proxies"
    # a pending registration does not become anyone's proxy
    registered = w.client.post(
        "/v1/register",
        json={
            "bank_id": "b1",
            "org_id": w.ids["org_a"],
            "username": "pending-son",
            "password": PASSWORD,
            "personal": {"name": "待审核", "phone": "13700006666"},
        },
    )
    assert registered.status_code == 202, registered.text
    body = refused(
        w.client.post(proxies, headers=w.as_("staff-a"), json={"username": "pending-son"}),
        400,
        "invalid-input",
    )
    assert body["field"] == "username"
    # an active member of another organisation does, once staff confirm her as a relative
    link = w.accounts.declare_relative(w.principal("staff-a"), elder, w.ids["vol-b"], "child")
    w.accounts.decide_relative(w.principal("staff-a"), link.id, confirm=True)
    assert (
        w.client.post(proxies, headers=w.as_("staff-a"), json={"username": "vol-b"}).status_code
        == 204
    )
    son = _login(w, "vol-b")
    assert w.client.get(f"/v1/members/{elder}/balance", headers=son).status_code == 200
    # the elder ends it herself; then it is gone at once
    revoke = f"{proxies}/revoke"
    assert (
        w.client.post(revoke, headers=w.as_("elder-a"), json={"username": "vol-b"}).status_code
        == 204
    )
    assert w.client.get(f"/v1/members/{elder}/balance", headers=son).status_code == 404
    refused(
        w.client.post(revoke, headers=w.as_("elder-a"), json={"username": "vol-b"}),
        404,
        "not-found",
    )
    # staff can revoke too; someone else cannot
    assert (
        w.client.post(proxies, headers=w.as_("staff-a"), json={"username": "vol-b"}).status_code
        == 204
    )
    # the elder and her staff see who acts for her; the proxy's own volunteer peer does not
    for who in ("elder-a", "staff-a"):
        listed = ok(w.client.get(proxies, headers=w.as_(who)))
        assert ("vol-b", w.ids["vol-b"]) in [(p["username"], p["member_id"]) for p in listed]
    refused(w.client.get(proxies, headers=w.as_("vol-a")), 404, "not-found")
    refused(
        w.client.post(revoke, headers=w.as_("vol-a"), json={"username": "vol-b"}), 404, "not-found"
    )
    assert (
        w.client.post(revoke, headers=w.as_("staff-a"), json={"username": "vol-b"}).status_code
        == 204
    )
    after = ok(w.client.get(proxies, headers=w.as_("elder-a")))
    assert "vol-b" not in [p["username"] for p in after]
    events = [
        e
        for e in w.client.app.state.audit.all_events()
        if e.action == "POST /v1/members/{member_id}/proxies/revoke"
    ]
    assert [e.status for e in events] == [204, 404, 404, 204]


def test_request_notes_reach_only_the_people_serving_the_elder(world: World) -> None:
    w = world
    request = ok(
        w.client.post(
            "/v1/requests",
            headers=w.as_("elder-a"),
            json={
                "elder_id": w.ids["elder-a"],
                "service_code": "meal",
                "minutes": 30,
                "window_start": hours_ago(-1),
                "window_end": hours_ago(-2),
                "notes": "复查心脏",
            },
        ),
        201,
    )
    path = f"/v1/requests/{request['id']}"

    def notes(who: str) -> list[Any]:
        one = ok(w.client.get(path, headers=w.as_(who)))["notes"]
        listed = [r["notes"] for r in ok(w.client.get("/v1/requests", headers=w.as_(who)))]
        return [one, *listed]

    assert notes("vol-b") == [None, None]  # a volunteer browsing open requests
    assert notes("elder-a")[0] == "复查心脏" and notes("staff-a")[0] == "复查心脏"
    ok(w.client.post(f"{path}/claim", headers=w.as_("vol-b")))
    assert notes("vol-b") == ["复查心脏", "复查心脏"]  # now assigned to them


def test_a_confirmation_for_the_elder_names_her_in_the_audit_trail(world: World) -> None:
    w = world
    by_staff = ok(log_record(w, "vol-a", "elder-a", 5, 4), 201)
    by_herself = ok(log_record(w, "vol-a", "elder-a", 3, 2), 201)
    for record, who in ((by_staff, "staff-a"), (by_herself, "elder-a")):
        ok(w.client.post(f"/v1/records/{record['id']}/confirm", headers=w.as_(who), json={}))
    events = [
        e
        for e in w.client.app.state.audit.all_events()
        if e.action == "POST /v1/records/{record_id}/confirm"
    ]
    assert [(e.objects, e.on_behalf) for e in events] == [
        ((by_staff["id"],), w.ids["elder-a"]),  # staff acted for her
        ((by_herself["id"],), None),  # she confirmed herself
    ]
