"""Signed requests to a peer (RFC 9421, ``federation.signing``) over ``urllib``: what
``federation.transfers.Sending`` posts, and the JSON the peer answers with."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request

from federation.peers import Peer
from federation.signing import sign_request
from federation.transfers import Post
from ledger.note import Signer

TIMEOUT = 10.0


def signed_poster(signer: Signer, timeout: float = TIMEOUT) -> Post:
    """A ``Post`` for ``Sending``: POST ``body`` to ``peer.url + path`` signed with ``signer``;
    (status, JSON object answered). Network failures raise OSError (the transfer stays
    pending), also a peer that dies in the middle of its answer (``http.client`` raises
    ``RemoteDisconnected``, ``IncompleteRead``…); an answer that is not a JSON object reads as
    ``{}``."""

    def post(peer: Peer, path: str, body: bytes) -> tuple[int, dict[str, object]]:
        headers = {"Content-Type": "application/json", **sign_request(signer, "POST", path, body)}
        request = urllib.request.Request(  # noqa: S310 - peers' URLs are http(s) (check_url)
            peer.url + path, data=body, headers=headers, method="POST"
        )
        try:
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                    return int(response.status), _json(response.read())
            except urllib.error.HTTPError as exc:
                with exc:
                    return int(exc.code), _json(exc.read())
        except http.client.HTTPException as exc:  # cut off mid-answer: as if it never came
            raise OSError(f"{type(exc).__name__}: {exc}") from exc

    return post


def _json(data: bytes) -> dict[str, object]:
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
