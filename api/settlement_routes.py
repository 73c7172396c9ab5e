"""``POST /v1/federation/settlements``: a peer bank's proposal of a month's settlement, signed
(RFC 9421) by its request key; answered with our signature of the same document and the
tlog-proof of our ``settlement`` entry (docs/federation.md#settlement)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from litestar import Controller, Request, Response, post
from litestar.datastructures import State

from api.problems import problem
from api.schemas import PEER_SIGNED, problems
from api.transfer_routes import signing_peer
from federation.settlement import PATH, Settling


class SettlementController(Controller):
    path = PATH
    tags = ["federation"]

    @post("/", status_code=200, responses=problems(400, 401, 409, 422, 503), opt=PEER_SIGNED)
    async def countersign(self, request: Request[Any, Any, State], state: State) -> Response[Any]:
        """A peer's settlement document for a month with its signature; answered with ours
        and the tlog-proof of our entry once our own recomputation gives the same figures
        (else 422 naming the figure; 409 if another document of that month is signed)."""
        signed = await signing_peer(request, state)
        if isinstance(signed, Response):
            return signed
        peer, body = signed
        try:
            data = json.loads(body)
        except ValueError as exc:
            return problem(400, "invalid-parameter", "Invalid parameter", str(exc), "body")
        if not isinstance(data, dict) or set(data) != {"document", "signature"}:
            return problem(
                400,
                "invalid-parameter",
                "Invalid parameter",
                "the body is {document, signature}",
                "body",
            )
        settling: Settling = state.settling
        answer = await asyncio.to_thread(
            settling.countersign, peer, data["document"], data["signature"]
        )
        return Response(json.dumps(answer), media_type="application/json")


SETTLEMENT_CONTROLLERS = [SettlementController]
