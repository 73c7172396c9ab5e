"""Transfers between district banks over HTTP (docs/federation.md#transfers).

``POST /v1/peer-transfers``: a member (or their family proxy) of this bank sends minutes to a
member of a peer bank; requires Idempotency-Key, and the same key finishes the same transfer.
``POST /v1/federation/transfers``: a peer delivers its ``transfer_out`` (signed, RFC 9421).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, post
from litestar.datastructures import State
from litestar.params import JSONBody

from api.accounts_routes import AUTH
from api.care_routes import P, entry_key
from api.problems import problem
from api.schemas import PEER_SIGNED, Input, problems
from federation.identity import Sender
from federation.peers import Peer, Peers
from federation.signing import SignatureError, key_id, verify_request
from federation.transfers import PATH, Outcome, PeerUnavailable, Receiving, Sending
from ledger.note import Verifier

Minutes = Annotated[int, msgspec.Meta(ge=1, le=10**9)]
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
PeerName = Annotated[str, msgspec.Meta(min_length=2, max_length=32)]


class PeerTransferIn(Input):
    from_member_id: Id
    peer: PeerName
    to_member_id: Id  # the member's id in the peer bank, as that bank shows it to them
    minutes: Minutes


class PeerTransferOut(msgspec.Struct, kw_only=True):
    transfer: str
    status: str  # settled or void (a pending transfer answers 503: retry with the same key)
    minutes: int
    peer: str
    out_seq: int
    closed_seq: int | None
    peer_index: int | None
    reason: str | None


class DeliveryIn(Input):
    proof: Annotated[str, msgspec.Meta(min_length=1, max_length=200_000)]
    to_member_id: Id
    # who sends: commitments to the sender and their confirmed relatives (federation.identity)
    sender: dict[str, Any]


class DeliveryOut(msgspec.Struct, kw_only=True):
    proof: str  # our tlog-proof of the transfer_in


def _request_key(peers: Peers) -> Callable[[str], Verifier | None]:
    def find(wanted: str) -> Verifier | None:
        peer = peers.by_request_key_id(wanted)
        return None if peer is None else peer.request_key

    return find


async def signing_peer(
    request: Request[Any, Any, State], state: State
) -> tuple[Peer, bytes] | Response[Any]:
    """The registered peer whose request key signed this request (RFC 9421) and the body it
    signed; a 401 problem for anything else. Every route a peer bank calls starts here."""
    body = await request.body()
    peers: Peers = state.peers
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        verifier = verify_request(headers, "POST", request.url.path, body, _request_key(peers))
    except SignatureError as exc:
        return problem(401, "bad-signature", "Not signed by a peer", str(exc))
    peer = peers.by_request_key_id(key_id(verifier))
    if peer is None:  # removed between the two look-ups
        return problem(401, "bad-signature", "Not signed by a peer", "no such peer")
    return peer, body


def _out(outcome: Outcome) -> PeerTransferOut:
    return PeerTransferOut(
        transfer=outcome.transfer,
        status=outcome.status,
        minutes=outcome.minutes,
        peer=outcome.peer,
        out_seq=outcome.out_seq,
        closed_seq=outcome.closed_seq,
        peer_index=outcome.peer_index,
        reason=outcome.reason,
    )


class PeerTransferController(Controller):
    path = "/v1"
    tags = ["federation"]
    dependencies = AUTH

    @post(
        "/peer-transfers",
        status_code=201,
        sync_to_thread=True,
        responses=problems(400, 401, 403, 404, 409, 422, 428, 503),
    )
    def send(
        self, request: Request[Any, Any, State], principal: P, data: JSONBody[PeerTransferIn]
    ) -> PeerTransferOut:
        """Send minutes to a member of a peer bank (通存通兑): held, delivered with a
        tlog-proof, settled on the peer's proof or voided (minutes back) on its refusal.
        503 while the peer cannot be reached: the minutes stay held; retry with the same key."""
        sending: Sending = request.app.state.transfers_sending
        outcome = sending.send(
            principal,
            data.from_member_id,
            data.peer,
            data.to_member_id,
            data.minutes,
            entry_key(request),
        )
        if outcome.status == "pending":
            raise PeerUnavailable(
                f"transfer {outcome.transfer} is held and pending: {outcome.reason}",
                field="peer",
            )
        return _out(outcome)


class PeerDeliveryController(Controller):
    path = PATH
    tags = ["federation"]

    @post("/", status_code=200, responses=problems(400, 401, 422, 503), opt=PEER_SIGNED)
    async def deliver(self, request: Request[Any, Any, State], state: State) -> Response[Any]:
        """A peer's ``transfer_out`` with its tlog-proof and the receiving member's id here;
        answered with our tlog-proof of the ``transfer_in`` (the same one on every retry).
        Signed by the peer's request key (RFC 9421), else 401."""
        signed = await signing_peer(request, state)
        if isinstance(signed, Response):
            return signed
        peer, body = signed
        try:
            data = msgspec.json.decode(body, type=DeliveryIn)
        except msgspec.ValidationError as exc:
            return problem(400, "invalid-parameter", "Invalid parameter", str(exc), "body")
        except msgspec.DecodeError as exc:
            return problem(400, "invalid-parameter", "Invalid parameter", str(exc), "body")
        try:
            sender = Sender.from_json(data.sender)
        except ValueError as exc:
            return problem(400, "invalid-parameter", "Invalid parameter", str(exc), "sender")
        receiving: Receiving = state.transfers_receiving
        receipt = await asyncio.to_thread(
            receiving.receive, peer, data.proof, data.to_member_id, sender
        )
        return Response(json.dumps({"proof": receipt}), media_type="application/json")


TRANSFER_CONTROLLERS = [PeerTransferController, PeerDeliveryController]
