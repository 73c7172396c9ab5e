"""The witness over HTTP: C2SP tlog-witness ``POST /add-checkpoint`` (a small Litestar app).

Status codes are the protocol's (see ``audit.witness``). Refusals are RFC 9457 problem+json,
except 409, whose body the protocol fixes: the witness's size, as ``text/x.tlog.size``.

``GET /checkpoint?origin=O`` (an extension for monitors and auditors, not part of the C2SP
protocol) returns the latest checkpoint this witness cosigned for ``O``, with its cosignature,
so that an auditor can compare what the log showed it with what the witness saw.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from litestar import Litestar, MediaType, Request, Response, get, post
from litestar.datastructures import State
from litestar.params import Parameter

from api.problems import EXCEPTION_HANDLERS, problem
from audit.witness import (
    MAX_REQUEST_BYTES,
    SIZE_CONTENT_TYPE,
    RateLimited,
    SizeConflict,
    Witness,
    WitnessError,
)
from web.statuses import status_of


def _witness(state: State) -> Witness:
    witness: Witness = state.witness
    return witness


def witness_refusal(_: Request[Any, Any, Any], exc: WitnessError) -> Response[Any]:
    if isinstance(exc, SizeConflict):
        return Response(f"{exc.size}\n", status_code=409, media_type=SIZE_CONTENT_TYPE)
    response = problem(status_of(exc), exc.slug, "Checkpoint refused", str(exc))
    if isinstance(exc, RateLimited):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


@post("/add-checkpoint", status_code=200, media_type=MediaType.TEXT)
async def add_checkpoint(request: Request[Any, Any, Any], state: State) -> str:
    """Cosign a checkpoint that is consistent with the last one cosigned for its origin."""
    body = await request.body()
    return await asyncio.to_thread(_witness(state).add_checkpoint, body)


@get("/checkpoint", media_type=MediaType.TEXT, sync_to_thread=True)
def latest_checkpoint(
    state: State, origin: Annotated[str, Parameter(min_length=1, max_length=300)]
) -> Response[Any]:
    """The latest checkpoint cosigned for ``origin`` (404 if none yet)."""
    note = _witness(state).latest(origin)
    if note is None:
        return problem(404, "not-found", "Not found", f"nothing cosigned yet for {origin!r}")
    return Response(note, media_type=MediaType.TEXT)


@get("/key", media_type=MediaType.TEXT, sync_to_thread=False)
def key(state: State) -> str:
    """The witness's cosignature verifier key (also printed by ``timebank witness keygen``)."""
    return _witness(state).verifier_key + "\n"


def create_witness_app(witness: Witness) -> Litestar:
    return Litestar(
        route_handlers=[add_checkpoint, latest_checkpoint, key],
        state=State({"witness": witness}),
        exception_handlers={**EXCEPTION_HANDLERS, WitnessError: witness_refusal},
        request_max_body_size=MAX_REQUEST_BYTES + 4096,
        openapi_config=None,
        debug=False,
    )
