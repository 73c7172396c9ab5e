"""An insider edits the database behind the app's back: ``timebank verify`` names what changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audit.trail import AuditTrail
from audit.witness_history import record_witnesses
from cli.main import main
from federation.peers import Peers, request_key_name, witness_key_name
from federation.storage import PeerStore
from ledger import verify_chunks
from ledger.config import Settings
from ledger.entry import EntryRequest, Posting, canonical_json
from ledger.log import Log
from ledger.note import COSIGNATURE_V1, Checkpoint, Note, Signer, cosign, sign_checkpoint
from tests.helpers import ISSUANCE, deposit, drop_append_only_triggers, gift, member, raw_sql

ENTRIES = 12


def _blob(db_url: str, data: bytes) -> str:
    return f"X'{data.hex()}'" if db_url.startswith("sqlite") else f"'\\x{data.hex()}'::bytea"


def _leaf(log: Log, seq: int) -> dict[str, object]:
    return json.loads(log.leaves(seq, seq + 1)[0].data)  # type: ignore[no-any-return]


class Mode:
    """How ``timebank verify`` runs: one process, or in chunks of 4 entries in 2 worker
    processes (``ledger.verify_chunks``), whose answer on a tampered log must be "not clean"
    (then the one-process replay names the problems) unless only what the parent checks
    itself (checkpoints, the balance cache) was touched."""

    def __init__(self, chunked: bool) -> None:
        self.chunked = chunked
        self.answers: list[object] = []

    def rejected(self) -> bool:
        """Every check in chunks (if any ran) refused the log."""
        return not self.chunked or (
            bool(self.answers) and all(isinstance(a, str) for a in self.answers)
        )


@pytest.fixture(params=["one process", "chunks"], autouse=True)
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Mode:
    mode = Mode(request.param == "chunks")
    if mode.chunked:
        monkeypatch.setattr(verify_chunks, "PARALLEL_ENTRIES", 0)
        monkeypatch.setattr(verify_chunks, "CHUNK_BITS", 2)
        monkeypatch.setattr(verify_chunks, "default_workers", lambda: 2)  # also on one CPU
        real = verify_chunks.verify_in_chunks

        def recorded(*args: object, **kwargs: object) -> object:
            answer = real(*args, **kwargs)  # type: ignore[arg-type]
            mode.answers.append(answer)
            return answer

        monkeypatch.setattr(verify_chunks, "verify_in_chunks", recorded)
    return mode


@pytest.fixture
def filled(log: Log, db_url: str, mode: Mode) -> Log:
    for i in range(ENTRIES - 2):
        log.append(deposit(f"d{i}", member(i % 3), 60 + i))
    log.append(gift("g1", member(0), member(1), 25))
    log.append(gift("g2", member(1), member(2), 5))
    assert log.verify().ok
    if mode.chunked:  # the untouched log was accepted in chunks
        assert [type(a) for a in mode.answers] == [verify_chunks.Joined]
        mode.answers.clear()
    drop_append_only_triggers(db_url)
    return log


def _run_verify(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    monkeypatch.setenv("TIMEBANK_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("TIMEBANK_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("TIMEBANK_LOG_ORIGIN", settings.log_origin)
    code = main(["verify"])
    return code, capsys.readouterr().out


def test_untouched_database_verifies_through_the_cli(
    filled: Log,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out = _run_verify(settings, monkeypatch, capsys)
    assert code == 0
    assert out.startswith(f"OK: {ENTRIES} entries")


def test_changed_minutes_are_named(filled: Log, db_url: str, mode: Mode) -> None:
    leaf = _leaf(filled, 4)
    leaf["postings"][1]["minutes"] += 600  # type: ignore[index]
    raw_sql(
        db_url, f"UPDATE log_entries SET leaf = {_blob(db_url, canonical_json(leaf))} WHERE seq = 4"
    )
    report = filled.verify()
    assert mode.rejected()
    assert not report.ok
    assert 4 in report.bad_seqs()
    text = "\n".join(map(str, report.problems))
    assert "seq 4: postings sum to +600" in text
    assert "seq 4: stored leaf hash does not match" in text


def test_changed_minutes_with_recomputed_hash_is_still_named(
    filled: Log, db_url: str, mode: Mode
) -> None:
    import hashlib

    leaf = _leaf(filled, 4)
    leaf["postings"][0]["minutes"] -= 600  # type: ignore[index]
    leaf["postings"][1]["minutes"] += 600  # type: ignore[index]
    data = canonical_json(leaf)
    new_hash = hashlib.sha256(b"\x00" + data).digest()
    raw_sql(
        db_url,
        f"UPDATE log_entries SET leaf = {_blob(db_url, data)}, leaf_hash = {_blob(db_url, new_hash)} WHERE seq = 4",
        f"UPDATE ledger_balances SET minutes = minutes + 600 WHERE account = '{member(1)}'",
        "UPDATE ledger_balances SET minutes = minutes - 600 WHERE account = 't:issuance'",
    )
    report = filled.verify()
    assert mode.rejected()
    text = "\n".join(map(str, report.problems))
    assert "seq 4: leaf hash does not match the prev recorded by seq 5" in text
    assert "postings index differs" in text
    assert "checkpoint" in text


def test_deleted_entry_is_named(filled: Log, db_url: str, mode: Mode) -> None:
    raw_sql(db_url, "DELETE FROM log_entries WHERE seq = 6")
    report = filled.verify()
    assert mode.rejected()
    text = "\n".join(map(str, report.problems))
    assert "seq 7: entries 6 are missing before it" in text


def test_a_changed_prev_column_is_named(filled: Log, db_url: str, mode: Mode) -> None:
    """The column the writer finds the log's head by: another entry's hash there (unique, so
    every later append would fail) or any other bytes."""
    raw_sql(
        db_url,
        "UPDATE log_entries SET prev = (SELECT leaf_hash FROM log_entries WHERE seq = 11)"
        " WHERE seq = 5",
        f"UPDATE log_entries SET prev = {_blob(db_url, bytes([7]) * 32)} WHERE seq = 8",
    )
    report = filled.verify()
    assert mode.rejected()
    assert report.bad_seqs() == {5, 8}
    text = "\n".join(map(str, report.problems))
    assert "seq 5: prev column differs from the leaf's prev" in text


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # PostgreSQL's bytea: bytes only
def test_a_leaf_stored_as_text_is_named_not_a_crash(filled: Log, db_url: str, mode: Mode) -> None:
    """The same bytes cast to text (a column edited by hand): verify said nothing but a
    traceback."""
    raw_sql(db_url, "UPDATE log_entries SET leaf = CAST(leaf AS TEXT) WHERE seq = 4")
    report = filled.verify()
    assert mode.rejected()
    assert [str(p) for p in report.problems] == [
        "seq 4: leaf is not stored as bytes (its column was changed)"
    ]


def test_swapped_entries_are_named(filled: Log, db_url: str, mode: Mode) -> None:
    raw_sql(
        db_url,
        "UPDATE log_entries SET seq = 1000 WHERE seq = 2",
        "UPDATE log_entries SET seq = 2 WHERE seq = 3",
        "UPDATE log_entries SET seq = 3 WHERE seq = 1000",
    )
    report = filled.verify()
    assert mode.rejected()
    assert {2, 3} <= report.bad_seqs()
    text = "\n".join(map(str, report.problems))
    assert "seq 2: leaf says seq 3" in text and "seq 3: leaf says seq 2" in text


def test_forged_checkpoint_is_named(filled: Log, db_url: str) -> None:
    forger = Signer.generate("timebank.test/log")
    forged = sign_checkpoint(Checkpoint("timebank.test/log", ENTRIES, bytes(32)), forger)
    raw_sql(
        db_url,
        f"UPDATE log_checkpoints SET note = '{forged}', root = {_blob(db_url, bytes(32))} WHERE size = {ENTRIES}",
    )
    report = filled.verify()
    text = "\n".join(map(str, report.problems))
    assert f"checkpoint {ENTRIES}: signed note does not verify" in text


def test_checkpoint_resigned_with_the_right_key_over_a_wrong_root_is_named(
    filled: Log, db_url: str
) -> None:
    bad = sign_checkpoint(Checkpoint("timebank.test/log", ENTRIES, bytes(32)), filled.signer)
    raw_sql(
        db_url,
        f"UPDATE log_checkpoints SET note = '{bad}', root = {_blob(db_url, bytes(32))} WHERE size = {ENTRIES}",
    )
    text = "\n".join(map(str, filled.verify().problems))
    assert f"checkpoint {ENTRIES}: signed root does not match the entries" in text


def test_balance_cache_edit_is_named(filled: Log, db_url: str) -> None:
    raw_sql(db_url, f"UPDATE ledger_balances SET minutes = 99999 WHERE account = '{member(2)}'")
    text = "\n".join(map(str, filled.verify().problems))
    assert f"account {member(2)}: stored balance 99999 minutes" in text


def test_cli_exits_non_zero_and_lists_every_bad_entry(
    filled: Log,
    db_url: str,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    mode: Mode,
) -> None:
    for seq in (3, 8):
        leaf = _leaf(filled, seq)
        leaf["postings"][1]["minutes"] += 1  # type: ignore[index]
        raw_sql(
            db_url,
            f"UPDATE log_entries SET leaf = {_blob(db_url, canonical_json(leaf))} WHERE seq = {seq}",
        )
    code, out = _run_verify(settings, monkeypatch, capsys)
    assert code == 1
    assert mode.rejected()
    assert out.startswith("FAILED")
    assert "seq 3:" in out and "seq 8:" in out


# ---------------------------------------------------------------- what is derived from the log


def test_a_changed_deleted_or_inserted_log_facts_row_is_named(
    filled: Log, db_url: str, mode: Mode
) -> None:
    """The rows the half-yearly report sums (``log_facts``): each must be its entry's."""
    raw_sql(
        db_url,
        "UPDATE log_facts SET credited = credited + 600 WHERE seq = 4",
        "UPDATE log_facts SET kind = 'gift', served = NULL WHERE seq = 5",
        "DELETE FROM log_facts WHERE seq = 7",
        f"INSERT INTO log_facts (seq, kind, credited) VALUES ({ENTRIES + 3}, 'deposit', 9000)",
    )
    report = filled.verify()
    assert mode.rejected()
    assert [str(p) for p in report.problems] == [
        "seq 4: log_facts row differs from the entry: credited 664, the entry gives 64",
        "seq 5: log_facts row differs from the entry: kind 'gift', the entry gives 'deposit', "
        "served None, the entry gives 65",
        "seq 7: log_facts has no row for this entry",
        f"seq {ENTRIES + 3}: log_facts has a row for an entry that does not exist",
    ]


@pytest.fixture
def reversed_filled(filled: Log, mode: Mode) -> Log:
    """``filled`` and a reversal of deposit 3 (63 minutes to member 0) as seq 12."""
    filled.append(
        EntryRequest(
            "reversal",
            "r3",
            (Posting(ISSUANCE, 63), Posting(member(0), -63)),
            {"reverses": 3, "reason": "logged twice"},
        )
    )
    assert filled.verify().ok
    mode.answers.clear()
    return filled


def test_a_deleted_log_reversals_row_is_named(reversed_filled: Log, db_url: str) -> None:
    """Without it the writer would take a second reversal of the same entry."""
    raw_sql(db_url, "DELETE FROM log_reversals WHERE original_seq = 3")
    assert [str(p) for p in reversed_filled.verify().problems] == [
        f"seq {ENTRIES}: log_reversals has no row for this reversal of entry 3"
    ]


def test_a_changed_or_inserted_log_reversals_row_is_named(
    reversed_filled: Log, db_url: str
) -> None:
    """One would refuse to reverse an entry no one reversed."""
    raw_sql(
        db_url,
        "UPDATE log_reversals SET reversal_seq = 11 WHERE original_seq = 3",
        "INSERT INTO log_reversals (original_seq, reversal_seq) VALUES (5, 9)",
    )
    assert [str(p) for p in reversed_filled.verify().problems] == [
        f"seq 3: log_reversals says seq 11 reversed this entry; seq {ENTRIES} did",
        "seq 5: log_reversals says seq 9 reversed this entry; no entry reverses it",
    ]


def test_a_deleted_checkpoint_is_named(filled: Log, db_url: str, mode: Mode) -> None:
    """Each append was its own batch, stamped with its own time and signed: a client holding
    checkpoint 6 could no longer be shown the log extends it."""
    raw_sql(db_url, "DELETE FROM log_checkpoints WHERE size = 6")
    report = filled.verify()
    assert mode.rejected()
    assert [str(p) for p in report.problems] == [
        "checkpoint 6: is missing: seq 6 was appended at a later time than seq 5, in a later "
        "batch, and every batch signs a checkpoint (a deleted checkpoint row)"
    ]


def test_a_deleted_checkpoint_between_batches_of_one_clock_reading_is_named(
    settings: Settings, db_url: str
) -> None:
    """Two batches may read the same time off the clock (a coarse clock, or one set by hand):
    the later is stamped a microsecond after the one before, so that where a batch begins
    still shows in the leaves, and a deleted checkpoint between them is named."""
    fixed = "2026-12-07T09:00:00.000000Z"
    log = Log.open(settings, clock=lambda: fixed)
    try:
        times = [log.append(deposit(f"d{i}", member(1), 30)).time for i in range(4)]
        assert times == [fixed] + [f"2026-12-07T09:00:00.00000{i}Z" for i in (1, 2, 3)]
        assert log.verify().ok
        drop_append_only_triggers(db_url)
        raw_sql(db_url, "DELETE FROM log_checkpoints WHERE size = 2")
        assert [str(p) for p in log.verify().problems] == [
            "checkpoint 2: is missing: seq 2 was appended at a later time than seq 1, in a "
            "later batch, and every batch signs a checkpoint (a deleted checkpoint row)"
        ]
    finally:
        log.close()


def _cosignature(log: Log, size: int, witness: Signer) -> str:
    note = log.checkpoint_at(size)
    assert note is not None
    return cosign(Note.parse(note).text, witness, 1_765_000_000).line()


def test_an_inserted_cosignature_is_named(
    filled: Log,
    db_url: str,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The log serves the cosignatures it keeps and counts them towards its quorum: one made
    by a key that is no configured witness, or that the witness's key does not verify, is
    named; a configured witness's own, and a peer bank's, verify clean."""
    witness = Signer.generate("witness.test/w1", COSIGNATURE_V1)
    stranger = Signer.generate("witness.test/w1", COSIGNATURE_V1)  # the same name, another key
    key, line = witness.verifier.to_text(), _cosignature(filled, ENTRIES, witness)
    monkeypatch.setenv("TIMEBANK_WITNESSES", f"url=http://127.0.0.1:9 key={key}")
    peer = Signer.generate(witness_key_name("peer.test/log"), COSIGNATURE_V1)
    Peers(PeerStore(db_url), settings.log_origin).add(
        "peer",
        "http://127.0.0.1:9",
        "peer.test/log",
        Signer.generate("peer.test/log").verifier.to_text(),
        Signer.generate(request_key_name("peer.test/log")).verifier.to_text(),
        "op",
        witness_key=peer.verifier.to_text(),
    )
    peer_key, peer_line = peer.verifier.to_text(), _cosignature(filled, ENTRIES, peer)
    raw_sql(
        db_url,
        f"INSERT INTO log_cosignatures (size, witness, line) VALUES ({ENTRIES}, '{key}', '{line}')",
        f"INSERT INTO log_cosignatures (size, witness, line)"
        f" VALUES ({ENTRIES}, '{peer_key}', '{peer_line}')",
    )
    code, out = _run_verify(settings, monkeypatch, capsys)
    assert code == 0 and out.startswith(f"OK: {ENTRIES} entries"), out
    other, forged = stranger.verifier.to_text(), _cosignature(filled, 8, stranger)
    raw_sql(
        db_url,
        f"INSERT INTO log_cosignatures (size, witness, line) VALUES (8, '{key}', '{forged}')",
        f"INSERT INTO log_cosignatures (size, witness, line) VALUES (8, '{other}', '{forged}')",
        f"INSERT INTO log_cosignatures (size, witness, line) VALUES (99, '{key}', '{line}')",
    )
    code, out = _run_verify(settings, monkeypatch, capsys)
    assert code == 1
    assert out.splitlines()[0] == f"FAILED: 3 problems in {ENTRIES} entries"
    assert set(out.splitlines()[1:]) == {  # checkpoint 8's two in the order of the keys' text
        f"  checkpoint 8: log_cosignatures has a cosignature by {key} that does not verify "
        "with that witness's key",
        f"  checkpoint 8: log_cosignatures has a cosignature by {other}, which is not a "
        "configured witness (TIMEBANK_WITNESSES) nor a peer's, and no witness configuration "
        "in the audit trail ever listed it",
        f"  checkpoint 99: log_cosignatures has a cosignature by {key} of no stored checkpoint",
    }


def test_a_removed_witness_is_named_and_an_unknown_key_stays_unknown(
    filled: Log,
    db_url: str,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The server records its witnesses in the audit trail when they change (at its start);
    verify names the cosignatures of a witness removed since as its, with when, checks their
    signatures and counts them as no problem (the log neither serves nor counts them); a
    cosignature by a key no record lists stays unknown, and a removed witness's that does
    not verify is a problem like a configured one's."""
    kept = Signer.generate("witness.test/kept", COSIGNATURE_V1)
    gone = Signer.generate("witness.test/gone", COSIGNATURE_V1)
    stranger = Signer.generate("witness.test/gone", COSIGNATURE_V1)  # the same name
    trail = AuditTrail(db_url)
    try:
        assert record_witnesses(trail, [kept.verifier, gone.verifier])
        assert not record_witnesses(trail, [gone.verifier, kept.verifier])  # no change
        assert record_witnesses(trail, [kept.verifier])  # gone is removed
        events = trail.events(bank_id=None, actor="server:witnesses")
    finally:
        trail.dispose()
    assert [e.action for e in events] == ["witnesses configured"] * 2
    removed_at = events[1].time
    monkeypatch.setenv(
        "TIMEBANK_WITNESSES", f"url=http://127.0.0.1:9 key={kept.verifier.to_text()}"
    )
    gone_key = gone.verifier.to_text()
    raw_sql(
        db_url,
        *(
            f"INSERT INTO log_cosignatures (size, witness, line)"
            f" VALUES ({size}, '{witness.verifier.to_text()}', '{_cosignature(filled, size, witness)}')"
            for size, witness in [(ENTRIES, kept), (ENTRIES, gone), (8, gone)]
        ),
    )
    code, out = _run_verify(settings, monkeypatch, capsys)
    assert code == 0, out
    assert out.splitlines() == [
        out.splitlines()[0],
        f"  note: 2 cosignatures (checkpoints 8–{ENTRIES}) by {gone_key}, a witness removed "
        f"at {removed_at}: they verify, and count towards no quorum",
    ]
    assert out.startswith(f"OK: {ENTRIES} entries")
    other = stranger.verifier.to_text()
    raw_sql(
        db_url,
        f"INSERT INTO log_cosignatures (size, witness, line)"
        f" VALUES (9, '{other}', '{_cosignature(filled, 9, stranger)}')",
        f"INSERT INTO log_cosignatures (size, witness, line)"
        f" VALUES (9, '{gone_key}', '{_cosignature(filled, 9, stranger)}')",
    )
    code, out = _run_verify(settings, monkeypatch, capsys)
    assert code == 1
    assert out.splitlines()[0] == f"FAILED: 2 problems in {ENTRIES} entries"
    assert set(out.splitlines()[1:]) == {
        f"  checkpoint 9: log_cosignatures has a cosignature by {gone_key} (a witness removed "
        f"at {removed_at}) that does not verify with that witness's key",
        f"  checkpoint 9: log_cosignatures has a cosignature by {other}, which is not a "
        "configured witness (TIMEBANK_WITNESSES) nor a peer's, and no witness configuration "
        "in the audit trail ever listed it",
        f"  note: 2 cosignatures (checkpoints 8–{ENTRIES}) by {gone_key}, a witness removed "
        f"at {removed_at}: they verify, and count towards no quorum",
    }


def test_a_ghost_balance_row_is_named(filled: Log, db_url: str) -> None:
    """A cached balance of 0 for an account with no entries at all."""
    raw_sql(db_url, "INSERT INTO ledger_balances (account, minutes) VALUES ('t:member:ghost', 0)")
    assert [str(p) for p in filled.verify().problems] == [
        "account t:member:ghost: balance cache has a row for an account with no entries"
    ]
