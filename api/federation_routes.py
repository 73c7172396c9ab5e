"""``/v1/federation/*``: what a peer bank needs from this one (docs/federation.md).

``/v1/federation/witness/*`` is this bank's witness for its peers' logs: C2SP tlog-witness
``add-checkpoint`` with the same handler and statuses as the standalone witness
(``api.witness_app``), accepting only registered peers' origins (``federation.witnessing``).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from litestar import Controller, MediaType, Request, Response, get, post
from litestar.datastructures import State
from litestar.openapi import ResponseSpec
from litestar.params import Parameter

from api.problems import problem
from api.schemas import problems
from api.witness_app import witness_refusal
from audit.witness import SIZE_CONTENT_TYPE, Witness, WitnessError

ADD_CHECKPOINT_RESPONSES = {
    **problems(400, 403, 404, 422, 429),
    409: ResponseSpec(
        str,
        description="Not the size this bank last cosigned for the log, or a different root "
        "for that size (a split view); the body is that size",
        media_type=SIZE_CONTENT_TYPE,
    ),
}


def _witness(state: State) -> Witness:
    witness: Witness = state.peer_witness
    return witness


class FederationController(Controller):
    path = "/v1/federation"
    tags = ["federation"]

    @get("/key", media_type=MediaType.TEXT, sync_to_thread=False)
    def key(self, state: State) -> str:
        """This bank's request key (``<origin>/peers+<hex id>+<base64 key>``): the key its
        peers check its signed requests with (RFC 9421, Ed25519; ``federation.signing``).
        Public, like the log's key; give it to a peer's operator for ``timebank peers add``."""
        peer_key: str = state.peer_key
        return peer_key + "\n"


class PeerWitnessController(Controller):
    path = "/v1/federation/witness"
    tags = ["federation"]
    exception_handlers = {WitnessError: witness_refusal}

    @get("/key", media_type=MediaType.TEXT, sync_to_thread=False)
    def key(self, state: State) -> str:
        """This bank's witness key (``<origin>/witness+<hex id>+<base64 0x04 key>``): peers
        check its cosignatures of their checkpoints with it (``timebank peers add
        --witness-key``)."""
        return _witness(state).verifier_key + "\n"

    @post(
        "/add-checkpoint",
        status_code=200,
        media_type=MediaType.TEXT,
        responses=ADD_CHECKPOINT_RESPONSES,
    )
    async def add_checkpoint(self, request: Request[Any, Any, Any], state: State) -> str:
        """Cosign a peer's checkpoint consistent with the last one cosigned for its log:
        tlog-witness ``add-checkpoint`` (400, 403, 404 not a peer, 409, 422, 429)."""
        body = await request.body()
        return await asyncio.to_thread(_witness(state).add_checkpoint, body)

    @get(
        "/checkpoint",
        media_type=MediaType.TEXT,
        sync_to_thread=True,
        responses=problems(400, 404),
    )
    def latest(
        self, state: State, origin: Annotated[str, Parameter(min_length=1, max_length=300)]
    ) -> Response[Any]:
        """The latest checkpoint this bank cosigned for the peer log ``origin``."""
        note = _witness(state).latest(origin)
        if note is None:
            return problem(404, "not-found", "Not found", f"nothing cosigned yet for {origin!r}")
        return Response(note, media_type=MediaType.TEXT)


FEDERATION_CONTROLLERS = [FederationController, PeerWitnessController]
