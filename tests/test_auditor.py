"""The auditor: shared leaf replay, bundles, online verification, split views and receipts."""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.request
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from audit.auditor import (
    BUNDLE_FILES,
    AuditReport,
    AuditState,
    Policy,
    export_bundle,
    verify_bundle,
    verify_online,
    verify_receipt,
)
from cli.main import main
from ledger.config import Settings
from ledger.entry import ZERO_HASH, Entry, EntryRequest, Posting, canonical_json
from ledger.errors import LedgerError
from ledger.keys import load_or_create_signing_key
from ledger.leaf_decoding import _fast_entry, decode_leaf
from ledger.log import Log
from ledger.merkle import leaf_hash, root_of
from ledger.note import (
    COSIGNATURE_V1,
    Checkpoint,
    Note,
    Signer,
    TlogProof,
    check_cosignature,
    open_checkpoint,
    sign_checkpoint,
)
from ledger.replay import Replay, ReplayState
from ledger.storage import LedgerStore
from ledger.witnessing import WitnessEndpoint
from tests.conftest import make_database
from tests.helpers import (
    ISSUANCE,
    donation,
    drop_append_only_triggers,
    gift,
    grant,
    member,
    raw_sql,
    redemption,
)
from tests.test_witness import cosigned_by, log_app, running_witness, serve, wait_for, witnessed_log

TIME = "2026-11-25T08:00:00.000000Z"


def deposit(entry_id: str, account: str, minutes: int, **body: Any) -> EntryRequest:
    """A deposit as the workflow makes it: a record digest, confirmed by one person and
    verified (and signed) by another; ``minutes`` at weight 1000 (``body`` overrides)."""
    fields: dict[str, Any] = {
        "record": hashlib.sha256(entry_id.encode()).hexdigest(),
        "minutes": minutes,
        "weight": 1000,
        "confirmed_by": "user-elder",
        "confirmed_as": "elder",
        "verified_by": "user-staff",
        **body,
    }
    signatures = ({"role": "verifier", "by": str(fields["verified_by"])},)
    return EntryRequest(
        "deposit",
        entry_id,
        (Posting(ISSUANCE, -minutes), Posting(account, minutes)),
        fields,
        signatures,
    )


def mixed_requests(count: int) -> list[EntryRequest]:
    """Deposits, gifts, donations, grants, redemptions and one reversal that keep every rule."""
    requests: list[EntryRequest] = []
    for n in range(count):
        a, b = member(n % 7), member((n + 3) % 7)
        step = n % 10
        if n < 8 or step in (0, 1, 2, 3) or (step == 7 and n <= 10):
            requests.append(deposit(f"d{n}", a, 90 + n % 50))
        elif step in (4, 5):
            requests.append(gift(f"g{n}", a, b, 10))
        elif step == 6:
            requests.append(donation(f"n{n}", a, 15))
        elif step == 7 and n > 10:
            requests.append(grant(f"p{n}", b, 5))
        elif n == 8:
            requests.append(
                EntryRequest(
                    "reversal",
                    f"r{n}",
                    (Posting(ISSUANCE, 90), Posting(member(0), -90)),
                    {"reverses": 0, "reason": "logged twice"},
                )
            )
        else:
            requests.append(redemption(f"x{n}", a, 20))
    return requests


def demo_leaves(count: int) -> list[bytes]:
    leaves: list[bytes] = []
    prev = ZERO_HASH
    for seq, request in enumerate(mixed_requests(count)):
        leaf = Entry(seq, prev, TIME, request).leaf()
        leaves.append(leaf)
        prev = leaf_hash(leaf)
    return leaves


# ---------------------------------------------------------------- the fast decoder agrees


def _reference(leaf: bytes) -> Entry | None:
    try:
        return Entry.from_leaf(leaf)
    except LedgerError:
        return None


def _agree(leaf: bytes) -> None:
    want = _reference(leaf)
    fast = _fast_entry(leaf)
    assert fast is None or fast == want, leaf
    try:
        got: Entry | None = decode_leaf(leaf)
    except LedgerError:
        got = None
    assert got == want, leaf


def test_fast_decoder_takes_the_common_leaves() -> None:
    leaves = demo_leaves(300)
    assert sum(_fast_entry(leaf) is not None for leaf in leaves) == len(leaves)
    for leaf in leaves:
        _agree(leaf)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=True)
    | st.text(max_size=80),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=70), inner, max_size=3)
    ),
    max_leaves=8,
)
FIELDS = ["v", "seq", "prev", "time", "kind", "id", "postings", "body", "signatures"]


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.integers(min_value=0, max_value=59),
    field=st.sampled_from([*FIELDS, "postings.0.minutes", "postings.0.account", "extra"]),
    value=json_values,
    layout=st.sampled_from(["canonical", "ascii", "spaced", "unsorted"]),
)
def test_fast_decoder_never_accepts_what_the_reference_refuses(
    base: int, field: str, value: Any, layout: str
) -> None:
    raw = json.loads(DEMO[base])
    if field == "extra":
        raw["extra"] = value
    elif field.startswith("postings.0."):
        if raw["postings"]:
            raw["postings"][0][field.rsplit(".", 1)[1]] = value
    else:
        raw[field] = value
    encode = {
        "canonical": dict(sort_keys=True, separators=(",", ":"), ensure_ascii=False),
        "ascii": dict(sort_keys=True, separators=(",", ":"), ensure_ascii=True),
        "spaced": dict(sort_keys=True, ensure_ascii=False),
        "unsorted": dict(separators=(",", ":"), ensure_ascii=False),
    }[layout]
    try:
        leaf = json.dumps(raw, **encode).encode("utf-8")  # type: ignore[arg-type]
    except (ValueError, UnicodeEncodeError):
        return
    _agree(leaf)


@settings(max_examples=300)
@given(base=st.integers(min_value=0, max_value=59), data=st.data())
def test_fast_decoder_agrees_on_byte_edits(base: int, data: st.DataObject) -> None:
    leaf = bytearray(DEMO[base])
    at = data.draw(st.integers(min_value=0, max_value=len(leaf) - 1))
    leaf[at] = data.draw(st.sampled_from(b'0123456789"\\:,{}[]aZ- \x7f\xc3'))
    _agree(bytes(leaf))


def test_fast_decoder_edge_cases() -> None:
    raw = json.loads(DEMO[0])
    cases: list[dict[str, Any]] = []
    for field, value in [
        ("seq", True),
        ("v", True),
        ("prev", base64.b64encode(bytes(32)).decode().replace("A=", "B=")),
        ("body", {"": 1}),
        ("body", {"k" * 65: 1}),
        ("body", {"k" * 64: "v" * 200}),
        ("body", {"n": 2**53}),
        ("body", {"n": 2**53 - 1, "m": -(2**53 - 1)}),
        ("body", {"s": "línea"}),
        ("body", {"s": 'quote " and \\ slash'}),
        ("signatures", [{"device": 1}]),
        ("signatures", [{"device": "ed25519:abc"}]),
    ]:
        changed = dict(raw)
        changed[field] = value
        cases.append(changed)
    for case in cases:
        leaf = json.dumps(case, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        _agree(leaf.encode())


DEMO = demo_leaves(60)


# ---------------------------------------------------------------- replay


def test_replay_state_round_trips_and_resumes() -> None:
    leaves = demo_leaves(120)
    whole = Replay()
    for i, leaf in enumerate(leaves):
        whole.add(i, leaf)
    whole.finish(lambda seqs: {s: leaves[s] for s in seqs})
    assert whole.problems == []

    first = Replay()
    for i, leaf in enumerate(leaves[:70]):
        first.add(i, leaf)
    first.finish(lambda seqs: {s: leaves[s] for s in seqs})
    saved = json.loads(json.dumps(first.state().to_json()))
    second = Replay(state=ReplayState.from_json(saved))
    for i, leaf in enumerate(leaves[70:], start=70):
        second.add(i, leaf)
    second.finish(lambda seqs: {s: leaves[s] for s in seqs})
    assert second.problems == []
    assert second.root() == whole.root()
    assert second.balances == whole.balances


def test_replay_reports_a_shifted_run_once() -> None:
    leaves = demo_leaves(40)
    del leaves[10]
    replay = Replay()
    for i, leaf in enumerate(leaves):
        replay.add(i, leaf)
    replay.finish(lambda seqs: {s: leaves[s] for s in seqs})
    shifted = [p for p in replay.problems if "leaf says" in p.message]
    assert len(shifted) == 1
    assert str(shifted[0]).startswith("seq 10: leaf says seq 11")
    assert "up to seq 38" in shifted[0].message


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def second_log(
    backend: str, settings: Settings, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Log]:
    """Another database under the same key and origin: the operator's second history."""
    (tmp_path / "second").mkdir()
    databases = make_database(backend, request, tmp_path / "second")
    url = next(databases)
    assert isinstance(databases, Generator)
    signer = load_or_create_signing_key(settings.signing_key_file, settings.log_origin)
    log = Log(LedgerStore(url), signer, settings.log_origin)
    try:
        yield log
    finally:
        log.close()
        databases.close()


@pytest.fixture
def filled(log: Log) -> Log:
    for request in mixed_requests(SIZE):
        log.append(request)
    assert log.verify().ok
    return log


@pytest.fixture
def url(filled: Log) -> Iterator[str]:
    with serve(log_app(filled)) as base:
        yield base


@pytest.fixture
def policy(filled: Log) -> Policy:
    return Policy(filled.signer.verifier)


SIZE = 60


def rehash(bundle: Path) -> None:
    """What a careful insider does after editing a bundle: fix the manifest's hashes."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    for name in manifest["files"]:
        data = (bundle / name).read_bytes()
        manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def read_leaves(bundle: Path) -> list[bytes]:
    return [base64.b64decode(line) for line in (bundle / "leaves.txt").read_bytes().splitlines()]


def write_leaves(bundle: Path, leaves: list[bytes], fix_manifest: bool = True) -> None:
    (bundle / "leaves.txt").write_bytes(b"".join(base64.b64encode(x) + b"\n" for x in leaves))
    if fix_manifest:
        rehash(bundle)


def text_of(report: AuditReport) -> str:
    return "\n".join(report.lines())


@pytest.fixture
def bundle(url: str, tmp_path: Path) -> Path:
    out = tmp_path / "bundle"
    assert export_bundle(url, out).size == SIZE
    return out


def forged_bundle(directory: Path, requests: list[EntryRequest], signer: Signer) -> Path:
    """A bundle the operator built and signed with the real key: only the rules can catch it."""
    leaves: list[bytes] = []
    prev = ZERO_HASH
    for seq, request in enumerate(requests):
        leaves.append(Entry(seq, prev, TIME, request).leaf())
        prev = leaf_hash(leaves[-1])
    directory.mkdir()
    (directory / "key.txt").write_text(signer.verifier.to_text() + "\n")
    root = root_of(leaf_hash(x) for x in leaves)
    (directory / "checkpoint.txt").write_text(
        sign_checkpoint(Checkpoint(signer.name, len(leaves), root), signer)
    )
    (directory / "manifest.json").write_text(
        json.dumps(
            {"format": "timebank-audit-bundle/v1", "files": {name: {} for name in BUNDLE_FILES}}
        )
    )
    write_leaves(directory, leaves)
    return directory


# ---------------------------------------------------------------- bundles (offline)


def test_export_then_verify_offline(bundle: Path, policy: Policy) -> None:
    report = verify_bundle(bundle, policy)
    assert report.ok, text_of(report)
    assert report.entries == SIZE
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["tree_size"] == SIZE and set(manifest["files"]) == set(BUNDLE_FILES)


def test_cli_export_and_verify(
    url: str, filled: Log, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file = tmp_path / "log.vkey"
    key_file.write_text(filled.verifier_key + "\n")
    out = tmp_path / "b"
    assert main(["audit", "export", "--url", url, "--out", str(out)]) == 0
    assert main(["audit", "verify", str(out), "--key", str(key_file)]) == 0
    printed = capsys.readouterr().out
    assert f"\nOK: {SIZE} entries replayed" in printed
    assert "note: no audit events (no auditor's --token): the audit trail was not" in printed
    assert main(["audit", "export", "--url", url, "--out", str(out)]) == 2  # not empty


def test_a_changed_file_is_caught_by_the_manifest(bundle: Path, policy: Policy) -> None:
    leaves = read_leaves(bundle)
    leaves[7] = leaves[7].replace(b'"minutes":', b'"minutes": ', 1)
    write_leaves(bundle, leaves, fix_manifest=False)
    text = text_of(verify_bundle(bundle, policy))
    assert "file leaves.txt: SHA-256 does not match the manifest" in text
    assert "seq 7: leaf is malformed" in text


def _edit(leaf: bytes, change: Any) -> bytes:
    raw = json.loads(leaf)
    change(raw)
    return canonical_json(raw)


def test_edited_leaves_are_named_even_with_a_fixed_manifest(bundle: Path, policy: Policy) -> None:
    leaves = read_leaves(bundle)
    leaves[4] = _edit(leaves[4], lambda r: r["postings"][1].__setitem__("minutes", 999))
    leaves[9] = _edit(leaves[9], lambda r: r.__setitem__("time", "2020-01-01T00:00:00.000000Z"))
    write_leaves(bundle, leaves)
    report = verify_bundle(bundle, policy)
    text = text_of(report)
    assert not report.ok
    assert "seq 4: postings sum to" in text
    assert "seq 4: leaf hash does not match the prev recorded by seq 5" in text
    assert "seq 9: time 2020-01-01T00:00:00.000000Z is before the previous" in text
    assert f"checkpoint {SIZE}: signed root does not match the leaves" in text


def test_deleted_leaf_is_named(bundle: Path, policy: Policy) -> None:
    leaves = read_leaves(bundle)
    del leaves[20]
    write_leaves(bundle, leaves)
    text = text_of(verify_bundle(bundle, policy))
    assert f"seq 20: leaf says seq 21 (entries moved or swapped); so do the {SIZE - 22}" in text
    assert f"covers {SIZE} entries but there are {SIZE - 1}" in text


def test_inserted_leaf_is_named(bundle: Path, policy: Policy, filled: Log) -> None:
    leaves = read_leaves(bundle)
    forged = Entry(30, leaf_hash(leaves[29]), TIME, deposit("forged", member(1), 6000)).leaf()
    leaves.insert(30, forged)
    write_leaves(bundle, leaves)
    text = text_of(verify_bundle(bundle, policy))
    assert "seq 31: leaf says seq 30" in text
    assert f"covers {SIZE} entries but there are {SIZE + 1}" in text
    assert "signed root does not match the leaves" in text


def test_reordered_leaves_are_named(bundle: Path, policy: Policy) -> None:
    leaves = read_leaves(bundle)
    leaves[2], leaves[3] = leaves[3], leaves[2]
    write_leaves(bundle, leaves)
    report = verify_bundle(bundle, policy)
    text = text_of(report)
    assert "seq 2: leaf says seq 3" in text and "seq 3: leaf says seq 2" in text
    assert {2, 3} <= {p.seq for p in report.problems}


def test_replaced_checkpoint_is_named(bundle: Path, policy: Policy, filled: Log) -> None:
    other = sign_checkpoint(Checkpoint(filled.origin, SIZE, bytes(32)), filled.signer)
    (bundle / "checkpoint.txt").write_text(other)
    rehash(bundle)
    text = text_of(verify_bundle(bundle, policy))
    assert f"checkpoint {SIZE}: signed root does not match the leaves" in text


def test_resigned_with_another_key_is_refused(bundle: Path, policy: Policy, filled: Log) -> None:
    impostor = Signer.generate(filled.origin)
    (bundle / "key.txt").write_text(impostor.verifier.to_text() + "\n")
    note = Note.parse((bundle / "checkpoint.txt").read_text())
    (bundle / "checkpoint.txt").write_text(
        sign_checkpoint(Checkpoint.parse_body(note.text), impostor)
    )
    rehash(bundle)
    report = verify_bundle(bundle, policy)
    text = text_of(report)
    assert "file key.txt: the log's key is" in text and "refusing to trust it" in text
    assert "checkpoint: does not verify with the log key you supplied" in text


def test_double_entry_rules_are_checked_on_a_self_consistent_forgery(
    tmp_path: Path, filled: Log
) -> None:
    a, b = member(1), member(2)
    requests = [
        deposit("d0", a, 60),
        gift("g1", a, b, 100),  # a falls below zero
        EntryRequest("gift", "mint", (Posting(ISSUANCE, -50), Posting(b, 50))),  # minting
        EntryRequest(
            "reversal",
            "r1",
            (Posting(ISSUANCE, 60), Posting(a, -60)),
            {"reverses": 0, "reason": "x", "requested_by": "p:one", "approved_by": "p:one"},
        ),
        EntryRequest(
            "reversal",
            "r2",
            (Posting(ISSUANCE, 60), Posting(a, -60)),
            {"reverses": 0, "reason": "again"},
        ),
        EntryRequest("deposit", "lopsided", (Posting(ISSUANCE, -10), Posting(b, 11))),
    ]
    directory = forged_bundle(tmp_path / "forged", requests, filled.signer)
    report = verify_bundle(directory, Policy(filled.signer.verifier))
    text = text_of(report)
    assert f"seq 1: account {a} falls to -40 minutes, below its floor 0" in text
    assert "seq 2: a gift may not debit a issuance account" in text
    assert "seq 4: reverses entry 0 again (already by seq 3)" in text
    assert "seq 3: reversal was requested and approved by the same administrator p:one" in text
    assert "seq 5: postings sum to +1, not 0" in text
    assert "signed root" not in text  # the operator signed it all: only the rules catch it


def test_parallel_and_sequential_bundle_verification_agree(bundle: Path, policy: Policy) -> None:
    leaves = read_leaves(bundle)
    leaves[4] = _edit(leaves[4], lambda r: r["postings"][1].__setitem__("minutes", 999))
    leaves[30], leaves[31] = leaves[31], leaves[30]
    del leaves[50]
    write_leaves(bundle, leaves)
    with (bundle / "leaves.txt").open("ab") as f:
        f.write(b"not base64!\n")
    sequential = verify_bundle(bundle, policy, workers=1)
    parallel = verify_bundle(bundle, policy, workers=2)
    assert sequential.problems == parallel.problems
    assert len(sequential.problems) >= 6


def test_cli_exits_non_zero_listing_every_problem(
    bundle: Path, filled: Log, capsys: pytest.CaptureFixture[str]
) -> None:
    leaves = read_leaves(bundle)
    for seq in (3, 8):
        leaves[seq] = _edit(leaves[seq], lambda r: r["postings"][1].__setitem__("minutes", 7))
    write_leaves(bundle, leaves)
    assert main(["audit", "verify", str(bundle), "--key", filled.verifier_key]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAILED")
    assert "seq 3:" in out and "seq 8:" in out


# ---------------------------------------------------------------- online


def test_online_verification_is_incremental(
    url: str, filled: Log, policy: Policy, tmp_path: Path
) -> None:
    state = tmp_path / "audit" / "state.json"
    first = verify_online(url, policy, state_path=state)
    assert first.ok, text_of(first)
    assert first.entries == SIZE and state.exists()
    for i in range(25):
        filled.append(deposit(f"late{i}", member(i % 3), 45))
    second = verify_online(url, policy, state_path=state)
    assert second.ok, text_of(second)
    assert second.entries == 25
    assert text_of(second).startswith(f"OK: 25 new entries replayed (resumed from size {SIZE})")
    full = verify_online(url, policy, state_path=state, full=True)
    assert full.ok and full.entries == SIZE + 25


def test_online_full_verification_names_an_edited_database(
    url: str, filled: Log, policy: Policy, db_url: str
) -> None:
    drop_append_only_triggers(db_url)
    leaf = json.loads(filled.leaves(11, 12)[0].data)
    leaf["postings"][1]["minutes"] += 600
    data = canonical_json(leaf)
    blob = f"X'{data.hex()}'" if db_url.startswith("sqlite") else f"'\\x{data.hex()}'::bytea"
    raw_sql(db_url, f"UPDATE log_entries SET leaf = {blob} WHERE seq = 11")
    report = verify_online(url, policy, full=True)
    text = text_of(report)
    assert "seq 11: postings sum to +600, not 0" in text
    assert "signed root does not match the leaves" in text
    assert verify_online(url, policy, full=True, workers=2).problems == report.problems


def test_online_refuses_a_log_serving_another_key(url: str, filled: Log) -> None:
    other = Policy(Signer.generate(filled.origin).verifier)
    report = verify_online(url, other)
    assert not report.ok and "refusing to trust it" in text_of(report)


def test_two_histories_shown_to_two_clients_are_a_fork_with_evidence(
    filled: Log, second_log: Log, policy: Policy, tmp_path: Path
) -> None:
    """The operator keeps two databases under one key: client A sees one, client B the
    other. When either is later shown the other history, its state proves the fork."""
    for request in mixed_requests(SIZE)[:40]:
        second_log.append(request)
    second_log.append(deposit("only-in-b", member(5), 300))
    for i in range(SIZE - 41):
        second_log.append(deposit(f"b{i}", member(4), 30))
    assert second_log.size() == SIZE
    state_a = tmp_path / "a" / "state.json"
    with serve(log_app(filled)) as url_a, serve(log_app(second_log)) as url_b:
        assert verify_online(url_a, policy, state_path=state_a).ok
        assert verify_online(url_b, policy, state_path=tmp_path / "b" / "state.json").ok
        report = verify_online(url_b, policy, state_path=state_a)  # A is shown B's history
    text = text_of(report)
    assert "FORK (split view)" in text
    assert f"two signed checkpoints of size {SIZE} with different roots" in text
    (evidence,) = report.evidence
    seen = (evidence / "checkpoint-seen-before.txt").read_text()
    now = (evidence / "checkpoint-served-now.txt").read_text()
    for note in (seen, now):
        open_checkpoint(note, filled.signer.verifier, filled.origin)
    assert Note.parse(seen).text != Note.parse(now).text
    # the state was not moved on to the forked history
    assert AuditState.load(state_a).checkpoint == seen  # type: ignore[union-attr]


def test_a_larger_inconsistent_history_is_a_fork(
    filled: Log, second_log: Log, policy: Policy, tmp_path: Path
) -> None:
    for i in range(SIZE + 10):
        second_log.append(deposit(f"x{i}", member(i % 2), 30))
    state = tmp_path / "state.json"
    with serve(log_app(filled)) as url_a, serve(log_app(second_log)) as url_b:
        assert verify_online(url_a, policy, state_path=state).ok
        report = verify_online(url_b, policy, state_path=state)
    assert f"no valid consistency proof from size {SIZE} to {SIZE + 10}" in text_of(report)
    assert report.evidence


def test_witness_policy_and_split_view_through_a_witness(
    settings: Settings, second_log: Log, tmp_path: Path
) -> None:
    witness_signer = Signer.generate("witness.test/w1", COSIGNATURE_V1)
    signer = load_or_create_signing_key(settings.signing_key_file, settings.log_origin)
    policy = Policy(signer.verifier, (witness_signer.verifier,), 1)
    with running_witness(tmp_path / "w", signer, witness_signer) as witness_url:
        endpoint = WitnessEndpoint(witness_url, witness_signer.verifier)
        honest = witnessed_log(settings, [endpoint], quorum=1)
        try:
            for request in mixed_requests(30):
                honest.append(request)
            wait_for(lambda: cosigned_by(honest, witness_signer.verifier) == 30)
            for i in range(30):  # the other history, never shown to the witness
                second_log.append(deposit(f"y{i}", member(1), 30))
            with serve(log_app(honest)) as url_a, serve(log_app(second_log)) as url_b:
                good = verify_online(url_a, policy, witness_urls=[witness_url])
                assert good.ok, text_of(good)
                assert good.cosigners == ["witness.test/w1"]
                strict = verify_online(url_b, policy)
                assert "only 0 of the 1 witness cosignatures" in text_of(strict)
                lax = Policy(signer.verifier)
                report = verify_online(
                    url_b, lax, witness_urls=[witness_url], evidence_dir=tmp_path / "ev"
                )
            text = text_of(report)
            assert "FORK (split view)" in text and "cosigned by the witness" in text
            (evidence,) = report.evidence
            assert check_cosignature(
                Note.parse((evidence / "checkpoint-seen-before.txt").read_text()),
                witness_signer.verifier,
            )
            wrong = Policy(signer.verifier, (Signer.generate("w.x", COSIGNATURE_V1).verifier,), 1)
            with serve(log_app(honest)) as url_a:
                assert "witness cosignatures your policy" in text_of(verify_online(url_a, wrong))
        finally:
            honest.close()


# ---------------------------------------------------------------- receipts


def test_receipts_verify_offline(
    url: str, filled: Log, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with urllib.request.urlopen(f"{url}/v1/log/receipt?index=5") as response:
        assert response.headers["content-type"].startswith("text/plain")
        receipt = response.read().decode()
    assert receipt.startswith("c2sp.org/tlog-proof@v1\nextra ")
    report = verify_receipt(receipt, Policy(filled.signer.verifier))
    assert report.ok, text_of(report)
    assert "entry 5:" in text_of(report)
    path = tmp_path / "r.tlog-proof"
    path.write_text(receipt)
    assert main(["audit", "receipt", str(path), "--key", filled.verifier_key]) == 0
    assert "entry 5:" in capsys.readouterr().out


def test_a_receipt_for_a_forged_entry_fails(url: str, filled: Log) -> None:
    with urllib.request.urlopen(f"{url}/v1/log/receipt?index=5") as response:
        receipt = TlogProof.parse(response.read().decode())
    policy = Policy(filled.signer.verifier)
    richer = _edit(receipt.extra or b"", lambda r: r["postings"][1].__setitem__("minutes", 9000))
    forged = TlogProof(receipt.index, receipt.hashes, receipt.checkpoint, richer).render()
    text = text_of(verify_receipt(forged, policy))
    assert "seq 5: the entry is not in the signed tree" in text
    moved = TlogProof(6, receipt.hashes, receipt.checkpoint, receipt.extra).render()
    assert "the entry says seq 5, not 6" in text_of(verify_receipt(moved, policy))
    bare = TlogProof(5, receipt.hashes, receipt.checkpoint).render()
    assert "no extra line" in text_of(verify_receipt(bare, policy))
    other = Policy(Signer.generate(filled.origin).verifier)
    assert "does not verify with the log key" in text_of(verify_receipt(receipt.render(), other))
    witnessed = Policy(
        filled.signer.verifier, (Signer.generate("w.x", COSIGNATURE_V1).verifier,), 1
    )
    assert "witness cosignatures" in text_of(verify_receipt(receipt.render(), witnessed))
    assert "not a c2sp.org/tlog-proof" in text_of(verify_receipt("hello\n\n", policy))


@pytest.mark.parametrize("query", ["index=-1", "index=x", "", f"index={SIZE}"])
def test_receipt_route_answers_bad_input_with_a_problem(filled: Log, query: str) -> None:
    with TestClient(log_app(filled)) as client:
        response = client.get(f"/v1/log/receipt?{query}")
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")


def test_cli_usage_errors_exit_2(url: str, filled: Log, tmp_path: Path) -> None:
    key = filled.verifier_key
    assert main(["audit", "verify", "--key", key]) == 2
    assert main(["audit", "verify", str(tmp_path), "--url", url, "--key", key]) == 2
    assert main(["audit", "verify", "--url", url, "--key", key, "--quorum", "1"]) == 2
    assert main(["audit", "verify", "--url", url, "--key", "nonsense"]) == 2
    assert main(["audit", "verify", "--url", "http://127.0.0.1:1", "--key", key]) == 2


def test_a_damaged_state_file_stops_the_audit(url: str, filled: Log, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    args = ["audit", "verify", "--url", url, "--key", filled.verifier_key, "--state", str(state)]
    assert main(args) == 0
    data = json.loads(state.read_text())
    data["checkpoint"] = "not a checkpoint"
    state.write_text(json.dumps(data))
    assert main(args) == 2
    state.write_text("{")
    assert main(args) == 2
