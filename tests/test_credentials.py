"""Passwords, sessions, lockout, rate limits, TOTP, device keys and partner keys."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from accounts import totp
from accounts.errors import (
    EnrolmentCodeRequired,
    InvalidCredentials,
    LoginThrottled,
    SecondFactorRequired,
    TokenInvalid,
    WeakPassword,
)
from accounts.model import Role
from accounts.passwords import check_policy
from accounts.service import AccountsService, SecurityPolicy
from ledger.config import Settings
from ledger.log import Log
from tests.accounts_world import PASSWORD, World, build_world


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@pytest.fixture
def world(settings: Settings, log: Log) -> Iterator[World]:
    yield from build_world(settings, log)


@pytest.fixture
def clocked(world: World) -> tuple[AccountsService, Clock]:
    """The same database and keys, with a clock the test controls."""
    clock = Clock()
    service = AccountsService(
        world.accounts.store,
        world.accounts.protector,
        world.log,
        clock,
        SecurityPolicy(client_attempts_per_window=1000),
    )
    return service, clock


def login(
    world: World, username: str, password: str, **extra: str
) -> tuple[int, dict[str, object]]:
    response = world.client.post(
        "/v1/auth/login", json={"username": username, "password": password, **extra}
    )
    return response.status_code, response.json()


@pytest.mark.parametrize(
    ("password", "ok"),
    [
        ("short", False),
        ("12345678", False),
        ("Password123", False),
        ("qwerty123", False),
        ("woaini1314", False),
        ("correct horse battery", True),
        ("长城长城长城长城", True),
        ("x" * 300, False),
    ],
)
def test_password_policy(password: str, ok: bool) -> None:
    if ok:
        check_policy(password, "someone")
    else:
        with pytest.raises(WeakPassword):
            check_policy(password, "someone")


def test_password_equal_to_username_is_refused() -> None:
    with pytest.raises(WeakPassword):
        check_policy("longusername", "LongUsername")


def test_login_logout_and_revoked_token(world: World) -> None:
    status, body = login(world, "vol-a", PASSWORD)
    assert status == 200
    assert body["roles"] == ["volunteer"]
    headers = {"Authorization": f"Bearer {body['token']}"}
    assert world.client.get("/v1/me", headers=headers).status_code == 200
    assert world.client.post("/v1/auth/logout", headers=headers).status_code == 204
    refused = world.client.get("/v1/me", headers=headers)
    assert refused.status_code == 401
    assert refused.json()["type"] == "urn:timebank:problem:token-invalid"
    assert refused.headers["www-authenticate"].startswith("Bearer")


def test_wrong_password_and_unknown_user_look_the_same(world: World) -> None:
    a = login(world, "vol-a", "wrong password!")
    b = login(world, "nobody-here", "wrong password!")
    assert a[0] == b[0] == 401
    assert a[1]["detail"] == b[1]["detail"] == "wrong username or password"


def test_logout_everywhere_revokes_every_session(world: World) -> None:
    tokens = [login(world, "vol-a", PASSWORD)[1]["token"] for _ in range(3)]
    headers = {"Authorization": f"Bearer {tokens[0]}"}
    assert world.client.post("/v1/auth/logout-all", headers=headers).status_code == 204
    for token in tokens:
        assert (
            world.client.get("/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code
            == 401
        )


def test_expired_token(world: World, clocked: tuple[AccountsService, Clock]) -> None:
    service, clock = clocked
    result = service.login("vol-a", PASSWORD, None, "test-client")
    assert service.authenticate(result.token).user_id == world.ids["vol-a-user"]
    clock.advance(hours=12, seconds=1)
    with pytest.raises(TokenInvalid, match="expired"):
        service.authenticate(result.token)


def test_malformed_authorization_headers(world: World) -> None:
    for header in ("", "Bearer", "Basic abc", "Bearer tbs_notatoken", "Bearer tbk_notakey"):
        response = world.client.get("/v1/me", headers={"Authorization": header} if header else {})
        assert response.status_code == 401, header
        assert response.headers["content-type"] == "application/problem+json"


def test_lockout_is_temporary_and_capped(
    world: World, clocked: tuple[AccountsService, Clock]
) -> None:
    service, clock = clocked
    for _ in range(5):
        with pytest.raises(InvalidCredentials):
            service.login("vol-a", "wrong password!", None, "attacker")
    with pytest.raises(LoginThrottled) as locked:
        service.login("vol-a", PASSWORD, None, "victim-phone")
    assert 0 < locked.value.retry_after <= 31
    clock.advance(seconds=31)
    for _ in range(30):  # an attacker keeps failing: the lock grows, but never past 15 minutes
        with contextlib.suppress(InvalidCredentials, LoginThrottled):
            service.login("vol-a", "wrong password!", None, "attacker")
        clock.advance(minutes=16)
    # After the longest lock has run out the owner gets in with the right password.
    assert service.login("vol-a", PASSWORD, None, "victim-phone").principal.user_id


def test_lockout_over_http_gives_429_with_retry_after(world: World) -> None:
    for _ in range(5):
        assert login(world, "vol-b", "wrong password!")[0] == 401
    response = world.client.post("/v1/auth/login", json={"username": "vol-b", "password": PASSWORD})
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) > 0
    assert response.json()["type"] == "urn:timebank:problem:login-throttled"


def test_an_unknown_name_is_locked_out_as_a_real_one_is(
    world: World, clocked: tuple[AccountsService, Clock]
) -> None:
    """Lockout used to answer 429 only for names that exist: it told which names do."""
    service, clock = clocked

    def answers(username: str) -> list[str]:
        seen = []
        for attempt in range(7):
            try:
                service.login(username, "wrong password!", None, f"client-{username}-{attempt}")
            except LoginThrottled as exc:
                seen.append(f"429 retry after {exc.retry_after}")
            except InvalidCredentials:
                seen.append("401")
        return seen

    real, unknown = answers("vol-a"), answers("nobody-by-that-name")
    assert real == unknown
    assert real[:5] == ["401"] * 5 and real[5].startswith("429")
    clock.advance(seconds=31)  # the lock runs out for both alike
    assert answers("vol-a")[0] == answers("nobody-by-that-name")[0] == "401"


def test_per_client_rate_limit(world: World) -> None:
    service = AccountsService(
        world.accounts.store,
        world.accounts.protector,
        world.log,
        policy=SecurityPolicy(client_attempts_per_window=3),
    )
    for username in ("a-1", "a-2", "a-3"):
        with pytest.raises(InvalidCredentials):
            service.login(username, "whatever pass", None, "10.0.0.9")
    with pytest.raises(LoginThrottled):
        service.login("vol-a", PASSWORD, None, "10.0.0.9")
    assert service.login("vol-a", PASSWORD, None, "10.0.0.10").token  # other clients unaffected


def test_totp_enrolment_and_second_factor_login(world: World) -> None:
    # The password alone (a session token) does not enrol a phone ...
    alone = world.client.post("/v1/me/totp", headers=world.as_("staff-a"))
    assert alone.status_code == 403, alone.text
    assert alone.json()["type"] == "urn:timebank:problem:enrolment-code-required"
    assert alone.json()["field"] == "enrolment_code"
    # ... the organisation's admin issues an enrolment code, shown once.
    issued = world.client.post(
        f"/v1/users/{world.ids['staff-a']}/totp-reset", headers=world.as_("admin-a")
    )
    assert issued.status_code == 201, issued.text
    code = issued.json()["enrolment_code"]
    assert code.startswith("tbe_")
    wrong_code = world.client.post(
        "/v1/me/totp", headers=world.as_("staff-a"), json={"enrolment_code": code + "x"}
    )
    assert wrong_code.status_code == 403
    start = world.client.post(
        "/v1/me/totp", headers=world.as_("staff-a"), json={"enrolment_code": code}
    )
    assert start.status_code == 201
    secret = start.json()["secret"]
    assert start.json()["otpauth_uri"].startswith("otpauth://totp/")
    bad = world.client.post(
        "/v1/me/totp/confirm", headers=world.as_("staff-a"), json={"code": "000000"}
    )
    assert bad.status_code == 400 and bad.json()["field"] == "code"
    now = datetime.now(UTC).timestamp()
    code = totp.code_at(secret, int(now // 30))
    ok = world.client.post("/v1/me/totp/confirm", headers=world.as_("staff-a"), json={"code": code})
    assert ok.status_code == 204
    without = login(world, "staff-a", PASSWORD)
    assert without[0] == 200 and without[1]["second_factor"] is False
    with pytest.raises(SecondFactorRequired):
        AccountsService.require_second_factor(world.accounts.authenticate(str(without[1]["token"])))
    next_code = totp.code_at(secret, int(now // 30) + 1)
    status, body = login(world, "staff-a", PASSWORD, totp=next_code)
    assert status == 200 and body["second_factor"] is True
    AccountsService.require_second_factor(world.accounts.authenticate(str(body["token"])))
    replay = login(world, "staff-a", PASSWORD, totp=next_code)
    assert replay[0] == 401  # a code is good once


def test_device_keys_sign_and_can_be_revoked(world: World) -> None:
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    added = world.client.post(
        "/v1/me/devices",
        headers=world.as_("vol-a"),
        json={"public_key": base64.b64encode(public).decode(), "name": "my phone"},
    )
    assert added.status_code == 201, added.text
    key_id = added.json()["id"]
    body = {"public_key": base64.b64encode(public).decode(), "name": "my phone"}
    again = world.client.post("/v1/me/devices", headers=world.as_("vol-a"), json=body)
    assert again.status_code == 201 and again.json() == added.json()  # a lost answer, retried
    theirs = world.client.post("/v1/me/devices", headers=world.as_("vol-b"), json=body)
    assert theirs.status_code == 409 and theirs.json()["field"] == "public_key"
    message = b"service record canonical bytes"
    signature = base64.b64encode(private.sign(message)).decode()
    world.accounts.check_device_signature(world.ids["vol-a-user"], key_id, message, signature)
    with pytest.raises(TokenInvalid, match="does not verify"):
        world.accounts.check_device_signature(world.ids["vol-a-user"], key_id, b"other", signature)
    with pytest.raises(TokenInvalid, match="unknown"):
        world.accounts.check_device_signature(world.ids["vol-b-user"], key_id, message, signature)
    other = world.client.post(f"/v1/me/devices/{key_id}/revoke", headers=world.as_("vol-b"))
    assert other.status_code == 404  # not theirs
    revoked = world.client.post(f"/v1/me/devices/{key_id}/revoke", headers=world.as_("vol-a"))
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    with pytest.raises(TokenInvalid, match="revoked"):
        world.accounts.check_device_signature(world.ids["vol-a-user"], key_id, message, signature)
    listed = world.client.get("/v1/me/devices", headers=world.as_("vol-a")).json()
    assert [d["id"] for d in listed] == [key_id]
    revived = world.client.post("/v1/me/devices", headers=world.as_("vol-a"), json=body)
    assert revived.status_code == 409 and "revoked" in revived.json()["detail"]
    # Both steps are public: the key, its volunteer's ledger account, never the phone's name.
    found = world.log.entries_by_id([f"device:{key_id}", f"device-revoked:{key_id}"])
    account = world.accounts.member(world.ids["vol-a"]).ledger_account
    public_b64 = base64.b64encode(public).decode()
    for entry_id, action in (
        (f"device:{key_id}", "register"),
        (f"device-revoked:{key_id}", "revoke"),
    ):
        entry = found[entry_id].request
        assert entry.kind == "device" and entry.postings == ()
        assert dict(entry.body) == {
            "key": key_id,
            "public_key": public_b64,
            "account": account,
            "action": action,
        }


def test_only_an_active_volunteer_registers_a_device_key(world: World) -> None:
    def register(who: str) -> int:
        public = (
            Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        )
        body = {"public_key": base64.b64encode(public).decode(), "name": "phone"}
        return world.client.post("/v1/me/devices", headers=world.as_(who), json=body).status_code

    assert register("staff-a") == 403  # device keys sign service records
    assert register("vol-b") == 201


@pytest.mark.parametrize("key", ["", "not base64!", base64.b64encode(b"short").decode()])
def test_bad_device_keys_are_refused(world: World, key: str) -> None:
    response = world.client.post(
        "/v1/me/devices", headers=world.as_("vol-a"), json={"public_key": key, "name": "phone"}
    )
    assert response.status_code == 400
    assert response.json()["field"] == "public_key"


def test_partner_keys_are_scoped_hashed_and_revocable(world: World) -> None:
    created = world.client.post(
        "/v1/partner-keys",
        headers=world.as_("b1-admin"),
        json={"name": "养老服务信息平台", "scopes": ["read_points", "receive_webhooks"]},
    )
    assert created.status_code == 201
    secret = created.json()["key"]
    assert secret.startswith("tbk_")
    listed = world.client.get("/v1/partner-keys", headers=world.as_("b1-admin")).json()
    assert all(k["key"] is None for k in listed)  # never shown again
    me = world.client.get("/v1/me", headers={"Authorization": f"Bearer {secret}"}).json()
    assert me["partner_scopes"] == ["read_points", "receive_webhooks"] and me["user"] is None
    members = world.client.get("/v1/members", headers={"Authorization": f"Bearer {secret}"})
    assert members.status_code == 403
    assert (
        world.client.post(
            "/v1/partner-keys",
            headers=world.as_("staff-a"),
            json={"name": "x", "scopes": ["read_points"]},
        ).status_code
        == 403
    )
    bad_scope = world.client.post(
        "/v1/partner-keys",
        headers=world.as_("b1-admin"),
        json={"name": "x", "scopes": ["pay_out_cash"]},
    )
    assert bad_scope.status_code == 400 and bad_scope.json()["field"] == "scopes"
    key_id = created.json()["id"]
    assert (
        world.client.post(
            f"/v1/partner-keys/{key_id}/revoke", headers=world.as_("b1-admin")
        ).status_code
        == 200
    )
    assert (
        world.client.get("/v1/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    )


def test_staff_created_with_one_time_password(world: World) -> None:
    created = world.client.post(
        f"/v1/orgs/{world.ids['org_a']}/staff",
        headers=world.as_("admin-a"),
        json={"username": "new-staff", "role": "org_staff"},
    )
    assert created.status_code == 201
    one_time = created.json()["one_time_password"]
    status, body = login(world, "new-staff", one_time)
    # No role until the one-time password is changed.
    assert status == 200 and body["roles"] == [] and body["password_change_due"] is True
    headers = {"Authorization": f"Bearer {body['token']}"}
    changed = world.client.post(
        "/v1/auth/password",
        headers=headers,
        json={"old_password": one_time, "new_password": "a much better pass"},
    )
    assert changed.status_code == 204
    assert login(world, "new-staff", "a much better pass")[0] == 200
    weak = world.client.post(
        "/v1/auth/password",
        headers=headers,
        json={"old_password": "a much better pass", "new_password": "password1"},
    )
    assert weak.status_code == 400 and weak.json()["field"] == "new_password"
    # the org admin may revoke staff of their own org, and the revoked login loses the role
    revoke = world.client.post(
        f"/v1/orgs/{world.ids['org_a']}/staff/{body['user_id']}/revoke",
        headers=world.as_("admin-a"),
    )
    assert revoke.status_code == 204
    status, answer = login(world, "new-staff", "a much better pass")
    assert (status, answer["detail"]) == (
        403,
        "this login was revoked; ask your organisation's administrator",
    )
    assert login(world, "new-staff", "a wrong password")[0] == 401  # no oracle for strangers


def test_operator_create_user_validates_role_and_org(world: World) -> None:
    from accounts.errors import InvalidInput

    with pytest.raises(InvalidInput):
        world.accounts.create_user("b1", "x-staff", Role.ORG_STAFF, None)
    with pytest.raises(InvalidInput):
        world.accounts.create_user("b1", "x-staff", Role.ORG_STAFF, world.ids["org_c"])
    with pytest.raises(InvalidInput):
        world.accounts.create_user("b1", "x-vol", Role.VOLUNTEER)


def test_successful_logins_do_not_count_towards_the_client_limit(world: World) -> None:
    service = AccountsService(
        world.accounts.store,
        world.accounts.protector,
        world.log,
        policy=SecurityPolicy(client_attempts_per_window=3),
    )
    for _ in range(6):
        assert service.login("vol-a", PASSWORD, None, "kiosk").token


def test_changing_the_password_ends_every_other_session(world: World) -> None:
    tokens = [login(world, "vol-a", PASSWORD)[1]["token"] for _ in range(3)]
    here, *elsewhere = ({"Authorization": f"Bearer {t}"} for t in tokens)
    changed = world.client.post(
        "/v1/auth/password",
        headers=here,
        json={"old_password": PASSWORD, "new_password": "a brand new passphrase"},
    )
    assert changed.status_code == 204, changed.text
    assert world.client.get("/v1/me", headers=here).status_code == 200  # this one goes on
    for headers in elsewhere:
        assert world.client.get("/v1/me", headers=headers).status_code == 401


def test_admins_disable_and_enable_logins(world: World) -> None:
    vol = {"Authorization": f"Bearer {login(world, 'vol-a', PASSWORD)[1]['token']}"}
    user = world.ids["vol-a-user"]
    # an organisation admin of another organisation, and the volunteer, cannot
    assert world.client.post(f"/v1/users/{user}/disable", headers=vol).status_code == 403
    response = world.client.post(f"/v1/users/{user}/disable", headers=world.as_("admin-a"))
    assert response.status_code == 200 and response.json()["disabled"] is True
    assert world.client.get("/v1/me", headers=vol).status_code == 401  # sessions ended
    assert login(world, "vol-a", PASSWORD)[0] == 401
    enabled = world.client.post(f"/v1/users/{user}/enable", headers=world.as_("b1-admin"))
    assert enabled.status_code == 200 and enabled.json()["disabled"] is False
    assert login(world, "vol-a", PASSWORD)[0] == 200
    staff_b = world.ids["staff-b"]  # org B's staff: not org A's admin's to disable
    assert (
        world.client.post(f"/v1/users/{staff_b}/disable", headers=world.as_("admin-a")).status_code
        == 403
    )
    admin = world.ids["b1-admin"]
    assert (
        world.client.post(f"/v1/users/{admin}/disable", headers=world.as_("b1-admin")).status_code
        == 403
    )
    other_bank = world.ids["b2-admin"]
    assert (
        world.client.post(
            f"/v1/users/{other_bank}/disable", headers=world.as_("b1-admin")
        ).status_code
        == 404
    )


def test_who_may_issue_an_enrolment_code(world: World) -> None:
    """An organisation's admin for its staff, a bank admin for anyone of the bank; plain staff,
    oneself, another bank and an organisation admin over a bank admin are refused. Each refusal
    stands next to the same call by someone allowed, succeeding."""

    def issue(who: str, target: str) -> int:
        return world.client.post(
            f"/v1/users/{world.ids[target]}/totp-reset", headers=world.as_(who)
        ).status_code

    assert issue("staff-b", "staff-a") == 403
    assert issue("admin-a", "staff-a") == 201
    assert issue("admin-a", "admin-a") == 403
    assert issue("b1-admin", "admin-a") == 201
    assert issue("admin-a", "b1-admin") == 403
    assert issue("b2-admin", "staff-a") == 404
    assert issue("b1-admin", "staff-a") == 201


def test_a_reset_removes_the_phone_and_ends_the_sessions(world: World) -> None:
    issued = world.client.post(
        f"/v1/users/{world.ids['staff-a']}/totp-reset", headers=world.as_("admin-a")
    ).json()
    secret = world.client.post(
        "/v1/me/totp",
        headers=world.as_("staff-a"),
        json={"enrolment_code": issued["enrolment_code"]},
    ).json()["secret"]
    step = int(datetime.now(UTC).timestamp() // 30)
    confirmed = world.client.post(
        "/v1/me/totp/confirm",
        headers=world.as_("staff-a"),
        json={"code": totp.code_at(secret, step)},
    )
    assert confirmed.status_code == 204
    session = login(world, "staff-a", PASSWORD)[1]["token"]
    assert world.client.get("/v1/me", headers={"Authorization": f"Bearer {session}"}).is_success
    reset = world.client.post(
        f"/v1/users/{world.ids['staff-a']}/totp-reset", headers=world.as_("admin-a")
    )
    assert reset.status_code == 201
    after = world.client.get("/v1/me", headers={"Authorization": f"Bearer {session}"})
    assert after.status_code == 401  # whoever holds the lost phone is out
    user = world.accounts.user_by_username("staff-a")
    assert user is not None and not user.totp_enabled


def test_an_enrolment_code_expires(world: World, clocked: tuple[AccountsService, Clock]) -> None:
    service, clock = clocked
    admin = service.principal_for_user(world.ids["admin-a"])
    staff = service.principal_for_user(world.ids["staff-a"])
    code, until = service.issue_enrolment_code(admin, world.ids["staff-a"])
    assert until == clock.now + SecurityPolicy().enrolment_code_ttl
    clock.advance(hours=72, seconds=1)
    with pytest.raises(EnrolmentCodeRequired):
        service.begin_totp(staff, code)
    code, _ = service.issue_enrolment_code(admin, world.ids["staff-a"])
    assert service.begin_totp(staff, code)[0]


def test_a_one_time_password_must_be_changed_first(world: World) -> None:
    created = world.client.post(
        f"/v1/orgs/{world.ids['org_a']}/staff",
        headers=world.as_("admin-a"),
        json={"username": "new-staff", "role": "org_staff"},
    )
    assert created.status_code == 201, created.text
    one_time = created.json()["one_time_password"]
    status, body = login(world, "new-staff", one_time)
    assert status == 200
    token = {"Authorization": f"Bearer {body['token']}"}
    me = world.client.get("/v1/me", headers=token)
    assert me.status_code == 200 and me.json()["password_change_due"] is True
    assert me.json()["roles"] == []
    refused = world.client.get(f"/v1/orgs/{world.ids['org_a']}/staff", headers=token)
    assert refused.status_code == 403
    assert refused.json()["type"] == "urn:timebank:problem:password-change-required"
    changed = world.client.post(
        "/v1/auth/password",
        headers=token,
        json={"old_password": one_time, "new_password": "my own new passphrase"},
    )
    assert changed.status_code == 204, changed.text
    allowed = world.client.get(f"/v1/orgs/{world.ids['org_a']}/staff", headers=token)
    assert allowed.status_code == 200, allowed.text
    # The session opened with the administrator's one-time password enrols TOTP without a code
    # (the one-time password was that proof) ...
    assert world.client.post("/v1/me/totp", headers=token).status_code == 201
    # ... a session opened with the person's own password does not.
    own = login(world, "new-staff", "my own new passphrase")[1]["token"]
    assert login(world, "new-staff", one_time)[0] == 401
    refused_enrol = world.client.post("/v1/me/totp", headers={"Authorization": f"Bearer {own}"})
    assert refused_enrol.status_code == 403


def test_a_one_time_password_expires(world: World, clocked: tuple[AccountsService, Clock]) -> None:
    service, clock = clocked
    admin = service.principal_for_user(world.ids["admin-a"])
    early = service.create_staff(admin, world.ids["org_a"], "early", "org_staff", None)
    late = service.create_staff(admin, world.ids["org_a"], "late", "org_staff", None)
    assert early.one_time_password and late.one_time_password
    assert service.login("early", early.one_time_password, None, "10.0.0.1").principal
    clock.advance(hours=72, seconds=1)
    with pytest.raises(InvalidCredentials, match="expired"):
        service.login("late", late.one_time_password, None, "10.0.0.1")
