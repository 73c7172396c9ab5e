"""``/v1/log/*``: the public, read-only face of the log that auditors and witnesses use."""

from __future__ import annotations

import base64
from typing import Annotated, Any

from anyio import CapacityLimiter, to_thread
from litestar import Controller, MediaType, get
from litestar.datastructures import State
from litestar.params import Parameter
from litestar.types import Scope, Send

from api.schemas import problems
from ledger.log import Log
from web.security import security_headers

MAX_INDEX = 2**53 - 1
Index = Annotated[int, Parameter(ge=0, le=MAX_INDEX)]
Size = Annotated[int, Parameter(ge=1, le=MAX_INDEX)]
# Appends and cosignatures of this process show at once; another process's within this.
CHECKPOINT_MAX_AGE = 1.0


PROOF_THREADS = 8
CHECKPOINT_PATH = "/v1/log/checkpoint"


def _proof_threads(state: State) -> CapacityLimiter:
    """Threads of their own for consistency proofs: a peer bank asks for one while checking a
    transfer this bank delivers (federation.consistency), and this bank's request threads may
    then all be waiting on that peer; with the shared pool the peer's question would wait for
    them, and they for its answer. One limiter per app (an app serves on one event loop)."""
    limiter: CapacityLimiter | None = getattr(state, "proof_threads", None)
    if limiter is None:
        limiter = state.proof_threads = CapacityLimiter(PROOF_THREADS)
    return limiter


def _log(state: State) -> Log:
    log: Log = state.log
    return log


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class CheckpointFastPath:
    """``GET /v1/log/checkpoint`` answered before Litestar routes the request, while the
    checkpoint is in memory (``Log.cached_checkpoint``): the response the route sends, encoded
    once per checkpoint. Polled by every witness and phone, it would otherwise pay the whole
    middleware stack for a few hundred bytes that change only when the log grows.

    Only a plain request takes it (GET, no query, no cookie, no root path): a cookie may ask the
    CSRF layer for its own cookie on the response, and anything unusual is the route's to
    answer. ``tests/test_api_log.py`` proves the two responses byte for byte the same.
    """

    def __init__(self) -> None:
        self._encoded: tuple[str, list[tuple[bytes, bytes]], bytes] | None = None

    @staticmethod
    def applies(scope: Scope) -> bool:
        return (
            scope["path"] == CHECKPOINT_PATH
            and scope.get("method") == "GET"
            and not scope.get("query_string")
            and not scope.get("root_path")
            and not any(name.lower() == b"cookie" for name, _ in scope["headers"])
        )

    async def answer(self, log: Log, send: Send) -> bool:
        """Send the checkpoint if it is in memory; False (nothing sent) otherwise."""
        text = log.cached_checkpoint(CHECKPOINT_MAX_AGE)
        if text is None:
            return False
        encoded = self._encoded
        if encoded is None or encoded[0] != text:
            body = text.encode()
            headers = [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *security_headers(CHECKPOINT_PATH),
            ]
            encoded = self._encoded = (text, headers, body)
        _, headers, body = encoded
        await send({"type": "http.response.start", "status": 200, "headers": list(headers)})
        await send({"type": "http.response.body", "body": body, "more_body": False})
        return True


class LogController(Controller):
    path = "/v1/log"
    tags = ["log"]

    @get("/checkpoint", media_type=MediaType.TEXT)
    async def checkpoint(self, state: State) -> str:
        """The latest signed checkpoint (C2SP tlog-checkpoint), with any cosignatures."""
        log = _log(state)
        # Served from memory while nothing was appended: most polls cost no database read.
        cached = log.cached_checkpoint(CHECKPOINT_MAX_AGE)
        if cached is not None:
            return cached
        return await to_thread.run_sync(log.checkpoint)

    @get("/key", media_type=MediaType.TEXT, sync_to_thread=False)
    def key(self, state: State) -> str:
        """The log's verifier key: ``<name>+<hex key id>+<base64(0x01 ‖ Ed25519 public key)>``."""
        return _log(state).verifier_key + "\n"

    @get("/leaves", sync_to_thread=True, responses=problems(400))
    def leaves(self, state: State, start: Index, end: Size) -> dict[str, list[dict[str, Any]]]:
        """Leaves ``[start, end)`` as base64 canonical JSON; a page may be shorter than asked."""
        leaves = _log(state).leaves(start, end)
        return {"leaves": [{"index": leaf.index, "data": _b64(leaf.data)} for leaf in leaves]}

    @get("/proof/inclusion", sync_to_thread=True, responses=problems(400))
    def inclusion(self, state: State, index: Index, tree_size: Size) -> dict[str, Any]:
        """RFC 6962 audit path for leaf ``index`` in the tree of ``tree_size`` leaves."""
        hashes = _log(state).inclusion_proof(index, tree_size)
        return {"index": index, "tree_size": tree_size, "hashes": [_b64(h) for h in hashes]}

    @get("/proof/consistency", responses=problems(400))
    async def consistency(self, state: State, first: Size, second: Size) -> dict[str, Any]:
        """RFC 6962 consistency proof between tree sizes ``first`` ≤ ``second``."""
        hashes = await to_thread.run_sync(
            _log(state).consistency_proof, first, second, limiter=_proof_threads(state)
        )
        return {"first": first, "second": second, "hashes": [_b64(h) for h in hashes]}

    @get("/receipt", media_type=MediaType.TEXT, sync_to_thread=True, responses=problems(400))
    def receipt(self, state: State, index: Index) -> str:
        """A C2SP tlog-proof receipt for entry ``index`` in the checkpoint served now.

        The ``extra`` line carries the entry's leaf bytes (base64), so the receipt can be
        checked offline on its own: ``timebank audit receipt FILE --key VKEY``.
        """
        return _log(state).receipt(index)
