"""``/v1/auth``, ``/v1/me``, ``/v1/banks``, ``/v1/orgs``, ``/v1/users``, ``/v1/partner-keys``
(members are in ``api.members_routes``). Handlers translate HTTP to service calls; every rule and
every access check lives in ``accounts.service``."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, Parameter
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_201_CREATED,
    HTTP_204_NO_CONTENT,
)

from accounts.model import Principal, User
from api.auth import accounts_service, client_address, provide_principal
from api.schemas import (
    BankOut,
    DeviceIn,
    DeviceOut,
    EnrolmentCodeOut,
    GrantOut,
    LoginIn,
    LoginOut,
    MeOut,
    OrgIn,
    OrgOut,
    PartnerKeyIn,
    PartnerKeyOut,
    PasswordChangeIn,
    StaffIn,
    StaffOut,
    TotpConfirmIn,
    TotpStartIn,
    TotpStartOut,
    device_out,
    member_out,
    org_out,
    partner_out,
    problems,
    user_out,
)

AUTH = {"principal": Provide(provide_principal)}
Id = Annotated[str, Parameter(min_length=1, max_length=64)]


def _roles(principal: NamedDependency[Principal]) -> list[GrantOut]:
    return [GrantOut(str(g.role), g.bank_id, g.org_id, g.member_id) for g in principal.grants]


class AuthController(Controller):
    path = "/v1/auth"
    tags = ["auth"]

    @post("/login", status_code=HTTP_200_OK, sync_to_thread=True, responses=problems(400, 401, 429))
    def login(self, request: Request[Any, Any, State], data: JSONBody[LoginIn]) -> LoginOut:
        """Exchange a username and password (and TOTP code, for staff who verify) for a token."""
        result = accounts_service(request.app.state).login(
            data.username, data.password, data.totp, client_address(request)
        )
        p = result.principal
        return LoginOut(
            result.token,
            result.expires_at,
            p.user_id or "",
            sorted({str(g.role) for g in p.grants}),
            p.second_factor,
            p.password_change_due,
        )

    @post(
        "/logout",
        status_code=HTTP_204_NO_CONTENT,
        sync_to_thread=True,
        dependencies=AUTH,
        responses=problems(401, 403),
    )
    def logout(self, state: State, principal: NamedDependency[Principal]) -> None:
        """Revoke the token this request carries."""
        accounts_service(state).logout(principal)

    @post(
        "/logout-all",
        status_code=HTTP_204_NO_CONTENT,
        sync_to_thread=True,
        dependencies=AUTH,
        responses=problems(401, 403),
    )
    def logout_all(self, state: State, principal: NamedDependency[Principal]) -> None:
        """Revoke every session of the caller (a lost phone)."""
        accounts_service(state).logout_everywhere(principal)

    @post(
        "/password",
        status_code=HTTP_204_NO_CONTENT,
        sync_to_thread=True,
        dependencies=AUTH,
        responses=problems(400, 401, 403),
    )
    def change_password(
        self, state: State, principal: NamedDependency[Principal], data: JSONBody[PasswordChangeIn]
    ) -> None:
        accounts_service(state).change_password(principal, data.old_password, data.new_password)


class MeController(Controller):
    path = "/v1/me"
    tags = ["me"]
    dependencies = AUTH

    @get("/", sync_to_thread=True, responses=problems(401))
    def me(self, state: State, principal: NamedDependency[Principal]) -> MeOut:
        """The caller: user, roles with their scope, own member record (unmasked)."""
        user, view = accounts_service(state).me(principal)
        return MeOut(
            user=user_out(user) if user else None,
            roles=_roles(principal),
            member=member_out(view) if view else None,
            second_factor=principal.second_factor,
            partner_key_id=principal.partner_key_id,
            partner_scopes=sorted(principal.partner_scopes) if principal.is_partner else None,
            password_change_due=principal.password_change_due,
        )

    @post(
        "/totp",
        status_code=HTTP_201_CREATED,
        sync_to_thread=True,
        responses=problems(400, 401, 403, 409),
    )
    def totp_start(
        self,
        state: State,
        principal: NamedDependency[Principal],
        data: JSONBody[TotpStartIn | None] = None,
    ) -> TotpStartOut:
        """Begin TOTP enrolment with the enrolment code an administrator issued (not needed in
        a session opened with a one-time password); scan the URI, then confirm with a code."""
        code = data.enrolment_code if data is not None else None
        secret, uri = accounts_service(state).begin_totp(principal, code)
        return TotpStartOut(secret, uri)

    @post(
        "/totp/confirm",
        status_code=HTTP_204_NO_CONTENT,
        sync_to_thread=True,
        responses=problems(400, 401, 403, 409),
    )
    def totp_confirm(
        self, state: State, principal: NamedDependency[Principal], data: JSONBody[TotpConfirmIn]
    ) -> None:
        accounts_service(state).confirm_totp(principal, data.code)

    @get("/devices", sync_to_thread=True, responses=problems(401, 403))
    def devices(self, state: State, principal: NamedDependency[Principal]) -> list[DeviceOut]:
        return [device_out(k) for k in accounts_service(state).list_devices(principal)]

    @post(
        "/devices",
        status_code=HTTP_201_CREATED,
        sync_to_thread=True,
        responses=problems(400, 401, 403, 409),
    )
    def add_device(
        self, state: State, principal: NamedDependency[Principal], data: JSONBody[DeviceIn]
    ) -> DeviceOut:
        """Register this phone's Ed25519 public key (base64) to sign service records."""
        return device_out(accounts_service(state).add_device(principal, data.public_key, data.name))

    @post(
        "/devices/{key_id:str}/revoke",
        status_code=HTTP_200_OK,
        sync_to_thread=True,
        responses=problems(400, 401, 403, 404, 409),
    )
    def revoke_device(
        self, state: State, principal: NamedDependency[Principal], key_id: Id
    ) -> DeviceOut:
        return device_out(accounts_service(state).revoke_device(principal, key_id))


class BankController(Controller):
    path = "/v1/banks"
    tags = ["banks"]
    dependencies = AUTH

    @get("/{bank_id:str}", sync_to_thread=True, responses=problems(400, 401, 403, 404))
    def bank(self, state: State, principal: NamedDependency[Principal], bank_id: Id) -> BankOut:
        bank = accounts_service(state).get_bank(principal, bank_id)
        return BankOut(bank.id, bank.name, bank.created_at)


class OrgController(Controller):
    path = "/v1/orgs"
    tags = ["organisations"]
    dependencies = AUTH

    @get("/", sync_to_thread=True, responses=problems(401, 403))
    def orgs(self, state: State, principal: NamedDependency[Principal]) -> list[OrgOut]:
        return [org_out(o) for o in accounts_service(state).list_orgs(principal)]

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        sync_to_thread=True,
        responses=problems(400, 401, 403, 409),
    )
    def create(
        self, state: State, principal: NamedDependency[Principal], data: JSONBody[OrgIn]
    ) -> OrgOut:
        """Bank admins create organisations (kind: community_centre, service_station,
        social_organisation)."""
        return org_out(
            accounts_service(state).create_org(principal, data.name, data.kind, data.phone)
        )

    @get("/{org_id:str}", sync_to_thread=True, responses=problems(400, 401, 403, 404))
    def org(self, state: State, principal: NamedDependency[Principal], org_id: Id) -> OrgOut:
        return org_out(accounts_service(state).get_org(principal, org_id))

    @get("/{org_id:str}/staff", sync_to_thread=True, responses=problems(400, 401, 403, 404))
    def staff(
        self, state: State, principal: NamedDependency[Principal], org_id: Id
    ) -> list[StaffOut]:
        return [
            StaffOut(user_out(u), str(r))
            for u, r in accounts_service(state).list_staff(principal, org_id)
        ]

    @post(
        "/{org_id:str}/staff",
        status_code=HTTP_201_CREATED,
        sync_to_thread=True,
        responses=problems(400, 401, 403, 404, 409),
    )
    def add_staff(
        self,
        state: State,
        principal: NamedDependency[Principal],
        org_id: Id,
        data: JSONBody[StaffIn],
    ) -> StaffOut:
        """Create a staff login; without a password, a one-time password is returned once."""
        new = accounts_service(state).create_staff(
            principal, org_id, data.username, data.role, data.password
        )
        return StaffOut(user_out(new.user), data.role, new.one_time_password)

    @post(
        "/{org_id:str}/staff/{user_id:str}/revoke",
        status_code=HTTP_204_NO_CONTENT,
        sync_to_thread=True,
        responses=problems(400, 401, 403, 404),
    )
    def revoke_staff(
        self, state: State, principal: NamedDependency[Principal], org_id: Id, user_id: Id
    ) -> None:
        accounts_service(state).revoke_staff(principal, org_id, user_id)


class UserStatusOut(msgspec.Struct):
    id: str
    username: str
    disabled: bool


class UserController(Controller):
    """Logins (users) as such: disable and enable, for admins."""

    path = "/v1/users"
    tags = ["accounts"]
    dependencies = AUTH

    @staticmethod
    def _out(user: User) -> UserStatusOut:
        return UserStatusOut(user.id, user.username, user.disabled)

    @post(
        "/{user_id:str}/disable",
        status_code=HTTP_200_OK,
        sync_to_thread=True,
        responses=problems(400, 401, 403, 404),
    )
    def disable(
        self, state: State, principal: NamedDependency[Principal], user_id: Id
    ) -> UserStatusOut:
        """Disable a login: it cannot log in, and its sessions end at once."""
        return self._out(accounts_service(state).set_disabled(principal, user_id, True))

    @post(
        "/{user_id:str}/enable",
        status_code=HTTP_200_OK,
        sync_to_thread=True,
        responses=problems(400, 401, 403, 404),
    )
    def enable(
        self, state: State, principal: NamedDependency[Principal], user_id: Id
    ) -> UserStatusOut:
        """Let a disabled login log in again (its old sessions stay ended)."""
        return self._out(accounts_service(state).set_disabled(principal, user_id, False))

    @post(
        "/{user_id:str}/totp-reset",
        status_code=HTTP_201_CREATED,
        sync_to_thread=True,
        responses=problems(400, 401, 403, 404),
    )
    def totp_reset(
        self, state: State, principal: NamedDependency[Principal], user_id: Id
    ) -> EnrolmentCodeOut:
        """Issue a TOTP enrolment code for a login (shown once): any second factor it had is
        removed and its sessions end; its owner enrols again with the code."""
        code, until = accounts_service(state).issue_enrolment_code(principal, user_id)
        return EnrolmentCodeOut(code, until)


class PartnerKeyController(Controller):
    path = "/v1/partner-keys"
    tags = ["partners"]
    dependencies = AUTH

    @get("/", sync_to_thread=True, responses=problems(401, 403))
    def keys(self, state: State, principal: NamedDependency[Principal]) -> list[PartnerKeyOut]:
        return [partner_out(k) for k in accounts_service(state).list_partner_keys(principal)]

    @post("/", status_code=HTTP_201_CREATED, sync_to_thread=True, responses=problems(400, 401, 403))
    def create(
        self, state: State, principal: NamedDependency[Principal], data: JSONBody[PartnerKeyIn]
    ) -> PartnerKeyOut:
        """Create a scoped key (read_points, receive_webhooks); the key is shown once."""
        key, secret = accounts_service(state).create_partner_key(principal, data.name, data.scopes)
        return partner_out(key, secret)

    @post(
        "/{key_id:str}/revoke",
        status_code=HTTP_200_OK,
        sync_to_thread=True,
        responses=problems(400, 401, 403, 404, 409),
    )
    def revoke(
        self, state: State, principal: NamedDependency[Principal], key_id: Id
    ) -> PartnerKeyOut:
        return partner_out(accounts_service(state).revoke_partner_key(principal, key_id))


ACCOUNT_CONTROLLERS = [
    AuthController,
    MeController,
    BankController,
    OrgController,
    UserController,
    PartnerKeyController,
]
