"""Retried requests never post twice: many donations, each sent again and again with its
Idempotency-Key — one after another, and two at the same moment (one of them told 409 "still
running" and retrying until it gets the stored answer).

Afterwards the ledger holds exactly one donation a key, every answer for a key names the same
entry, and the donor paid exactly once a key. ``make test`` runs a few hundred keys per database;
``make reliability-retries`` runs 10,000 per database for docs/reliability.md
(``TIMEBANK_RETRIED_KEYS``).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from ledger.config import Settings
from ledger.entry import EntryRequest, Posting
from ledger.log import Log
from tests.accounts_world import World, build_world

KEYS = int(os.environ.get("TIMEBANK_RETRIED_KEYS", "300"))
SENDS = 3  # each key: twice at the same moment, then once more afterwards


@pytest.fixture
def world(settings: Settings, log: Log) -> Iterator[World]:
    yield from build_world(settings, log)


def _send(w: World, key: str, busy: list[str]) -> Any:
    """One client's attempt: retry while the first copy is still running (409), as told."""
    for _ in range(200):
        response = w.client.post(
            "/v1/donations",
            headers={**w.as_("vol-a"), "Idempotency-Key": key},
            json={"from_member_id": w.ids["vol-a"], "minutes": 1},
        )
        if response.status_code != 409:
            return response
        busy.append(key)
        time.sleep(float(response.headers.get("retry-after", "1")) / 20)
    raise AssertionError(f"key {key} still running after 200 retries")


@pytest.mark.slow
def test_retried_keys_never_post_twice(world: World) -> None:
    w = world
    w.log.append(
        EntryRequest(
            "deposit",
            "fund-the-donor",
            (Posting("b1:issuance", -KEYS), Posting(w.ids["vol-a-account"], KEYS)),
            {"record": "stored time for the retries", "minutes": KEYS, "weight": 1000},
        )
    )
    size_before = w.log.size()
    answers: dict[str, set[int]] = {}
    statuses: dict[int, int] = {}
    busy: list[str] = []  # 409 "still running" answers, each followed by a retry
    lock = threading.Lock()

    def donate_with_retries(n: int) -> None:
        key = f"retry-{n:06d}"
        barrier = threading.Barrier(2)

        def at_once() -> Any:
            barrier.wait()
            return _send(w, key, busy)

        with ThreadPoolExecutor(max_workers=2) as pair:
            first = list(pair.map(lambda _: at_once(), range(2)))
        later = [_send(w, key, busy) for _ in range(SENDS - 2)]
        with lock:
            for response in [*first, *later]:
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                if response.status_code == 201:
                    answers.setdefault(key, set()).add(response.json()["seq"])

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(donate_with_retries, range(KEYS)))

    assert statuses == {201: KEYS * SENDS}, statuses
    twice = {key: seqs for key, seqs in answers.items() if len(seqs) != 1}
    assert len(answers) == KEYS and not twice, twice
    kinds: Counter[str] = Counter()
    position = size_before
    while position < w.log.size():  # page by page: a page may be shorter than asked
        page = w.log.leaves(position, w.log.size())
        kinds.update(json.loads(leaf.data)["kind"] for leaf in page)
        position += len(page)
    assert kinds["donation"] == KEYS, kinds  # one entry a key, whatever the retries (and the
    # audit trail's seals, appended now and then, beside them)
    balances = w.log.balances([w.ids["vol-a-account"], "b1:pool"])
    assert balances == {w.ids["vol-a-account"]: 0, "b1:pool": KEYS}
    assert w.log.verify().ok
    print(
        f"{KEYS} keys sent {KEYS * SENDS} times ({len(busy)} answered 409 and retried): "
        f"{KEYS} entries, 0 double posts"
    )
