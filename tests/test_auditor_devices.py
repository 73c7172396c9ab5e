"""The auditor checks volunteers' device signatures from the public log alone
(``audit.devices``): each deposit a phone signed must carry a signature over its record digest
by a key its volunteer registered, and had not revoked, earlier in the log — offline on bundles
the operator signed, and online across resumed runs. The workflow writes those ``device``
entries (tests/test_workflow.py shows the whole path through the API)."""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given
from hypothesis import strategies as st

from audit.auditor import Policy, verify_bundle, verify_online
from audit.devices import DeviceBook, key_id_of
from ledger.entry import EntryRequest, record_signing_message
from ledger.log import Log
from tests.helpers import member
from tests.test_auditor import deposit, filled, forged_bundle, text_of
from tests.test_witness import log_app, serve

__all__ = ["filled"]  # the auditor tests' log, used here too

VOLUNTEER, OTHER = member(2), member(5)


class Phone:
    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.public = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.id = key_id_of(self.public)

    def entry(self, account: str, action: str = "register") -> EntryRequest:
        prefix = "device" if action == "register" else "device-revoked"
        return EntryRequest(
            "device",
            f"{prefix}:{self.id}",
            (),
            {
                "key": self.id,
                "public_key": base64.b64encode(self.public).decode(),
                "account": account,
                "action": action,
            },
        )

    def signed(self, request: EntryRequest, digest: str | None = None) -> EntryRequest:
        """``request`` (a deposit) with this phone's signature over its record digest."""
        message = record_signing_message(digest or str(request.body["record"]))
        sig = base64.b64encode(self.key.sign(message)).decode()
        volunteer = {"role": "volunteer", "key": self.id, "sig": sig}
        return dataclasses.replace(request, signatures=(volunteer, *request.signatures))


def audit(tmp_path: Path, filled: Log, requests: list[EntryRequest]) -> str:
    bundle = forged_bundle(tmp_path / "bundle", requests, filled.signer)
    report = verify_bundle(bundle, Policy(filled.signer.verifier))
    return "" if report.ok else text_of(report)


def test_signatures_by_registered_keys_pass(tmp_path: Path, filled: Log) -> None:
    phone, later = Phone(), Phone()
    requests = [
        phone.entry(VOLUNTEER),
        phone.signed(deposit("d1", VOLUNTEER, 60)),
        deposit("d2", VOLUNTEER, 30),  # unsigned: logged without a phone
        later.entry(VOLUNTEER),
        phone.entry(VOLUNTEER, "revoke"),
        later.signed(deposit("d3", VOLUNTEER, 45)),
    ]
    assert audit(tmp_path, filled, requests) == ""


def test_each_wrong_signature_is_named(tmp_path: Path, filled: Log) -> None:
    phone, stranger, others = Phone(), Phone(), Phone()
    requests = [
        stranger.signed(deposit("d0", VOLUNTEER, 10)),  # seq 0: never registered
        phone.entry(VOLUNTEER),
        others.entry(OTHER),
        others.signed(deposit("d3", VOLUNTEER, 10)),  # seq 3: another volunteer's key
        phone.signed(deposit("d4", VOLUNTEER, 10), digest="ab" * 32),  # seq 4: other record
        phone.entry(VOLUNTEER, "revoke"),
        phone.signed(deposit("d6", VOLUNTEER, 10)),  # seq 6: after its revocation
        phone.entry(VOLUNTEER),  # seq 7: the same key again
    ]
    text = audit(tmp_path, filled, requests)
    assert f"seq 0: deposit is signed by device key {stranger.id}, which no device" in text
    assert f"seq 3: deposit credits {VOLUNTEER} but is signed by device key {others.id}" in text
    assert f"seq 4: the volunteer's device signature (key {phone.id}) does not verify" in text
    assert f"seq 6: deposit is signed by device key {phone.id}, revoked at seq 5" in text
    assert f"seq 7: device key {phone.id} is registered a second time" in text
    assert "signed root" not in text  # the operator signed it all: only the book catches it


def test_a_device_entry_must_name_its_own_key(tmp_path: Path, filled: Log) -> None:
    phone, other = Phone(), Phone()
    lying = dataclasses.replace(
        phone.entry(VOLUNTEER), body={**phone.entry(VOLUNTEER).body, "key": other.id}
    )
    text = audit(tmp_path, filled, [lying, other.entry(OTHER, "revoke")])
    assert f"seq 0: device entry registers key {other.id}, whose id is not" in text
    assert f"seq 1: device entry revokes key {other.id}, which {OTHER} never registered" in text


def test_device_keys_carry_over_between_online_runs(filled: Log, tmp_path: Path) -> None:
    policy = Policy(filled.signer.verifier)
    state = tmp_path / "state.json"
    phone = Phone()
    filled.append(phone.entry(VOLUNTEER))
    with serve(log_app(filled)) as url:
        assert verify_online(url, policy, state_path=state).ok
        filled.append(phone.signed(deposit("d-phone", VOLUNTEER, 60)))  # key from the saved state
        second = verify_online(url, policy, state_path=state)
        assert second.ok and second.entries == 1, text_of(second)
        filled.append(phone.entry(VOLUNTEER, "revoke"))
        filled.append(phone.signed(deposit("d-late", VOLUNTEER, 60)))
        third = verify_online(url, policy, state_path=state)
    assert not third.ok and third.entries == 2
    assert "revoked at seq" in text_of(third)


@given(st.lists(st.sampled_from(["register", "revoke", "sign"]), max_size=12))
def test_the_book_agrees_with_a_simple_model(steps: list[str]) -> None:
    """One key, any order of steps: a signature passes exactly while the key is registered and
    not revoked; a second registration or revocation is always named."""
    phone, book = Phone(), DeviceBook()
    state = "none"
    digest = "cd" * 32
    sig = base64.b64encode(phone.key.sign(record_signing_message(digest))).decode()
    public = base64.b64encode(phone.public).decode()
    for seq, step in enumerate(steps):
        if step == "sign":
            problems = book.apply(seq, ("signature", phone.id, sig, VOLUNTEER, digest))
            assert (problems == []) == (state == "live"), (steps, problems)
            continue
        problems = book.apply(seq, (step, phone.id, public, VOLUNTEER, ""))
        allowed = {("register", "none"): "live", ("revoke", "live"): "revoked"}.get((step, state))
        assert (problems == []) == (allowed is not None), (steps, problems)
        state = allowed or state
    assert DeviceBook.from_json(book.to_json()) == book
