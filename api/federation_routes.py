"""``/v1/federation/*``: what a peer bank needs from this one (docs/federation.md)."""

from __future__ import annotations

from litestar import Controller, MediaType, get
from litestar.datastructures import State


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


FEDERATION_CONTROLLERS = [FederationController]
