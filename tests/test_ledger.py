"""The append path on real SQLite and PostgreSQL: rules, idempotency, checkpoints, proofs."""

from __future__ import annotations

import pytest

from ledger.batch_writer import BatchWriter
from ledger.config import Settings
from ledger.entry import EntryRequest, Posting
from ledger.errors import (
    CheckpointConflict,
    IdConflict,
    InsufficientBalance,
    MalformedEntry,
    PostingRuleViolation,
    UnbalancedPostings,
)
from ledger.log import Log
from ledger.merkle import leaf_hash, root_of, verify_consistency, verify_inclusion
from ledger.note import open_checkpoint
from tests.helpers import (
    ISSUANCE,
    POOL,
    REDEMPTION,
    deposit,
    donation,
    drop_append_only_triggers,
    gift,
    grant,
    member,
    raw_sql,
    redemption,
)


def test_deposit_gift_donation_grant_redemption_move_balances(log: Log) -> None:
    a, b = member(1), member(2)
    log.append(deposit("d1", a, 120))
    log.append(gift("g1", a, b, 30))
    log.append(donation("n1", a, 20))
    log.append(grant("p1", b, 15))
    log.append(redemption("r1", b, 45))
    assert [log.balance(x) for x in (a, b, POOL, REDEMPTION, ISSUANCE)] == [70, 0, 5, 45, -120]
    assert log.verify().ok


def test_results_carry_seq_and_the_covering_checkpoint(log: Log) -> None:
    first = log.append(deposit("d1", member(1), 60))
    second = log.append(deposit("d2", member(1), 60))
    assert (first.seq, second.seq) == (0, 1)
    assert second.tree_size >= 2 and not second.replayed


def test_same_id_same_content_is_a_no_op_returning_the_first_result(log: Log) -> None:
    first = log.append(deposit("d1", member(1), 60))
    log.append(deposit("d2", member(1), 60))
    again = log.append(deposit("d1", member(1), 60))
    assert again.replayed and (again.seq, again.leaf_hash) == (first.seq, first.leaf_hash)
    assert again.tree_size == first.tree_size  # a size that has a signed checkpoint
    assert log.size() == 2 and log.balance(member(1)) == 120


def test_same_id_different_content_is_refused(log: Log) -> None:
    log.append(deposit("d1", member(1), 60))
    with pytest.raises(IdConflict, match="seq 0"):
        log.append(deposit("d1", member(1), 61))
    assert log.balance(member(1)) == 60


def test_duplicate_ids_inside_one_batch(log: Log) -> None:
    futures = [log.sequencer.submit(deposit("same", member(1), 60)) for _ in range(5)]
    conflicting = log.sequencer.submit(deposit("same", member(1), 99))
    seqs = {f.result().seq for f in futures}
    assert seqs == {0}
    with pytest.raises(IdConflict):
        conflicting.result()
    assert log.balance(member(1)) == 60


@pytest.mark.parametrize(
    ("request_", "error", "field"),
    [
        (
            EntryRequest("deposit", "x", (Posting(ISSUANCE, -60), Posting(member(1), 50))),
            UnbalancedPostings,
            "postings",
        ),
        (
            EntryRequest("gift", "x", (Posting(ISSUANCE, -60), Posting(member(1), 60))),
            PostingRuleViolation,
            "postings[0]",
        ),
        (
            EntryRequest("donation", "x", (Posting(member(1), -60), Posting(REDEMPTION, 60))),
            PostingRuleViolation,
            "postings[1]",
        ),
        (
            EntryRequest("cashout", "x", (Posting(member(1), -60), Posting(ISSUANCE, 60))),
            PostingRuleViolation,
            "kind",
        ),
        (
            EntryRequest("grant", "x", (Posting(POOL, -1), Posting(member(1), 1))),
            PostingRuleViolation,
            "body.reason",
        ),
        (
            EntryRequest("deposit", "bad id!", (Posting(ISSUANCE, -1), Posting(member(1), 1))),
            MalformedEntry,
            "id",
        ),
        (
            EntryRequest("deposit", "x", (Posting("Alice Wang", -1), Posting(member(1), 1))),
            MalformedEntry,
            "postings[0]",
        ),
        (
            EntryRequest(
                "deposit", "x", (Posting(ISSUANCE, -1), Posting(member(1), 1)), {"h": 1.5}
            ),
            MalformedEntry,
            "body.h",
        ),
        (
            EntryRequest("deposit", "x", (Posting(ISSUANCE, 0), Posting(member(1), 0))),
            MalformedEntry,
            "postings[0]",
        ),
        (
            EntryRequest("deposit", "x", (Posting(ISSUANCE, -(2**60)), Posting(member(1), 2**60))),
            MalformedEntry,
            "postings[0].minutes",
        ),
        (
            EntryRequest("gift", "x", (Posting(member(1), -5), Posting("u:member:z", 5))),
            PostingRuleViolation,
            "postings",
        ),
        (
            EntryRequest(
                "grant", "x", (Posting("t:pool:x", -5), Posting(member(2), 5)), {"reason": "r"}
            ),
            MalformedEntry,
            "postings[0]",
        ),
        (
            EntryRequest("deposit", "x", (Posting("t:issuance", -5), Posting("t:member", 5))),
            MalformedEntry,
            "postings[1]",
        ),
        (
            EntryRequest("seal", "x", (Posting(member(1), -5), Posting(member(2), 5))),
            PostingRuleViolation,
            "postings",
        ),
    ],
)
def test_refused_entries_name_the_field_and_write_nothing(
    log: Log, request_: EntryRequest, error: type[Exception], field: str
) -> None:
    with pytest.raises(error) as info:
        log.append(request_)
    assert getattr(info.value, "field", None) == field
    assert log.size() == 0


def test_member_cannot_go_below_zero(log: Log) -> None:
    log.append(deposit("d1", member(1), 60))
    with pytest.raises(InsufficientBalance):
        log.append(gift("g1", member(1), member(2), 61))
    with pytest.raises(InsufficientBalance):
        log.append(donation("n1", member(3), 1))
    with pytest.raises(InsufficientBalance):
        log.append(grant("p1", member(1), 1))  # pool is empty
    assert log.balance(member(1)) == 60 and log.size() == 1


def test_a_refused_request_does_not_fail_its_batch(log: Log) -> None:
    ok = [log.sequencer.submit(deposit(f"d{i}", member(i), 30)) for i in range(10)]
    bad = log.sequencer.submit(gift("g", member(50), member(1), 10))
    assert [f.result().seq for f in ok] == list(range(10))
    with pytest.raises(InsufficientBalance):
        bad.result()


def test_reversal_negates_once_and_respects_balances(log: Log) -> None:
    a = member(1)
    log.append(deposit("d1", a, 60))
    log.append(deposit("d2", a, 30))
    wrong = EntryRequest(
        "reversal",
        "r0",
        (Posting(ISSUANCE, 30), Posting(a, -30)),
        {"reverses": 0, "reason": "typo"},
    )
    with pytest.raises(PostingRuleViolation, match="negate"):
        log.append(wrong)
    reverse = EntryRequest(
        "reversal",
        "r1",
        (Posting(ISSUANCE, 60), Posting(a, -60)),
        {"reverses": 0, "reason": "logged twice"},
    )
    log.append(reverse)
    assert log.balance(a) == 30
    again = EntryRequest(
        "reversal",
        "r2",
        (Posting(ISSUANCE, 60), Posting(a, -60)),
        {"reverses": 0, "reason": "again"},
    )
    with pytest.raises(PostingRuleViolation, match="already been reversed"):
        log.append(again)
    log.append(redemption("x1", a, 30))
    spent = EntryRequest(
        "reversal",
        "r3",
        (Posting(ISSUANCE, 30), Posting(a, -30)),
        {"reverses": 1, "reason": "spent already"},
    )
    with pytest.raises(InsufficientBalance):
        log.append(spent)
    missing = EntryRequest(
        "reversal",
        "r4",
        (Posting(ISSUANCE, 30), Posting(a, -30)),
        {"reverses": 99, "reason": "nope"},
    )
    with pytest.raises(PostingRuleViolation, match="does not exist"):
        log.append(missing)
    assert log.verify().ok


def test_checkpoint_leaves_and_proofs_verify(log: Log) -> None:
    for i in range(37):
        log.append(deposit(f"d{i}", member(i % 5), 10 + i))
    checkpoint, _ = open_checkpoint(log.checkpoint(), log.signer.verifier, "timebank.test/log")
    assert checkpoint.size == 37
    leaves = [leaf.data for leaf in log.leaves(0, 37)]
    assert root_of(leaf_hash(d) for d in leaves) == checkpoint.root
    for index in (0, 1, 17, 36):
        proof = log.inclusion_proof(index, 37)
        verify_inclusion(leaf_hash(leaves[index]), index, 37, proof, checkpoint.root)
    for first in (1, 2, 7, 16, 36, 37):
        old_root = root_of(leaf_hash(d) for d in leaves[:first])
        verify_consistency(first, 37, old_root, checkpoint.root, log.consistency_proof(first, 37))


def test_empty_log_serves_a_signed_size_zero_checkpoint(log: Log) -> None:
    checkpoint, _ = open_checkpoint(log.checkpoint(), log.signer.verifier)
    assert checkpoint.size == 0


def test_log_refuses_to_sign_a_tree_inconsistent_with_its_last_checkpoint(
    log: Log, db_url: str
) -> None:
    for i in range(4):
        log.append(deposit(f"d{i}", member(1), 10))
    drop_append_only_triggers(db_url)
    raw_sql(db_url, "DELETE FROM log_nodes WHERE level = 2")
    raw_sql(
        db_url,
        "INSERT INTO log_nodes (level, idx, hash) VALUES "
        + (
            "(2, 0, X'" + "00" * 32 + "')"
            if db_url.startswith("sqlite")
            else "(2, 0, '\\x" + "00" * 32 + "')"
        ),
    )
    # A writer that starts now (a restarted process) builds its frontier from the stored tree.
    restarted = BatchWriter(log.store, log.signer, log.origin)
    with pytest.raises(CheckpointConflict):
        restarted.append([deposit("d9", member(1), 10)])
    assert log.size() == 4
    # The running writer kept its own frontier: what it signs is still consistent.
    log.append(deposit("d10", member(1), 10))
    assert log.size() == 5


def test_a_replaced_signing_key_cannot_extend_the_log(log: Log) -> None:
    from ledger.note import Signer

    log.append(deposit("d1", member(1), 60))
    impostor = BatchWriter(log.store, Signer.generate("timebank.test/log"), "timebank.test/log")
    with pytest.raises(CheckpointConflict, match="not signed by this log's key"):
        impostor.append([deposit("d2", member(1), 60)])
    assert log.size() == 1


def test_same_id_with_true_instead_of_1_in_body_is_a_conflict(log: Log) -> None:
    postings = (Posting(ISSUANCE, -60), Posting(member(1), 60))
    log.append(EntryRequest("deposit", "d1", postings, {"record": "r1", "confirmed": 1}))
    with pytest.raises(IdConflict):
        log.append(EntryRequest("deposit", "d1", postings, {"record": "r1", "confirmed": True}))


def test_entries_carry_the_time_of_the_clock_the_log_was_opened_with(settings: Settings) -> None:
    """A clock set in the past (the demo seed's) stamps its times; a clock going backwards never
    takes the log's time backwards."""
    times = iter(
        [
            "2025-06-01T08:00:00.000000Z",
            "2025-07-15T09:30:00.000000Z",
            "2025-07-01T00:00:00.000000Z",  # backwards: the log keeps 15 July
            "2025-08-02T10:00:00.000000Z",
        ]
    )
    clocked = Log.open(settings, clock=lambda: next(times))
    try:
        stamped = [clocked.append(deposit(f"d{i}", member(1), 10)).time for i in range(4)]
        entries = [clocked.entry(seq) for seq in range(4)]
    finally:
        clocked.close()
    assert stamped == [
        "2025-06-01T08:00:00.000000Z",
        "2025-07-15T09:30:00.000000Z",
        "2025-07-15T09:30:00.000001Z",  # a later batch: a microsecond later
        "2025-08-02T10:00:00.000000Z",
    ]
    assert [e.time for e in entries if e is not None] == stamped
    # The real clock afterwards: later than any of them, so still in order.
    real = Log.open(settings)
    try:
        assert real.append(deposit("d4", member(1), 10)).time > stamped[-1]
        assert real.verify().ok
    finally:
        real.close()
