"""``GET /v1/audit/events``: the audit trail, for auditors."""

from __future__ import annotations

import base64
from typing import Annotated

import msgspec
from litestar import Controller, get
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import Parameter

from accounts.errors import Forbidden, InvalidInput
from accounts.model import Principal, Role
from api.accounts_routes import AUTH
from api.schemas import problems
from audit.trail import AuditEvent, AuditTrail, time_bound


class AuditEventOut(msgspec.Struct):
    seq: int
    time: str
    bank: str | None
    actor: str
    role: str
    on_behalf: str | None
    action: str
    objects: list[str]
    client: str
    device_key: str | None
    outcome: str
    status: int
    prev: str
    hash: str


def event_out(e: AuditEvent) -> AuditEventOut:
    j = e.to_json()
    return AuditEventOut(**j, hash=base64.b64encode(e.hash()).decode())


Text = Annotated[str | None, Parameter(max_length=200)]


class AuditController(Controller):
    path = "/v1/audit"
    tags = ["audit"]
    dependencies = AUTH

    @get("/events", sync_to_thread=True, responses=problems(400, 401, 403))
    def events(
        self,
        state: State,
        principal: NamedDependency[Principal],
        after_seq: Annotated[int | None, Parameter(ge=-1, le=2**53 - 1)] = None,
        since: Text = None,
        until: Text = None,
        actor: Text = None,
        action: Text = None,
        object_id: Text = None,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
    ) -> list[AuditEventOut]:
        """Events of the caller's bank in chain order; page with ``after_seq`` (the last seq
        seen). Filters: time range (RFC 3339 UTC), actor id, action prefix, object id."""
        if not principal.has(Role.AUDITOR):
            raise Forbidden("the audit trail is for auditors")
        bounds: dict[str, str | None] = {}
        for name, given in (("since", since), ("until", until)):
            bounds[name] = time_bound(given) if given else None  # empty: no bound
            if given and bounds[name] is None:
                raise InvalidInput(
                    "%(field)s is a day (YYYY-MM-DD) or a UTC time (YYYY-MM-DDTHH:MM:SSZ)",
                    field=name,
                )
        trail: AuditTrail = state.audit
        found = trail.events(
            bank_id=principal.bank_id,
            after_seq=after_seq,
            since=bounds["since"],
            until=bounds["until"],
            actor=actor,
            action=action,
            object_id=object_id,
            limit=limit,
        )
        return [event_out(e) for e in found]
