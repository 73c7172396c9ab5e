"""Forms that act once however often they are posted (a double tap, a page sent again after a
lost answer): the page puts a one-time key in the form when it renders, and the post claims it
in the API's idempotency store (``idempotency/store.py``) as if it were an
``Idempotency-Key`` sent by the same caller to the page's path. The first post runs; a repeat
gets the first post's redirect without running again."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from litestar import Request, Response
from litestar.datastructures import State
from litestar.response import Redirect

from accounts.errors import Conflict, InvalidInput
from accounts.model import Principal
from idempotency.store import IdempotencyStore, StoredResponse, key_id, request_fingerprint
from web.i18n import N_
from web.session import accounts_of

ONCE_FIELD = "once"
CSRF_FIELD = "_csrf_token"  # differs between two tabs of one form; not part of what is asked


def new_once_key() -> str:
    """The key a form carries (``<input type=hidden name=once>``), made as the page renders."""
    return secrets.token_hex(16)


def once(
    request: Request[Any, Any, State],
    principal: Principal,
    data: dict[str, str],
    action: Callable[[], Response[Any]],
    wait_seconds: float = 0.0,
) -> Response[Any]:
    """Run ``action`` for the first post of the form's key; answer a repeat with the first
    post's redirect. A refusal (anything but a redirect) keeps nothing, so the corrected form
    can be sent again. Raises ``InvalidInput`` for a missing key and ``Conflict`` while the
    first post is still running (after waiting up to ``wait_seconds`` for it to finish, so a
    double tap gets the first post's answer) or when the key comes back with different
    answers."""
    key = data.get(ONCE_FIELD, "")
    if not key.isalnum() or len(key) > 64:
        raise InvalidInput(N_("the form expired; start again"), field=ONCE_FIELD)
    accounts = accounts_of(request)
    store = IdempotencyStore(accounts.store.database, accounts.protector, accounts.clock())
    path = request.url.path
    row_id = key_id(f"user:{principal.user_id}", "POST", path, key)
    asked = urlencode(sorted((k, v) for k, v in data.items() if k != CSRF_FIELD))
    fingerprint = request_fingerprint(accounts.protector, "POST", path, b"", asked.encode())
    claim = store.claim(row_id, fingerprint)
    deadline = time.monotonic() + wait_seconds
    while claim.outcome == "in_progress" and time.monotonic() < deadline:
        time.sleep(0.1)
        claim = store.claim(row_id, fingerprint)
    if claim.outcome == "replay":
        assert claim.stored is not None
        location = dict(claim.stored.headers)[b"location"].decode("latin-1")
        return Redirect(location, status_code=303)
    if claim.outcome == "in_progress":
        raise Conflict(N_("this was sent a moment ago and is being done"), field=ONCE_FIELD)
    if claim.outcome == "reused":
        raise Conflict(N_("the form expired; start again"), field=ONCE_FIELD)
    try:
        response = action()
    except BaseException:
        store.release(row_id, claim.lease)
        raise
    if isinstance(response, Redirect) and response.status_code == 303:
        stored = StoredResponse(303, [(b"location", response.url.encode())], b"")
        store.complete(row_id, claim.lease, stored)
    else:
        store.release(row_id, claim.lease)
    return response
