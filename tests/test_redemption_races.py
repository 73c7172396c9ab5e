"""Redemptions racing one another: claims, assigns, give-backs, cancels, confirmations,
verifications and rejections of the same request sent at the same moment, for elders whose
stored time cannot pay for all they ask.

Whatever wins each race, afterwards: no balance below zero (no overdraft), every hold account
equal to the minutes its open requests hold (no orphan hold), and every finished redemption
either paid (``redeem:`` posted, or paid back by ``refund:`` when its record was rejected) or
released (``release:``), never neither and never both. A call may lose a race only with a
domain refusal (a 4xx problem over HTTP); anything else fails the test.

``make test`` runs a few hundred redemptions per database; ``make reliability-races`` runs
10,000 per database for the figure in docs/reliability.md (``TIMEBANK_RACE_REDEMPTIONS``).
"""

from __future__ import annotations

import itertools
import os
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta

import pytest

from accounts.errors import AccountsError
from accounts.model import Principal, Role
from accounts.service import PersonalInput
from care.errors import CareError
from care.holds import hold_discrepancies
from care.model import RequestStatus
from care.service import CareService
from ledger.config import Settings
from ledger.entry import EntryRequest, Posting
from ledger.log import Log
from ledger.postings import hold_account
from tests.accounts_world import PASSWORD, World, build_world
from tests.conftest import BACKENDS, make_database, require_pg
from tests.test_workflow import _totp_session

REDEMPTIONS = int(os.environ.get("TIMEBANK_RACE_REDEMPTIONS", "240"))
ELDERS = 6  # few elders, so many redemptions race for each balance
VOLUNTEERS = max(4, REDEMPTIONS // 250)  # each volunteer's visits fit in the last days
MINUTES = 15
# Each elder's stored time pays for about a third of what she will ask: balances run short
# while the races go on, at every size.
FUNDS = MINUTES * max(8, REDEMPTIONS // (ELDERS * 3))


@pytest.fixture(params=BACKENDS)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    if request.param == "postgresql":
        require_pg()
    tmp = tmp_path_factory.mktemp(f"races-{request.param}")
    for url in make_database(request.param, request, tmp):
        settings = Settings.from_env(
            {
                "TIMEBANK_DATA_DIR": str(tmp / "data"),
                "TIMEBANK_DATABASE_URL": url,
                "TIMEBANK_LOG_ORIGIN": "timebank.test/races",
            }
        )
        log = Log.open(settings)
        try:
            yield from build_world(settings, log)
        finally:
            log.close()


class Cast:
    """The people of org A who race: elders with a little stored time, volunteers, a staff
    member who dispatches and rejects, and a second one (with TOTP) who verifies."""

    def __init__(self, w: World) -> None:
        accounts = w.accounts
        staff = accounts.principal_for_user(w.ids["staff-a"])
        admin = accounts.principal_for_user(w.ids["b1-admin"])
        care = self.care = _care(w)
        care.upsert_service_type(admin, "meal", "助餐", "Meals", "meals", 1000, True)
        care.set_policy(admin, {"daily_cap_minutes": 24 * 60})
        verifier = accounts.create_user("b1", "verifier", Role.ORG_STAFF, w.ids["org_a"], PASSWORD)
        w.ids["verifier"] = verifier.user.id
        self.staff = staff
        self.verifier = accounts.authenticate(_totp_session(w, "verifier"))
        self.elders: list[tuple[Principal, str, str]] = []
        for n in range(ELDERS):
            new = accounts.register_member(
                staff,
                w.ids["org_a"],
                PersonalInput(f"长者{n}", f"1370000{n:04d}", birth_date=date(1940, 1, 1)),
                volunteer=False,
                elder=True,
                username=f"race-elder-{n}",
                password=PASSWORD,
            )
            principal = accounts.authenticate(accounts.issue_token(f"race-elder-{n}").token)
            self.elders.append((principal, new.member.id, new.member.ledger_account))
            w.log.append(
                EntryRequest(
                    "deposit",
                    f"fund-{n}",
                    (Posting("b1:issuance", -FUNDS), Posting(new.member.ledger_account, FUNDS)),
                    {"record": "stored time for the race", "minutes": FUNDS, "weight": 1000},
                )
            )
        self.volunteers: list[tuple[Principal, str]] = []
        for n in range(VOLUNTEERS):
            new = accounts.register_member(
                staff,
                w.ids["org_a"],
                PersonalInput(f"志愿者{n}", f"1360000{n:04d}"),
                volunteer=True,
                elder=False,
                username=f"race-vol-{n}",
                password=PASSWORD,
            )
            principal = accounts.authenticate(accounts.issue_token(f"race-vol-{n}").token)
            self.volunteers.append((principal, new.member.id))
        self._slots = [itertools.count(1) for _ in range(VOLUNTEERS)]
        self._lock = threading.Lock()

    def slot(self, volunteer: int) -> tuple[datetime, datetime]:
        """A visit of its own for this volunteer (their records never overlap), recent enough
        to be logged and spread so no day passes the daily cap."""
        with self._lock:
            k = next(self._slots[volunteer])
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=20 * k + 60)
        return start, start + timedelta(minutes=MINUTES)


def _care(w: World) -> CareService:
    care: CareService = w.client.app.state.care
    return care


def _race(calls: list[Callable[[], object]], unexpected: list[str]) -> None:
    """Run ``calls`` at the same moment; a domain refusal is a lost race, anything else is not."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], object]) -> None:
        barrier.wait()
        try:
            call()
        except (CareError, AccountsError):
            pass
        except Exception as error:  # reported with the others below
            unexpected.append(f"{type(error).__name__}: {error}")

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _one_redemption(cast: Cast, rng: random.Random, unexpected: list[str]) -> str | None:
    """Ask, then race each step of the life of a paid request against cancelling it."""
    care = cast.care
    elder, elder_id, _ = rng.choice(cast.elders)
    v = rng.randrange(VOLUNTEERS)
    volunteer, volunteer_id = cast.volunteers[v]
    start, end = cast.slot(v)
    try:
        request = care.create_request(elder, elder_id, "meal", start, end, MINUTES, None, True)
    except (CareError, AccountsError):
        return None
    rid = request.id

    def cancel() -> object:
        return care.cancel(elder, rid, "plans changed")

    dispatch: list[Callable[[], object]] = [
        lambda: care.claim(volunteer, rid),
        lambda: care.assign(cast.staff, rid, volunteer_id),
    ]
    _race([*rng.sample(dispatch, rng.randint(1, 2)), *([cancel] * rng.randint(0, 1))], unexpected)
    if rng.random() < 0.15:
        _race([lambda: care.withdraw(volunteer, rid), cancel][: rng.randint(1, 2)], unexpected)
    if care.get_request(cast.staff, rid).status is not RequestStatus.ASSIGNED:
        return rid
    try:
        record = care.log_record(
            volunteer,
            elder_id=elder_id,
            service_code="meal",
            check_in=start,
            check_out=end,
            minutes=None,
            request_id=rid,
            device_key_id=None,
            signature=None,
            confirmation_code=None,
        )
    except (CareError, AccountsError):
        return rid
    _race([lambda: care.confirm(elder, record.id), *([cancel] * rng.randint(0, 1))], unexpected)
    settle: list[Callable[[], object]] = [
        lambda: care.verify(cast.verifier, record.id),
        lambda: care.reject(cast.staff, record.id, "not as recorded"),
    ]
    _race(rng.sample(settle, rng.randint(1, 2)), unexpected)
    return rid


def _check(w: World, cast: Cast, request_ids: list[str]) -> Counter[str]:
    """The invariants, and how each redemption ended (for the figure)."""
    accounts = [account for _, _, account in cast.elders]
    balances = w.log.balances(accounts + [hold_account(a) for a in accounts])
    overdrawn = {account: minutes for account, minutes in balances.items() if minutes < 0}
    assert not overdrawn, f"overdrafts: {overdrawn}"
    orphans = hold_discrepancies(w.accounts.store, lambda accs: w.log.balances(list(accs)))
    assert orphans == [], orphans
    kinds = ("reserve", "release", "redeem", "refund")
    ref = {r: w.accounts.protector.reference("request", r) for r in request_ids}
    posted = w.log.entries_by_id([f"{k}:{ref[r]}" for r in request_ids for k in kinds])
    outcomes: Counter[str] = Counter()
    for rid in request_ids:
        has = {k for k in kinds if f"{k}:{ref[rid]}" in posted}
        status = _care(w).get_request(cast.staff, rid).status
        if "reserve" not in has:
            assert has == set(), (rid, status, has)
            outcomes[f"never held ({status})"] += 1
        elif status is RequestStatus.CANCELLED and "redeem" in has:  # its record was rejected
            assert has == {"reserve", "redeem", "refund"}, (rid, status, has)
            outcomes["paid, then paid back"] += 1
        elif status is RequestStatus.CANCELLED:
            assert has == {"reserve", "release"}, (rid, status, has)
            outcomes["released"] += 1
        elif status is RequestStatus.COMPLETED:
            assert has == {"reserve", "redeem"}, (rid, status, has)
            outcomes["paid"] += 1
        else:  # open or assigned: still held, counted by the hold check above
            assert has == {"reserve"}, (rid, status, has)
            outcomes[f"still held ({status})"] += 1
    return outcomes


@pytest.mark.slow
def test_racing_redemptions_never_overdraw_strand_or_pay_twice(world: World) -> None:
    cast = Cast(world)
    unexpected: list[str] = []
    seed = int(os.environ.get("TIMEBANK_RACE_SEED", random.randrange(2**32)))
    print(f"racing {REDEMPTIONS} redemptions, seed {seed}")

    def one(n: int) -> str | None:
        return _one_redemption(cast, random.Random(seed + n), unexpected)

    with ThreadPoolExecutor(max_workers=4) as pool:
        request_ids = [rid for rid in pool.map(one, range(REDEMPTIONS)) if rid is not None]
    assert not unexpected, f"{len(unexpected)} calls failed unexpectedly:\n" + "\n".join(
        unexpected[:20]
    )
    outcomes = _check(world, cast, request_ids)
    assert world.log.verify().ok
    print(f"{len(request_ids)} redemptions asked, 0 overdrafts, 0 orphan holds: {dict(outcomes)}")
    # The races must actually race: both ways of ending happen at this size.
    assert outcomes["released"] > 0 and outcomes["paid"] > 0, outcomes
