"""Members over HTTP: self-registration, members and their personal data, flags, relatives
and proxies. Every rule is in ``accounts.service``."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import JSONBody, Parameter
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_201_CREATED,
    HTTP_202_ACCEPTED,
    HTTP_204_NO_CONTENT,
)

from accounts.model import Principal
from accounts.service import PersonalInput
from api.accounts_routes import AUTH, Id
from api.auth import accounts_service
from api.schemas import (
    AccessRecordOut,
    DecisionIn,
    FlagIn,
    FlagOut,
    MemberIn,
    MemberOut,
    NewMemberOut,
    PersonalIn,
    ProxyIn,
    ProxyOut,
    RegisterIn,
    RegistrationOut,
    RelativeIn,
    RelativeOut,
    flag_out,
    member_out,
    problems,
    relative_out,
    user_out,
)


def _personal(data: JSONBody[PersonalIn]) -> PersonalInput:
    return PersonalInput(
        name=data.name,
        phone=data.phone,
        id_number=data.id_number,
        address=data.address,
        birth_date=data.birth_date,
        health_notes=data.health_notes,
    )


class RegistrationController(Controller):
    path = "/v1/register"
    tags = ["members"]

    @post("/", status_code=HTTP_202_ACCEPTED, sync_to_thread=True, responses=problems(400, 404))
    def register(self, state: State, data: JSONBody[RegisterIn]) -> RegistrationOut:
        """A volunteer signs up; the chosen organisation approves them (and calls them) before
        they log in. The answer is the same whether the username was free or taken."""
        accounts_service(state).self_register(
            data.bank_id, data.org_id, data.username, data.password, _personal(data.personal)
        )
        return RegistrationOut(
            "received",
            "the organisation checks every new volunteer and calls the phone number given; "
            "log in with this username and password once it has approved you",
        )


class MemberController(Controller):
    path = "/v1/members"
    tags = ["members"]
    dependencies = AUTH

    @get("/", sync_to_thread=True, responses=problems(400, 401, 403, 429))
    def members(
        self,
        state: State,
        principal: NamedDependency[Principal],
        search: Annotated[str | None, Parameter(max_length=40)] = None,
        limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
        offset: Annotated[int, Parameter(ge=0, le=10**9)] = 0,
    ) -> list[MemberOut]:
        """Members in the caller's scope, masked; ``search`` matches a phone or ID number, a
        limited number of times per login (429 with Retry-After past it)."""
        views = accounts_service(state).list_members(principal, search, limit, offset)
        return [member_out(v) for v in views]

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        sync_to_thread=True,
        responses=problems(400, 401, 403, 404, 409),
    )
    def register(
        self, state: State, principal: NamedDependency[Principal], data: JSONBody[MemberIn]
    ) -> NewMemberOut:
        """Staff register a volunteer or elder (assisted, approved at once); a family member
        registers an elder (pending) and becomes their proxy."""
        service = accounts_service(state)
        new = service.register_member(
            principal,
            data.org_id,
            _personal(data.personal),
            data.is_volunteer,
            data.is_elder,
            data.username,
            data.password,
        )
        # A family member just became the elder's proxy: read with their refreshed grants.
        reader = service.principal_for_user(principal.user_id) if principal.user_id else principal
        view = service.get_member(reader, new.member.id)
        return NewMemberOut(member_out(view), user_out(new.user) if new.user else None)

    @get("/{member_id:str}", sync_to_thread=True, responses=problems(400, 401, 403, 404))
    def member(
        self,
        state: State,
        principal: NamedDependency[Principal],
        member_id: Id,
        reveal_reason: Annotated[str | None, Parameter(max_length=500)] = None,
    ) -> MemberOut:
        """One member, masked; staff of their organisation and bank admins may pass
        ``reveal_reason`` to see full personal data — the read is recorded."""
        return member_out(accounts_service(state).get_member(principal, member_id, reveal_reason))

    @get(
        "/{member_id:str}/access-records",
        sync_to_thread=True,
        responses=problems(400, 401, 403, 404),
    )
    def access_records(
        self, state: State, principal: NamedDependency[Principal], member_id: Id
    ) -> list[AccessRecordOut]:
        """Who read this member's full personal data, when and why."""
        records = accounts_service(state).access_records(principal, member_id)
        return [AccessRecordOut(**r) for r in records]

    @post(
        "/{member_id:str}/approve",
        status_code=HTTP_200_OK,
        sync_to_thread=True,
        responses=problems(400, 401, 403, 404, 409),
    )
    def approve(
        self, state: State, principal: NamedDependency[Principal], member_id: Id
    ) -> MemberOut:
        service = accounts_service(state)
        service.decide_registration(principal, member_id, True, None)
        return member_out(service.get_member(principal, member_id))

    @post(
        "/{member_id:str}/reject",
        status_code=HTTP_200_OK,
        sync_to_thread=True,
        responses=problems(400, 401, 403, 404, 409),
    )
    def reject(
        self,
        state: State,
        principal: NamedDependency[Principal],
        member_id: Id,
        data: JSONBody[DecisionIn],
    ) -> MemberOut:
        service = accounts_service(state)
        service.decide_registration(principal, member_id, False, data.reason)
        return member_out(service.get_member(principal, member_id))

    @post(
        "/{member_id:str}/flags",
        status_code=HTTP_201_CREATED,
        sync_to_thread=True,
        responses=problems(400, 401, 403, 404, 409),
    )
    def set_flag(
        self,
        state: State,
        principal: NamedDependency[Principal],
        member_id: Id,
        data: JSONBody[FlagIn],
    ) -> FlagOut:
        """Flag a priority elder (living_alone, disabled, advanced_age, low_income, empty_nest)."""
        return flag_out(
            accounts_service(state).set_flag(principal, member_id, data.flag, data.note)
        )

    @post(
        "/{member_id:str}/flags/{flag_id:str}/clear",
        status_code=HTTP_200_OK,
        sync_to_thread=True,
        responses=problems(400, 401, 403, 404, 409),
    )
    def clear_flag(
        self, state: State, principal: NamedDependency[Principal], member_id: Id, flag_id: Id
    ) -> FlagOut:
        return flag_out(accounts_service(state).clear_flag(principal, member_id, flag_id))

    @get(
        "/{member_id:str}/relatives",
        sync_to_thread=True,
        responses=problems(400, 401, 403, 404),
    )
    def relatives(
        self, state: State, principal: NamedDependency[Principal], member_id: Id
    ) -> list[RelativeOut]:
        return [
            relative_out(r) for r in accounts_service(state).list_relatives(principal, member_id)
        ]

    @post(
        "/{member_id:str}/relatives",
        status_code=HTTP_201_CREATED,
        sync_to_thread=True,
        responses=problems(400, 401, 403, 404, 409),
    )
    def declare_relative(
        self,
        state: State,
        principal: NamedDependency[Principal],
        member_id: Id,
        data: JSONBody[RelativeIn],
    ) -> RelativeOut:
        """Declare a direct relative; staff confirm it before gifts are allowed."""
        return relative_out(
            accounts_service(state).declare_relative(
                principal, member_id, data.relative_id, data.relation
            )
        )

    @get("/{member_id:str}/proxies", sync_to_thread=True, responses=problems(400, 401, 403, 404))
    def proxies(
        self, state: State, principal: NamedDependency[Principal], member_id: Id
    ) -> list[ProxyOut]:
        """The family members acting for this elder now, oldest grant first (the elder and
        her organisation's staff)."""
        return [
            ProxyOut(p.username, p.member_id, p.granted_by, p.granted_at)
            for p in accounts_service(state).list_proxies(principal, member_id)
        ]

    @post(
        "/{member_id:str}/proxies",
        status_code=HTTP_204_NO_CONTENT,
        sync_to_thread=True,
        responses=problems(400, 401, 403, 404),
    )
    def grant_proxy(
        self,
        state: State,
        principal: NamedDependency[Principal],
        member_id: Id,
        data: JSONBody[ProxyIn],
    ) -> None:
        """Staff let a family member's login act for this elder (an active member's)."""
        accounts_service(state).grant_proxy(principal, member_id, data.username)

    @post(
        "/{member_id:str}/proxies/revoke",
        status_code=HTTP_204_NO_CONTENT,
        sync_to_thread=True,
        responses=problems(400, 401, 403, 404),
    )
    def revoke_proxy(
        self,
        state: State,
        principal: NamedDependency[Principal],
        member_id: Id,
        data: JSONBody[ProxyIn],
    ) -> None:
        """The elder or their organisation's staff end a family member's proxy."""
        accounts_service(state).revoke_proxy(principal, member_id, data.username)


class RelativeController(Controller):
    path = "/v1/relatives"
    tags = ["members"]
    dependencies = AUTH

    @post(
        "/{link_id:str}/confirm",
        status_code=HTTP_200_OK,
        sync_to_thread=True,
        responses=problems(400, 401, 403, 404, 409),
    )
    def confirm(
        self, state: State, principal: NamedDependency[Principal], link_id: Id
    ) -> RelativeOut:
        return relative_out(accounts_service(state).decide_relative(principal, link_id, True))

    @post(
        "/{link_id:str}/reject",
        status_code=HTTP_200_OK,
        sync_to_thread=True,
        responses=problems(400, 401, 403, 404, 409),
    )
    def reject(
        self, state: State, principal: NamedDependency[Principal], link_id: Id
    ) -> RelativeOut:
        return relative_out(accounts_service(state).decide_relative(principal, link_id, False))


MEMBER_CONTROLLERS = [RegistrationController, MemberController, RelativeController]
