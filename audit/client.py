"""The auditor's HTTP client for a Timebank log's public API: key, checkpoints, proofs, leaves
(fetched in parallel pages) and, with an auditor's token, the audit trail."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from audit.report import AuditError

PAGE = 1000  # leaves asked for per request (the server may answer with fewer)


EVENTS_PAGE = 1000  # audit events asked for per request (the most the server gives)


class LogClient:
    """The log's public read API (``/v1/log/*``) over urllib."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise AuditError(f"--url must be an http(s) URL, not {url!r}")
        self.url = url.rstrip("/")
        self.timeout = timeout

    def get(self, path: str, **params: int | str) -> bytes:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        return fetch(f"{self.url}{path}{query}", self.timeout)

    def key(self) -> str:
        return self.get("/v1/log/key").decode("utf-8", "replace").strip()

    def checkpoint(self) -> str:
        return self.get("/v1/log/checkpoint").decode("utf-8", "replace")

    def consistency(self, first: int, second: int) -> list[bytes]:
        body = _json(self.get("/v1/log/proof/consistency", first=first, second=second))
        return _hashes(body)

    def inclusion(self, index: int, size: int) -> list[bytes]:
        body = _json(self.get("/v1/log/proof/inclusion", index=index, tree_size=size))
        return _hashes(body)

    def leaves(self, start: int, end: int) -> list[bytes]:
        """Leaves from ``start`` (at least one, at most ``end - start``), checked for shape."""
        body = _json(self.get("/v1/log/leaves", start=start, end=end))
        items = body.get("leaves") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items or len(items) > end - start:
            raise AuditError(f"log answered leaves [{start}, {end}) with a malformed page")
        out = []
        for offset, item in enumerate(items):
            if not isinstance(item, dict) or item.get("index") != start + offset:
                raise AuditError(f"log answered leaves from {start} out of order")
            try:
                out.append(base64.b64decode(str(item.get("data")), validate=True))
            except (binascii.Error, ValueError) as exc:
                raise AuditError(f"leaf {start + offset} is not base64") from exc
        return out

    def audit_events(self, token: str) -> Iterator[dict[str, Any]]:
        """Every audit event ``token`` (an auditor's) may read, in seq order, as served:
        ``/v1/audit/events`` paged with ``after_seq``."""
        headers = {"Authorization": f"Bearer {token}"}
        after = -1
        while True:
            query = urllib.parse.urlencode({"after_seq": after, "limit": EVENTS_PAGE})
            page = _json(fetch(f"{self.url}/v1/audit/events?{query}", self.timeout, headers))
            if not isinstance(page, list) or len(page) > EVENTS_PAGE:
                raise AuditError("the log answered /v1/audit/events with a malformed page")
            for item in page:
                seq = item.get("seq") if isinstance(item, dict) else None
                if not isinstance(seq, int) or isinstance(seq, bool) or seq <= after:
                    raise AuditError(
                        f"the log answered audit events after seq {after} out of order"
                    )
                after = seq
                yield item
            if len(page) < EVENTS_PAGE:
                return

    def iter_leaves(self, start: int, end: int, workers: int = 4) -> Iterator[tuple[int, bytes]]:
        """Leaves ``[start, end)`` in order, fetching a few pages ahead in parallel."""
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="audit-fetch") as pool:
            pending: list[tuple[int, int, Future[list[bytes]]]] = []
            next_start = start

            def fill() -> None:
                nonlocal next_start
                while next_start < end and len(pending) < workers * 2:
                    stop = min(end, next_start + PAGE)
                    pending.append((next_start, stop, pool.submit(self.leaves, next_start, stop)))
                    next_start = stop

            fill()
            while pending:
                page_start, page_end, future = pending.pop(0)
                got = future.result()
                index = page_start
                for leaf in got:
                    yield index, leaf
                    index += 1
                while index < page_end:  # a short page: fetch the rest of it here
                    for leaf in self.leaves(index, page_end):
                        yield index, leaf
                        index += 1
                fill()


def fetch(url: str, timeout: float, headers: Mapping[str, str] | None = None) -> bytes:
    request = urllib.request.Request(  # noqa: S310 - http(s) only (LogClient)
        url, headers={"User-Agent": "timebank-auditor", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return bytes(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            detail = exc.read(2000).decode("utf-8", "replace")
        with contextlib.suppress(ValueError, AttributeError):
            detail = str(json.loads(detail).get("detail", detail))
        raise AuditError(f"GET {url}: HTTP {exc.code}: {detail.strip()[:300]}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise AuditError(f"GET {url}: {exc}") from exc


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError as exc:
        raise AuditError("the log answered with something that is not JSON") from exc


def _hashes(body: Any) -> list[bytes]:
    hashes = body.get("hashes") if isinstance(body, dict) else None
    if not isinstance(hashes, list):
        raise AuditError("the log answered a proof request without hashes")
    try:
        return [base64.b64decode(str(h), validate=True) for h in hashes]
    except (binascii.Error, ValueError) as exc:
        raise AuditError("a proof hash is not base64") from exc
