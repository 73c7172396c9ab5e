"""C2SP signed-note vectors from ../shared/vectors/note.json, and our checkpoint formats."""

from __future__ import annotations

import pytest

from ledger.errors import KeyFormatError, NoteError, UnknownKey
from ledger.merkle import EMPTY_ROOT
from ledger.note import (
    COSIGNATURE_V1,
    Checkpoint,
    Note,
    Signer,
    TlogProof,
    Verifier,
    check_cosignature,
    cosign,
    open_checkpoint,
    sign_checkpoint,
)
from tests.vectors import load, require_vectors


@pytest.fixture(scope="module")
def vectors() -> dict[str, dict[str, str]]:
    return load(require_vectors() / "note.json")  # type: ignore[no-any-return]


def test_c2sp_example_verifies(vectors: dict[str, dict[str, str]]) -> None:
    ex = vectors["c2sp_example"]
    verifier = Verifier.from_text(ex["vkey"])
    note = Note.parse(ex["note"])
    note.verify(verifier)
    assert note.text == "This is an example message.\n"
    assert note.render() == ex["note"]


def test_go_private_key_reproduces_signature_line(vectors: dict[str, dict[str, str]]) -> None:
    go = vectors["go_note_test"]
    signer = Signer.from_text(go["skey"])
    assert signer.verifier.to_text() == go["vkey"]
    assert signer.to_text() == go["skey"]
    assert signer.signature_line(go["text"]) == go["signature_line"] + "\n"


def test_note_signed_by_two_keys_verifies_with_each(vectors: dict[str, dict[str, str]]) -> None:
    go = vectors["go_note_test"]
    note = Note.parse(
        go["text"] + "\n" + go["signature_line"] + "\n" + go["other_signature_line"] + "\n"
    )
    note.verify(Verifier.from_text(go["vkey"]))
    note.verify(Verifier.from_text(go["other_vkey"]))


def test_tampered_text_fails(vectors: dict[str, dict[str, str]]) -> None:
    go = vectors["go_note_test"]
    note = Note.parse(go["text"].replace("answer", "Answer") + "\n" + go["signature_line"] + "\n")
    with pytest.raises(NoteError, match="does not verify"):
        note.verify(Verifier.from_text(go["vkey"]))


def test_unknown_key_is_named(vectors: dict[str, dict[str, str]]) -> None:
    go = vectors["go_note_test"]
    note = Note.parse(go["text"] + "\n" + go["other_signature_line"] + "\n")
    with pytest.raises(UnknownKey, match="EnochRoot"):
        note.verify(Verifier.from_text(go["vkey"]))


@pytest.mark.parametrize(
    "text",
    [
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong id
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",  # short key
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "no-plus-signs",
    ],
)
def test_malformed_verifier_keys_are_refused(text: str) -> None:
    with pytest.raises(KeyFormatError):
        Verifier.from_text(text)


@pytest.mark.parametrize(
    "data",
    [
        "no blank line\n— a AAAA\n",
        "text\n\nnot a signature\n",
        "text\n\n— name !!!!\n",
        "text\n\n",
    ],
)
def test_malformed_notes_are_refused(data: str) -> None:
    with pytest.raises(NoteError):
        Note.parse(data)


def test_checkpoint_round_trip() -> None:
    signer = Signer.generate("timebank.test/log")
    cp = Checkpoint("timebank.test/log", 0, EMPTY_ROOT)
    text = sign_checkpoint(cp, signer)
    assert text.startswith(
        "timebank.test/log\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n— "
    )
    parsed, _ = open_checkpoint(text, signer.verifier, origin="timebank.test/log")
    assert parsed == cp
    with pytest.raises(NoteError, match="origin"):
        open_checkpoint(text, signer.verifier, origin="other")


def test_cosignature_round_trip() -> None:
    log = Signer.generate("timebank.test/log")
    witness = Signer.generate("witness.test", COSIGNATURE_V1)
    body = Checkpoint("timebank.test/log", 3, b"\x07" * 32).body()
    note = Note.parse(sign_checkpoint(Checkpoint.parse_body(body), log))
    cosigned = Note(note.text, (*note.signatures, cosign(body, witness, 1_700_000_000)))
    reparsed = Note.parse(cosigned.render())
    assert check_cosignature(reparsed, witness.verifier) == 1_700_000_000
    other = Signer.generate("witness.test", COSIGNATURE_V1)
    assert check_cosignature(reparsed, other.verifier) is None
    assert Verifier.from_text(witness.verifier.to_text()) == witness.verifier


def test_tlog_proof_round_trip() -> None:
    proof = TlogProof(5, (b"\x01" * 32, b"\x02" * 32), "origin\n1\nAAAA\n\n— x AAAAAA==\n", b"x")
    assert TlogProof.parse(proof.render()) == proof
    with pytest.raises(NoteError):
        TlogProof.parse("c2sp.org/tlog-proof@v1\nindex x\n\ncp")


def test_a_signer_that_has_signed_still_pickles() -> None:
    """The signer keeps its key object once made; pickling (worker processes) keeps working."""
    import pickle

    from ledger.note import Signer

    signer = Signer.generate("timebank.test/pickle")
    signature = signer.sign(b"checkpoint")
    again = pickle.loads(pickle.dumps(signer))
    assert again == signer and again.sign(b"checkpoint") == signature
