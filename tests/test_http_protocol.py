"""A request uvicorn cannot parse (raw UTF-8 in the query) is answered as a problem, not text."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from api.http_protocol import ProblemHttpToolsProtocol


async def echo_query(scope: Any, receive: Any, send: Any) -> None:
    """The smallest ASGI app: answers the query string it received."""
    if scope["type"] != "http":
        return
    body = scope["query_string"]
    length = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": length})
    await send({"type": "http.response.body", "body": body})


@contextmanager
def serve() -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(
        echo_query, log_level="error", lifespan="off", http=ProblemHttpToolsProtocol
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(20)
        sock.close()


def raw_get(port: int, target: bytes) -> tuple[str, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return status, headers, body


def test_raw_utf8_in_the_query_gets_a_problem_and_the_encoded_query_gets_through() -> None:
    with serve() as port:
        status, headers, body = raw_get(port, "/v1/members?search=王秀英".encode())
        assert status.startswith("HTTP/1.1 400")
        assert headers["content-type"] == "application/problem+json"
        assert int(headers["content-length"]) == len(body)
        problem = json.loads(body)
        assert problem["type"] == "urn:timebank:problem:invalid-parameter"
        assert problem["status"] == 400 and "percent-encoded" in problem["detail"]

        status, _, body = raw_get(port, b"/v1/members?search=%E7%8E%8B%E7%A7%80%E8%8B%B1")
        assert status.startswith("HTTP/1.1 200")
        assert body == b"search=%E7%8E%8B%E7%A7%80%E8%8B%B1"
