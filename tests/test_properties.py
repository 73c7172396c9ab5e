"""Property tests: a Hypothesis state machine over the real log, and the pure formats under it.

* ``LogMachine`` drives ``ledger.log.Log`` on a fresh SQLite file or PostgreSQL database per
  example with deposits, gifts, donations, pool grants and redemptions (single and batched,
  including overdrafts that must be refused, idempotent replays and id conflicts) and checks
  after every step that balances equal an in-memory model, sum to zero and never go negative,
  and that every signed checkpoint is consistent with the previous one and proves the leaves.
* ``canonical_json`` equals the ``rfc8785`` package on every value we allow and refuses the rest.
* ``MemoryTree`` proofs equal a direct transcription of RFC 6962 §2.1 and break when tampered.
* ``Entry.from_leaf`` round-trips and notices any single changed byte.
"""

from __future__ import annotations

import hashlib
import random
import string
import tempfile
from collections.abc import Callable, Generator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from ledger.config import Settings
from ledger.entry import (
    MAX_SAFE_INTEGER,
    Entry,
    EntryRequest,
    Posting,
    canonical_json,
)
from ledger.errors import (
    IdConflict,
    InsufficientBalance,
    MalformedEntry,
    ProofVerificationError,
)
from ledger.log import Log
from ledger.merkle import (
    EMPTY_ROOT,
    MemoryTree,
    leaf_hash,
    node_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)
from ledger.note import Checkpoint, open_checkpoint
from ledger.postings import parse_account
from ledger.verify import format_report
from tests.conftest import make_database
from tests.helpers import (
    ISSUANCE,
    POOL,
    REDEMPTION,
    deposit,
    donation,
    gift,
    grant,
    member,
    redemption,
)

ORIGIN = "timebank.test/log"
MEMBERS = 4

# ---------------------------------------------------------------------------- the log machine


def open_fresh_log(
    backend: str, request: pytest.FixtureRequest, base: Path
) -> tuple[Log, Callable[[], None]]:
    """A Log on a database of its own (conftest's ``make_database``) and a function closing both."""
    workdir = Path(tempfile.mkdtemp(dir=base))
    databases = make_database(backend, request, workdir)
    assert isinstance(databases, Generator)  # closing it runs its cleanup
    url = next(databases)
    opened = Log.open(
        Settings.from_env(
            {
                "TIMEBANK_DATA_DIR": str(workdir / "data"),
                "TIMEBANK_DATABASE_URL": url,
                "TIMEBANK_LOG_ORIGIN": ORIGIN,
            }
        )
    )

    def close() -> None:
        try:
            opened.close()
        finally:
            databases.close()  # drops the PostgreSQL database

    return opened, close


KINDS = ("deposit", "gift", "donation", "grant", "redemption")

# (kind, member a, member b, minutes); the request is built with a fresh id when it is used.
operations = st.tuples(
    st.sampled_from(KINDS) | st.just("deposit"),
    st.integers(0, MEMBERS - 1),
    st.integers(0, MEMBERS - 1),
    st.integers(1, 400),
)


def build(op: tuple[str, int, int, int], entry_id: str) -> EntryRequest:
    kind, a, b, minutes = op
    if kind == "deposit":
        return deposit(entry_id, member(a), minutes)
    if kind == "gift":
        return gift(entry_id, member(a), member(b if b != a else (a + 1) % MEMBERS), minutes)
    if kind == "donation":
        return donation(entry_id, member(a), minutes)
    if kind == "grant":
        return grant(entry_id, member(a), minutes)
    return redemption(entry_id, member(a), minutes)


class LogMachine(RuleBasedStateMachine):
    """The real log against a dictionary of balances and a list of leaf hashes."""

    backend: str
    request: pytest.FixtureRequest
    base: Path

    def __init__(self) -> None:
        super().__init__()
        self.log, self._close = open_fresh_log(self.backend, self.request, self.base)
        self.model: dict[str, int] = {}
        self.accepted: list[EntryRequest] = []  # by seq
        self.leaf_hashes: list[bytes] = []  # by seq, from the append results
        self.previous: Checkpoint | None = None
        self.counter = 0
        self.rng = random.Random(0)
        self.refused = 0

    # ------------------------------------------------------------------ helpers

    def _id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def _model_allows(self, req: EntryRequest) -> bool:
        """Every account but issuance stays at or above zero (no overdraft configured)."""
        return all(
            p.account == ISSUANCE or self.model.get(p.account, 0) + p.minutes >= 0
            for p in req.postings
        )

    def _expect(self, req: EntryRequest) -> bool:
        """Apply ``req`` to the model if it must be accepted; say whether it must be."""
        if not self._model_allows(req):
            return False
        for p in req.postings:
            self.model[p.account] = self.model.get(p.account, 0) + p.minutes
        return True

    def _append_all(self, requests: list[EntryRequest]) -> None:
        """Submit every request before waiting on any, so they can share a batch."""
        futures = [self.log.sequencer.submit(r) for r in requests]
        for req, future in zip(requests, futures, strict=True):
            if self._expect(req):
                result = future.result()
                assert (result.seq, result.id, result.replayed) == (
                    len(self.accepted),
                    req.id,
                    False,
                )
                assert result.tree_size > result.seq
                self.accepted.append(req)
                self.leaf_hashes.append(result.leaf_hash)
            else:
                with pytest.raises(InsufficientBalance):
                    future.result()
                self.refused += 1

    # ------------------------------------------------------------------ rules

    @initialize(rng=st.randoms(use_true_random=False))
    def seed(self, rng: random.Random) -> None:
        self.rng = rng

    @rule(op=operations)
    def append_one(self, op: tuple[str, int, int, int]) -> None:
        self._append_all([build(op, self._id(op[0][0]))])

    @rule(ops=st.lists(operations, min_size=2, max_size=8))
    def append_batch(self, ops: list[tuple[str, int, int, int]]) -> None:
        self._append_all([build(op, self._id(op[0][0])) for op in ops])

    @rule(
        kind=st.sampled_from(("gift", "donation", "redemption")),
        who=st.integers(0, MEMBERS - 1),
        extra=st.integers(1, 100),
    )
    def overdraw_member(self, kind: str, who: int, extra: int) -> None:
        minutes = self.model.get(member(who), 0) + extra
        req = build((kind, who, who + 1, minutes), self._id("o"))
        assert not self._model_allows(req)
        self._append_all([req])

    @rule(who=st.integers(0, MEMBERS - 1), extra=st.integers(1, 100))
    def overdraw_pool(self, who: int, extra: int) -> None:
        req = grant(self._id("p"), member(who), self.model.get(POOL, 0) + extra)
        assert not self._model_allows(req)
        self._append_all([req])

    @precondition(lambda self: self.accepted)
    @rule(data=st.data())
    def replay_an_accepted_entry(self, data: st.DataObject) -> None:
        seq = data.draw(st.integers(0, len(self.accepted) - 1), label="seq")
        result = self.log.append(self.accepted[seq])
        assert (result.seq, result.replayed, result.leaf_hash) == (
            seq,
            True,
            self.leaf_hashes[seq],
        )
        # The replay names the first signed checkpoint that covers the entry.
        with self.log.store.read() as db:
            sizes = db.checkpoint_sizes()
        assert result.tree_size == min(size for size in sizes if size > seq)

    @precondition(lambda self: self.accepted)
    @rule(data=st.data(), minutes=st.integers(401, 800))  # no accepted deposit is that large
    def reuse_an_id_with_other_content(self, data: st.DataObject, minutes: int) -> None:
        seq = data.draw(st.integers(0, len(self.accepted) - 1), label="seq")
        original = self.accepted[seq]
        other = deposit(original.id, member(0), minutes)
        with pytest.raises(IdConflict) as info:
            self.log.append(other)
        assert info.value.seq == seq

    # ------------------------------------------------------------------ invariants

    @invariant()
    def balances_equal_the_model(self) -> None:
        with self.log.store.read() as db:
            stored = {row.account: int(row.minutes) for row in db.stream_balances()}
        assert {a: m for a, m in stored.items() if m} == {a: m for a, m in self.model.items() if m}
        assert sum(stored.values()) == 0
        for account, minutes in stored.items():
            if parse_account(account)[1] != "issuance":
                assert minutes >= 0, f"{account} is at {minutes}"
        assert self.log.balance(ISSUANCE) == -sum(m for a, m in self.model.items() if a != ISSUANCE)
        assert self.log.balance(REDEMPTION) == self.model.get(REDEMPTION, 0)

    @invariant()
    def checkpoint_extends_the_last_and_proves_the_leaves(self) -> None:
        log, n = self.log, len(self.leaf_hashes)
        checkpoint, _ = open_checkpoint(log.checkpoint(), log.signer.verifier, ORIGIN)
        assert checkpoint.size == n == log.size()
        assert checkpoint.root == root_of(self.leaf_hashes)
        previous, self.previous = self.previous, checkpoint
        if previous is not None:
            assert previous.size <= n
            if previous.size == n:
                assert previous.root == checkpoint.root
            elif previous.size > 0:
                verify_consistency(
                    previous.size,
                    n,
                    previous.root,
                    checkpoint.root,
                    log.consistency_proof(previous.size, n),
                )
        if n == 0:
            assert checkpoint.root == EMPTY_ROOT
            return
        for _ in range(2):
            index = self.rng.randrange(n)
            leaf = log.leaves(index, index + 1)[0]
            assert leaf.index == index
            assert leaf_hash(leaf.data) == self.leaf_hashes[index]
            decoded = Entry.from_leaf(leaf.data)
            assert (decoded.seq, decoded.request) == (index, self.accepted[index])
            verify_inclusion(
                self.leaf_hashes[index], index, n, log.inclusion_proof(index, n), checkpoint.root
            )
            size = self.rng.randint(index + 1, n)
            verify_inclusion(
                self.leaf_hashes[index],
                index,
                size,
                log.inclusion_proof(index, size),
                root_of(self.leaf_hashes[:size]),
            )
            first = self.rng.randint(1, n)
            second = self.rng.randint(first, n)
            first_root = root_of(self.leaf_hashes[:first])
            verify_consistency(
                first, n, first_root, checkpoint.root, log.consistency_proof(first, n)
            )
            verify_consistency(
                first,
                second,
                first_root,
                root_of(self.leaf_hashes[:second]),
                log.consistency_proof(first, second),
            )

    def teardown(self) -> None:
        try:
            report = self.log.verify()
            assert report.ok, "\n".join(format_report(report))
            assert report.entries == len(self.accepted)
            note(f"{len(self.accepted)} entries appended, {self.refused} refused")
        finally:
            self._close()


def test_log_state_machine(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    machine = type(
        "LogMachineOn" + backend.capitalize(),
        (LogMachine,),
        {"backend": backend, "request": request, "base": tmp_path},
    )
    run_state_machine_as_test(
        machine,
        settings=settings(
            # A PostgreSQL example pays for CREATE and DROP DATABASE (~0.4 s together).
            max_examples=25 if backend == "sqlite" else 15,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


# ---------------------------------------------------------------------------- canonical JSON

safe_ints = st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
printable_keys = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=64
)
# Any code point but lone surrogates: control characters, U+2028/9, non-BMP, noncharacters.
any_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)

json_values = st.recursive(
    st.none() | st.booleans() | safe_ints | any_text,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(printable_keys, children, max_size=5)
    ),
    max_leaves=25,
)


@given(json_values)
def test_canonical_json_equals_rfc8785(value: Any) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


@given(
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(MAX_SAFE_INTEGER + 1) | st.integers(max_value=-MAX_SAFE_INTEGER - 1),
        st.text(min_size=1, max_size=8)
        .filter(lambda k: any(not 0x20 <= ord(c) <= 0x7E for c in k))
        .map(lambda k: {k: 1}),
        st.just({"": 1}),
        st.text(
            st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=65, max_size=80
        ).map(lambda k: {k: 1}),
        st.integers().map(lambda k: {k: 1}),
        st.binary(max_size=4),
        st.sets(st.integers(), max_size=2),
        st.characters(categories=["Cs"]).map(lambda c: "x" + c),
    ),
    st.data(),
)
def test_canonical_json_refuses_what_it_cannot_encode_exactly(
    bad: Any, data: st.DataObject
) -> None:
    # The bad value may sit anywhere inside an otherwise good value.
    path = data.draw(st.lists(st.sampled_from(["list", "dict"]), max_size=3), label="path")
    value = bad
    for step in path:
        value = [1, value, None] if step == "list" else {"a": value, "z": "ok"}
    with pytest.raises(MalformedEntry):
        canonical_json(value)


@given(
    st.dictionaries(printable_keys, json_values, max_size=5),
    st.lists(st.dictionaries(printable_keys, any_text, max_size=3), max_size=2),
    st.integers(0, MAX_SAFE_INTEGER),
    st.binary(min_size=32, max_size=32),
    any_text,
)
def test_the_sequencers_leaf_of_a_validated_entry_is_its_canonical_leaf(
    body: dict[str, Any], signatures: list[dict[str, str]], seq: int, prev: bytes, time: str
) -> None:
    """The writer encodes a validated entry without checking its values a second time: the
    bytes must be exactly ``Entry.leaf`` (and RFC 8785) for every body, signature and time."""
    request = EntryRequest("policy", "p-1", (), body, tuple(signatures))
    request.validate()
    entry = Entry(seq, prev, time, request)
    assert entry.validated_leaf() == entry.leaf() == rfc8785.dumps(entry.to_json())


# ---------------------------------------------------------------------------- Merkle proofs


def rfc_mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 §2.1 MTH over leaf *hashes*, written out as the RFC says it."""
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaves[0]
    k = 1 << ((n - 1).bit_length() - 1)
    return node_hash(rfc_mth(leaves[:k]), rfc_mth(leaves[k:]))


def rfc_path(m: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 6962 §2.1.1 PATH(m, D[n])."""
    n = len(leaves)
    if n == 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return [*rfc_path(m, leaves[:k]), rfc_mth(leaves[k:])]
    return [*rfc_path(m - k, leaves[k:]), rfc_mth(leaves[:k])]


def rfc_subproof(m: int, leaves: list[bytes], whole: bool) -> list[bytes]:
    """RFC 6962 §2.1.2 SUBPROOF(m, D[n], b)."""
    n = len(leaves)
    if m == n:
        return [] if whole else [rfc_mth(leaves)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return [*rfc_subproof(m, leaves[:k], whole), rfc_mth(leaves[k:])]
    return [*rfc_subproof(m - k, leaves[k:], False), rfc_mth(leaves[:k])]


def hashes(n: int) -> list[bytes]:
    return [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(n)]


@st.composite
def tree_and_sizes(draw: st.DrawFn) -> tuple[MemoryTree, list[bytes], int, int, int]:
    """A tree of 1..300 leaves, a size inside it, an index inside that, and a smaller size."""
    total = draw(st.integers(1, 300), label="total")
    size = draw(st.integers(1, total), label="size")
    index = draw(st.integers(0, size - 1), label="index")
    first = draw(st.integers(1, size), label="first")
    leaves = hashes(total)
    tree = MemoryTree()
    for h in leaves:
        tree.append(h)
    return tree, leaves, size, index, first


@given(tree_and_sizes())
def test_memory_tree_proofs_are_rfc6962_and_verify(
    case: tuple[MemoryTree, list[bytes], int, int, int],
) -> None:
    tree, leaves, size, index, first = case
    root = tree.root(size)
    assert root == rfc_mth(leaves[:size]) == root_of(leaves[:size])
    proof = tree.inclusion_proof(index, size)
    assert proof == rfc_path(index, leaves[:size])
    verify_inclusion(leaves[index], index, size, proof, root)
    consistency = tree.consistency_proof(first, size)
    assert consistency == (rfc_subproof(first, leaves[:size], True) if first < size else [])
    verify_consistency(first, size, tree.root(first), root, consistency)


def _tamper(proof: list[bytes], data: st.DataObject) -> list[bytes]:
    position = data.draw(st.integers(0, len(proof) - 1), label="position")
    byte = data.draw(st.integers(0, 31), label="byte")
    flip = data.draw(st.integers(1, 255), label="xor")
    changed = bytearray(proof[position])
    changed[byte] ^= flip
    return [*proof[:position], bytes(changed), *proof[position + 1 :]]


@given(tree_and_sizes(), st.data())
def test_tampered_inclusion_proof_fails(
    case: tuple[MemoryTree, list[bytes], int, int, int], data: st.DataObject
) -> None:
    tree, leaves, size, index, _ = case
    assume(size > 1)
    proof = _tamper(tree.inclusion_proof(index, size), data)
    with pytest.raises(ProofVerificationError):
        verify_inclusion(leaves[index], index, size, proof, tree.root(size))


@given(tree_and_sizes(), st.data())
def test_tampered_consistency_proof_fails(
    case: tuple[MemoryTree, list[bytes], int, int, int], data: st.DataObject
) -> None:
    tree, _, size, _, first = case
    assume(first < size)
    proof = _tamper(tree.consistency_proof(first, size), data)
    with pytest.raises(ProofVerificationError):
        verify_consistency(first, size, tree.root(first), tree.root(size), proof)


@given(tree_and_sizes(), st.data())
def test_proofs_against_the_wrong_root_or_index_fail(
    case: tuple[MemoryTree, list[bytes], int, int, int], data: st.DataObject
) -> None:
    tree, leaves, size, index, first = case
    assume(size > 1)
    other = data.draw(st.integers(0, size - 1).filter(lambda i: i != index), label="other")
    proof = tree.inclusion_proof(index, size)
    with pytest.raises(ProofVerificationError):
        verify_inclusion(leaves[index], other, size, proof, tree.root(size))
    with pytest.raises(ProofVerificationError):
        verify_inclusion(leaves[other], index, size, proof, tree.root(size))
    if first < size:
        with pytest.raises(ProofVerificationError):
            verify_consistency(
                first,
                size,
                tree.root(first),
                hashlib.sha256(b"forged").digest(),
                tree.consistency_proof(first, size),
            )


# ---------------------------------------------------------------------------- entries

ID_ALPHABET = string.ascii_letters + string.digits + "._:@/-"
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)

account_ids = st.builds(
    "{}:{}".format,
    st.from_regex(r"\A[a-z0-9][a-z0-9-]{0,31}\Z"),
    st.sampled_from(["issuance", "pool", "redemption"])
    | st.from_regex(r"\Amember:[A-Za-z0-9_-]{1,64}\Z"),
)
nonzero_minutes = st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER).filter(bool)


@st.composite
def entries(draw: st.DrawFn) -> Entry:
    accounts = draw(st.lists(account_ids, unique=True, max_size=4), label="accounts")
    postings = tuple(Posting(a, draw(nonzero_minutes)) for a in accounts)
    request = EntryRequest(
        kind=draw(st.from_regex(r"\A[a-z][a-z0-9_-]{0,31}\Z"), label="kind"),
        id=draw(st.text(ID_ALPHABET, min_size=1, max_size=128), label="id"),
        postings=postings,
        body=draw(st.dictionaries(printable_keys, json_values, max_size=4), label="body"),
        signatures=tuple(
            draw(
                st.lists(st.dictionaries(printable_keys, any_text, max_size=3), max_size=2),
                label="signatures",
            )
        ),
    )
    moment = EPOCH + timedelta(microseconds=draw(st.integers(0, 60 * 365 * 86400 * 10**6)))
    return Entry(
        seq=draw(st.integers(0, MAX_SAFE_INTEGER), label="seq"),
        prev=draw(st.binary(min_size=32, max_size=32), label="prev"),
        time=moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        request=request,
    )


@given(entries())
def test_entry_round_trips_through_its_leaf(entry: Entry) -> None:
    leaf = entry.leaf()
    entry.request.validate()
    assert Entry.from_leaf(leaf) == entry
    assert Entry.from_leaf(leaf).leaf() == leaf


@given(entries(), st.data())
def test_any_changed_byte_is_refused_or_decodes_to_another_entry(
    entry: Entry, data: st.DataObject
) -> None:
    leaf = entry.leaf()
    position = data.draw(st.integers(0, len(leaf) - 1), label="position")
    value = data.draw(st.integers(0, 255).filter(lambda b: b != leaf[position]), label="byte")
    changed = leaf[:position] + bytes([value]) + leaf[position + 1 :]
    try:
        decoded = Entry.from_leaf(changed)
    except MalformedEntry:
        return
    assert decoded.leaf() == changed
    assert decoded.to_json() != entry.to_json() or decoded.leaf() != leaf
    assert decoded != entry


def test_leaf_with_a_boolean_seq_is_refused() -> None:
    entry = Entry(1, bytes(32), "2024-01-01T00:00:00.000000Z", EntryRequest("seal", "x"))
    forged = entry.leaf().replace(b'"seq":1', b'"seq":true')
    assert forged != entry.leaf()
    with pytest.raises(MalformedEntry):
        Entry.from_leaf(forged)
