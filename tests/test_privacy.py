"""The public log carries no personal data (docs/privacy.md): personal data is put everywhere
the API takes it — registration, flags and their notes, request notes, cancel and reject
reasons, grant and reversal reasons, device names — and then every leaf the public
``/v1/log/leaves`` serves is searched for it, and for the ids other APIs hand out."""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from accounts.service import PersonalInput
from tests.accounts_world import World
from tests.test_workflow import _pool_seed, hours_ago, keyed, log_record, ok
from tests.test_workflow import world as world

__all__ = ["world"]

SECRETS = {
    "name": "欧阳秘密",
    "phone": "13912345678",
    "id_number": "32010619380101005X",
    "address": "秘密路88号",
    "health": "晚期肺癌",
    "note": "门锁密码4321",
    "cancel": "女儿欧阳小红来照顾",
    "reject": "欧阳秘密说志愿者没来",
    "grant": "欧阳秘密独居, 电话13912345678, 晚期肺癌",
    "reversal": "记错了, 应该给欧阳秘密的邻居",
    "device": "欧阳小红的手机",
}


def leaves_text(w: World) -> str:
    size = int(w.client.get("/v1/log/checkpoint").text.split("\n")[1])
    served: list[str] = []
    while len(served) < size:  # a page may be shorter than asked
        bounds = {"start": len(served), "end": size}
        page = ok(w.client.get("/v1/log/leaves", params=bounds))["leaves"]
        served += [base64.b64decode(leaf["data"]).decode() for leaf in page]
    assert len(served) == size
    return "\n".join(served)


def test_no_personal_data_and_no_api_ids_reach_the_public_log(world: World) -> None:
    w = world
    staff = w.accounts.principal_for_user(w.ids["staff-a"])
    elder = w.accounts.register_member(
        staff,
        w.ids["org_a"],
        PersonalInput(
            SECRETS["name"],
            SECRETS["phone"],
            id_number=SECRETS["id_number"],
            address=SECRETS["address"],
            health_notes=SECRETS["health"],
        ),
        volunteer=False,
        elder=True,
    ).member.id
    flag: dict[str, Any] = {"flag": "living_alone", "note": SECRETS["health"]}
    ok(w.client.post(f"/v1/members/{elder}/flags", headers=w.as_("staff-a"), json=flag), 201)
    request = {
        "elder_id": elder,
        "service_code": "meal",
        "minutes": 60,
        "window_start": hours_ago(-24),  # tomorrow
        "window_end": hours_ago(-27),
        "notes": SECRETS["note"],
    }
    asked = ok(w.client.post("/v1/requests", headers=w.as_("staff-a"), json=request), 201)
    ok(
        w.client.post(
            f"/v1/requests/{asked['id']}/cancel",
            headers=w.as_("staff-a"),
            json={"reason": SECRETS["cancel"]},
        )
    )
    record = ok(log_record(w, "vol-a", "elder-a", 6, 5), 201)
    ok(
        w.client.post(
            f"/v1/records/{record['id']}/reject",
            headers=w.as_("staff-a"),
            json={"reason": SECRETS["reject"]},
        )
    )
    verified = ok(log_record(w, "vol-a", "elder-a", 9, 8), 201)
    ok(w.client.post(f"/v1/records/{verified['id']}/confirm", headers=w.as_("elder-a"), json={}))
    verify = f"/v1/records/{verified['id']}/verify"
    deposit = ok(w.client.post(verify, headers=w.as_("staff-a-2fa")))
    w.log.append(_pool_seed(120))
    grant = {
        "elder_id": elder,
        "minutes": 60,
        "reason": SECRETS["grant"],
        "reason_code": "emergency_support",
    }
    granted = ok(w.client.post("/v1/grants", headers=keyed(w.as_("b1-admin")), json=grant), 201)
    reversal = {
        "seq": granted["seq"],
        "reason": SECRETS["reversal"],
        "reason_code": "wrong_member",
    }
    asked_back = ok(w.client.post("/v1/reversals", headers=w.as_("b1-admin"), json=reversal), 201)
    ok(w.client.post(f"/v1/reversals/{asked_back['id']}/approve", headers=w.as_("b1-admin2")))
    # A paid request: its reserve and redemption name it by a keyed reference, not its id.
    grant = {"elder_id": w.ids["elder-a"], "minutes": 60, "reason": "x", "reason_code": "other"}
    ok(w.client.post("/v1/grants", headers=keyed(w.as_("b1-admin")), json=grant), 201)
    meal = {**request, "elder_id": w.ids["elder-a"], "minutes": 30, "notes": None, "redeem": True}
    meal |= {"window_start": hours_ago(4), "window_end": hours_ago(2)}
    paid = ok(w.client.post("/v1/requests", headers=w.as_("elder-a"), json=meal), 201)
    ok(w.client.post(f"/v1/requests/{paid['id']}/claim", headers=w.as_("vol-a")))
    served = ok(log_record(w, "vol-a", "elder-a", 3.5, 3, request_id=paid["id"]), 201)
    ok(w.client.post(f"/v1/records/{served['id']}/confirm", headers=w.as_("elder-a"), json={}))
    key = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    public = base64.b64encode(key).decode()
    device = {"public_key": public, "name": SECRETS["device"]}
    ok(w.client.post("/v1/me/devices", headers=w.as_("vol-a"), json=device), 201)

    text = leaves_text(w)
    entries = [json.loads(line) for line in text.split("\n")]
    kinds = {e["kind"] for e in entries}
    assert {"deposit", "grant", "reversal", "approval", "policy", "reserve", "redemption"} <= kinds
    for what, secret in SECRETS.items():
        assert secret not in text, f"{what} reached the public log"
    for fragment in (SECRETS["phone"][-8:], "欧阳", "肺癌"):
        assert fragment not in text
    # No id that the API hands out names a person in the log: user ids, member ids.
    people = {v for k, v in w.ids.items() if not k.startswith("org") and "account" not in k}
    people |= {elder}
    # … nor requests and records: who knows a request's id must not find the elder's account.
    people |= {asked["id"], paid["id"], record["id"], verified["id"], served["id"]}
    leaked = sorted(p for p in people if p in text)
    assert not leaked, f"ids other APIs hand out are in the log: {leaked}"
    # What the log does say, the auditor can still check: codes, and who acted as pseudonyms.
    grant_entry = next(e for e in entries if e["id"] == granted["id"])
    assert grant_entry["body"] == {"reason": "emergency_support", "by": grant_entry["body"]["by"]}
    assert grant_entry["body"]["by"].startswith("p:")
    reversal_entry = next(e for e in entries if e["kind"] == "reversal")
    body = reversal_entry["body"]
    assert body["reason"] == "wrong_member" and body["requested_by"] != body["approved_by"]
    deposit_entry = next(e for e in entries if e["seq"] == deposit["deposit_seq"])
    reference = w.accounts.protector.reference("record", verified["id"])
    assert deposit_entry["id"] == f"deposit:{reference}"
    d = deposit_entry["body"]
    assert d["confirmed_by"].startswith("p:") and d["confirmed_by"] != d["verified_by"]
    assert deposit_entry["signatures"][-1] == {"role": "verifier", "by": d["verified_by"]}
    # The bank keeps what the log leaves out: the reversal's words for its administrators.
    pending = ok(w.client.get("/v1/reversals", headers=w.as_("b1-admin")))
    assert [(r["reason"], r["reason_code"]) for r in pending] == [
        (SECRETS["reversal"], "wrong_member")
    ]
