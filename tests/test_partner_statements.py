"""Signed statements and service certificates (issue 13, item 3): issued to the member, their
proxy, staff and admins, and to a partner through a link granting ``read_statement``; checked
offline by ``timebank audit statement`` against the bank's statement key and the log's key;
tampering with any field, the signature or a receipt is caught and named."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from audit.report import Policy
from audit.statement import signed_bytes, verify_document
from cli.main import main
from ledger.note import TlogProof, Verifier
from partners.statements import SignedDocuments
from tests.accounts_world import PASSWORD, World
from tests.conftest import BACKENDS
from tests.partners_world import partners_world
from tests.web_helpers import browser_login

Doc = dict[str, Any]


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    yield from partners_world(request, tmp_path_factory)


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def _keys(w: World) -> tuple[Verifier, Policy]:
    statement_key = w.client.get("/v1/statements/key")
    assert statement_key.status_code == 200
    log_key = w.client.get("/v1/log/key").text
    return Verifier.from_text(statement_key.text), Policy(Verifier.from_text(log_key))


def _problems(w: World, document: Doc) -> list[str]:
    key, policy = _keys(w)
    report = verify_document(json.dumps(document, ensure_ascii=False), key, policy)
    return [f"{p.where}: {p.message}" for p in report.problems]


def _resign(w: World, document: Doc) -> Doc:
    """The bank's own key signs a changed document: only the receipts can catch the lie."""
    documents: SignedDocuments = w.client.app.state.documents
    changed = {k: v for k, v in document.items() if k != "signature"}
    signature = documents.signer.sign(signed_bytes(changed))
    changed["signature"] = {"key": documents.key, "value": base64.b64encode(signature).decode()}
    return changed


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


def test_a_statement_verifies_offline_and_adds_up(world: World, tmp_path: Path) -> None:
    w = world
    statement = _ok(w.client.get(f"/v1/members/{w.ids['vol-b']}/statement", headers=w.as_("vol-b")))
    assert statement["format"] == "timebank-statement/v1"
    assert statement["account"] == w.ids["vol-b-account"]
    kinds = [e["kind"] for e in statement["entries"]]
    assert kinds.count("deposit") == 2 and "donation" in kinds, kinds
    assert statement["totals"]["net"] == sum(e["minutes"] for e in statement["entries"])
    assert statement["totals"]["net"] == 40  # 2 × 30 verified, 20 donated
    assert _problems(w, statement) == []

    # the CLI says the same, and names what failed
    path = tmp_path / "statement.json"
    path.write_text(json.dumps(statement, ensure_ascii=False), "utf-8")
    key = w.client.get("/v1/statements/key").text.strip()
    log_key = w.client.get("/v1/log/key").text.strip()
    args = ["audit", "statement", str(path), "--statement-key", key, "--key", log_key]
    assert main(args) == 0
    bad = copy.deepcopy(statement)
    bad["totals"]["net"] = 400
    path.write_text(json.dumps(bad, ensure_ascii=False), "utf-8")
    assert main(args) == 1
    missing = [*args[:4], str(tmp_path / "no-such.vkey"), *args[5:]]
    assert main(missing) == 2  # a usage error, not a verdict

    # a period with nothing in it: an empty, signed statement
    empty = _ok(
        w.client.get(
            f"/v1/members/{w.ids['vol-b']}/statement?from=2020-01-01&to=2020-01-31",
            headers=w.as_("vol-b"),
        )
    )
    assert empty["entries"] == [] and empty["totals"]["net"] == 0
    assert _problems(w, empty) == []


TAMPERS: list[tuple[str, Callable[[Doc], None], str]] = [
    (
        "minutes",
        lambda d: d["entries"][0].update(minutes=d["entries"][0]["minutes"] + 60),
        "minutes",
    ),
    ("kind", lambda d: d["entries"][0].update(kind="correction"), "kind is 'correction'"),
    ("time", lambda d: d["entries"][0].update(time="2026-01-01T00:00:00.000000Z"), "time"),
    ("id", lambda d: d["entries"][0].update(id="deposit:forged"), "id is 'deposit:forged'"),
    ("totals", lambda d: d["totals"].update(credited=d["totals"]["credited"] + 1), "credited"),
    ("dropped entry", lambda d: d["entries"].pop(0), "add up"),
    (
        "proof",
        lambda d: d["entries"][0].update(proof=[base64.b64encode(bytes(32)).decode()]),
        "not in the signed tree",
    ),
    ("leaf swapped", lambda d: d["entries"][0].update(leaf=d["entries"][1]["leaf"]), "receipt"),
    ("seq", lambda d: d["entries"][0].update(seq=d["entries"][0]["seq"] + 1), "receipt"),
    (
        "checkpoint",
        lambda d: d.update(checkpoint=d["checkpoint"].replace("\n", "\n ", 1)),
        "log key",
    ),
    ("period", lambda d: d["period"].update(to="2020-01-01", **{"from": "2020-01-01"}), "period"),
]


@pytest.mark.parametrize(("what", "change", "named"), TAMPERS, ids=[t[0] for t in TAMPERS])
def test_tampering_is_caught_and_named(
    world: World, what: str, change: Callable[[Doc], None], named: str
) -> None:
    w = world
    statement = _ok(w.client.get(f"/v1/members/{w.ids['vol-b']}/statement", headers=w.as_("vol-b")))
    assert _problems(w, statement) == []
    changed = copy.deepcopy(statement)
    change(changed)
    problems = _problems(w, changed)
    assert any(p.startswith("signature") for p in problems), problems  # the bank's signature
    resigned = _problems(w, _resign(w, changed))  # even signed by the bank, the lie shows
    assert resigned and not any(p.startswith("signature") for p in resigned), resigned
    assert any(named in p for p in resigned), (what, resigned)


def test_the_signature_itself_and_the_key(world: World) -> None:
    w = world
    statement = _ok(w.client.get(f"/v1/members/{w.ids['vol-b']}/statement", headers=w.as_("vol-b")))
    forged = copy.deepcopy(statement)
    value = bytearray(base64.b64decode(forged["signature"]["value"]))
    value[0] ^= 1
    forged["signature"]["value"] = base64.b64encode(bytes(value)).decode()
    assert any("does not verify" in p for p in _problems(w, forged))
    key, policy = _keys(w)
    # the log's key is not the statement key: a document checked against it fails
    report = verify_document(json.dumps(statement), policy.key, policy)
    assert not report.ok and report.problems[0].where == "signature"
    assert not verify_document("{not json", key, policy).ok
    assert verify_document(json.dumps({**statement, "format": "x"}), key, policy).problems


def test_a_certificate_counts_verified_service_with_the_star_level(world: World) -> None:
    w = world
    _ok(
        w.client.post(
            "/v1/policy",
            headers=w.as_("b1-admin"),
            json={"star_levels": True, "star_hours": "1,2,3,4,5"},
        )
    )
    vol_b = w.ids["vol-b"]
    cert = _ok(w.client.get(f"/v1/members/{vol_b}/certificate", headers=w.as_("vol-b")))
    assert cert["format"] == "timebank-certificate/v1"
    assert cert["member"] == {"name": "赵*", "name_shown": "masked", "organisation": "Org B"}
    service = cert["service"]
    assert (service["cumulative_minutes"], service["cumulative_hours"]) == (60, "1.00")
    assert (service["star_level"], service["star_name"]) == (1, "一星")
    assert [e["kind"] for e in cert["entries"]] == ["deposit", "deposit"]  # no donation
    assert _problems(w, cert) == []

    for change, named in (
        (lambda d: d["service"].update(cumulative_minutes=6000), "service.cumulative_minutes"),
        (lambda d: d["service"].update(star_level=5), "service.star_level"),
        (lambda d: d["service"].update(period_hours="9.00"), "service.period_hours"),
    ):
        changed = copy.deepcopy(cert)
        change(changed)
        assert any(p.startswith("signature") for p in _problems(w, changed))
        assert any(p.startswith(named) for p in _problems(w, _resign(w, changed)))
    renamed = copy.deepcopy(cert)
    renamed["member"]["name"] = "赵敏"
    assert [p.split(":")[0] for p in _problems(w, renamed)] == ["signature"]

    full = _ok(w.client.get(f"/v1/members/{vol_b}/certificate?name=full", headers=w.as_("vol-b")))
    assert full["member"]["name"] == "赵敏" and _problems(w, full) == []
    nick = _ok(
        w.client.get(
            f"/v1/members/{vol_b}/certificate?name=nickname&nickname=小赵", headers=w.as_("vol-b")
        )
    )
    assert (nick["member"]["name"], nick["member"]["name_shown"]) == ("小赵", "nickname")
    # staff issue one for the member, but the full name is the member's (or proxy's) choice
    staff = w.client.get(f"/v1/members/{vol_b}/certificate?name=full", headers=w.as_("staff-b"))
    assert staff.status_code == 403 and staff.json()["field"] == "name"
    masked = _ok(w.client.get(f"/v1/members/{vol_b}/certificate", headers=w.as_("staff-b")))
    assert masked["member"]["name"] == "赵*"
    for query, field in (
        ("name=nickname", "nickname"),
        ("name=real", "name"),
        ("from=2026-02-01&to=2026-01-01", "from"),
        (f"to={(datetime.now(UTC) + timedelta(days=3)).date()}", "to"),
        ("from=yesterday", "from"),
    ):
        refused = w.client.get(f"/v1/members/{vol_b}/certificate?{query}", headers=w.as_("vol-b"))
        assert refused.status_code == 400, (query, refused.text)
        assert field in json.dumps(refused.json()), (query, refused.text)


def test_a_proxy_gets_the_elders_certificate_with_her_name(world: World) -> None:
    w = world
    elder = w.ids["elder-a"]
    cert = _ok(
        w.client.get(f"/v1/members/{elder}/certificate?name=full", headers=w.as_("family-a"))
    )
    assert cert["member"]["name"] == "王秀英" and cert["service"]["cumulative_minutes"] == 0
    assert _problems(w, cert) == []
    assert w.client.get(f"/v1/members/{elder}/statement", headers=w.as_("vol-b")).status_code == 404


def test_a_partner_reads_statements_only_through_a_link_granting_them(world: World) -> None:
    w = world
    points_only = _linked(w, "district", "vol-b", ["read_points"])
    refused = w.client.get(
        f"/v1/partner/members/{points_only}/statement", headers=w.as_("district")
    )
    assert refused.status_code == 403, refused.text
    handle = _linked(w, "district", "vol-b", ["read_statement"])
    assert handle == points_only  # one handle per partner and member
    statement = _ok(
        w.client.get(f"/v1/partner/members/{handle}/statement", headers=w.as_("district"))
    )
    assert _problems(w, statement) == [] and statement["totals"]["entries"] >= 3
    cert = _ok(w.client.get(f"/v1/partner/members/{handle}/certificate", headers=w.as_("district")))
    assert cert["member"]["name"] == "赵*" and _problems(w, cert) == []

    # another partner with the handle: not found; no link at all: not found
    for path in (f"/v1/partner/members/{handle}/statement", "/v1/partner/members/mh_0/statement"):
        assert w.client.get(path, headers=w.as_("school")).status_code == 404
    # a partner key never reads by member id
    by_id = w.client.get(f"/v1/members/{w.ids['vol-b']}/statement", headers=w.as_("district"))
    assert by_id.status_code == 404

    # revoked: nothing more
    links = _ok(w.client.get(f"/v1/members/{w.ids['vol-b']}/links", headers=w.as_("vol-b")))
    for link in links:
        if link["status"] == "active":
            _ok(w.client.post(f"/v1/links/{link['id']}/revoke", headers=w.as_("vol-b")))
    for kind in ("statement", "certificate"):
        gone = w.client.get(f"/v1/partner/members/{handle}/{kind}", headers=w.as_("district"))
        assert gone.status_code == 403 and "revoked" in gone.json()["detail"], gone.text


def test_every_statement_issued_is_in_the_audit_trail(world: World) -> None:
    w = world
    vol_b = w.ids["vol-b"]
    _ok(w.client.get(f"/v1/members/{vol_b}/statement", headers=w.as_("vol-b")))
    _ok(w.client.get(f"/v1/members/{vol_b}/certificate", headers=w.as_("staff-b")))
    refused = w.client.get(f"/v1/members/{vol_b}/statement", headers=w.as_("auditor"))
    assert refused.status_code == 403  # auditors check the log, not a member's statement
    handle = _linked(w, "district", "vol-b", ["read_statement"])  # this test's own partner read
    _ok(w.client.get(f"/v1/partner/members/{handle}/statement", headers=w.as_("district")))
    events = [
        event
        for prefix in ("GET%20/v1/members/", "GET%20/v1/partner/members/")
        for event in _ok(
            w.client.get(f"/v1/audit/events?action={prefix}&limit=1000", headers=w.as_("auditor"))
        )
    ]
    issued = [
        (e["action"], e["status"])
        for e in events
        if e["action"].endswith(("/statement", "/certificate"))
        and (e["on_behalf"] == vol_b or (e["on_behalf"] is None and e["role"] == "volunteer"))
    ]
    assert ("GET /v1/members/{member_id}/statement", 200) in issued
    assert ("GET /v1/members/{member_id}/certificate", 200) in issued
    partner_reads = [e for e in events if e["action"].startswith("GET /v1/partner/members/")]
    assert any(e["action"].endswith("/statement") for e in partner_reads)
    assert any(e["action"].endswith("/statement") and e["status"] == 403 for e in events), (
        "refusals are recorded too"
    )


def test_the_volunteer_prints_a_certificate_from_the_web_app(world: World) -> None:
    """The page shows the certificate, downloads the very document it shows (its SHA-256 in
    the QR code), and the download verifies; each page issued is in the audit trail."""
    w = world
    w.client.cookies.clear()
    try:
        assert browser_login(w.client, "vol-b", PASSWORD).status_code == 303
        page = w.client.get("/volunteer/certificate")
        assert page.status_code == 200 and "赵*" in page.text, page.text
        match = re.search(r'href="data:application/json;base64,([^"]+)"', page.text)
        assert match is not None
        data = base64.b64decode(match.group(1))
        assert f"SHA-256 {hashlib.sha256(data).hexdigest()}" in page.text
        document = json.loads(data)
        assert document["format"] == "timebank-certificate/v1" and _problems(w, document) == []
        full = w.client.get("/volunteer/certificate?name=full")
        assert full.status_code == 200 and "赵敏" in full.text
        refused = w.client.get("/volunteer/certificate?name=nickname")
        assert refused.status_code == 400 and "昵称" in refused.text and "赵*" in refused.text
    finally:
        w.client.cookies.clear()
    events = _ok(
        w.client.get(
            "/v1/audit/events?action=GET%20/volunteer/certificate&limit=100",
            headers=w.as_("auditor"),
        )
    )
    assert [e["status"] for e in events][-3:] == [200, 200, 400], events


def test_receipts_come_in_one_checkpoint_and_only_for_what_it_covers(world: World) -> None:
    """A statement's entries share one checkpoint; an entry the served checkpoint does not cover
    yet (appended since, or awaiting the witnesses' quorum) gets no receipt and waits."""
    w = world
    size = w.log.size()
    receipts = w.log.receipts([0, size - 1, size + 10_000, size + 20_000])
    assert len(receipts) == 2
    first, last = (TlogProof.parse(r) for r in receipts)
    assert (first.index, last.index) == (0, size - 1) and first.checkpoint == last.checkpoint
