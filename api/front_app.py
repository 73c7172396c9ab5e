"""The Litestar app with two reads answered from memory in front of it: the public checkpoint
(``api.log_routes.CheckpointFastPath``) and a bearer balance read
(``api.ledger_routes.BalanceFastPath``). Each answers only a plain request whose whole 200 is
already in memory and sends nothing otherwise; every other request takes Litestar's path."""

from __future__ import annotations

import re
from typing import Any, cast

from litestar import Litestar
from litestar.enums import ScopeType
from litestar.types import (
    HTTPScope,
    LifeSpanReceive,
    LifeSpanScope,
    LifeSpanSend,
    Receive,
    Scope,
    Send,
)

from api.ledger_routes import BalanceFastPath
from api.log_routes import CheckpointFastPath
from ledger.log import Log

# A subset of what Litestar's router accepts in Host (it answers 400 to the rest).
_PLAIN_HOST = re.compile(rb"[0-9A-Za-z.:\[\]-]*")


def _plain_host(scope: HTTPScope) -> bool:
    """Whether the first ``host`` header, which Litestar checks, is one it surely accepts."""
    host = next((value for name, value in scope["headers"] if name == b"host"), b"")
    return _PLAIN_HOST.fullmatch(host) is not None


class TimebankApp(Litestar):
    """The Litestar app, with the public checkpoint and a phone's own balance answered from
    memory before routing (``api.log_routes.CheckpointFastPath``,
    ``api.ledger_routes.BalanceFastPath``); every other request takes Litestar's path."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.checkpoint_fast_path = CheckpointFastPath()
        self.balance_fast_path = BalanceFastPath()

    async def __call__(
        self,
        scope: Scope | LifeSpanScope,
        receive: Receive | LifeSpanReceive,
        send: Send | LifeSpanSend,
    ) -> None:
        if scope["type"] == ScopeType.HTTP and await self._answered(
            cast("HTTPScope", scope), cast("Send", send)
        ):
            return
        await super().__call__(scope, receive, send)

    async def _answered(self, scope: HTTPScope, send: Send) -> bool:
        """Whether a fast path sent the whole response (nothing is sent when it does not)."""
        # A Host that Litestar's router refuses (400) is the router's to answer.
        if CheckpointFastPath.applies(scope):
            log = self.state.get("log")
            return (
                _plain_host(scope)
                and isinstance(log, Log)
                and await self.checkpoint_fast_path.answer(log, send)
            )
        member_id = BalanceFastPath.member_id(scope)
        return (
            member_id is not None
            and _plain_host(scope)
            and await self.balance_fast_path.answer(scope, member_id, self.state, send)
        )
