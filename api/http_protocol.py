"""uvicorn's HTTP/1.1 protocol, answering a request it cannot parse with a problem.

uvicorn's parser (httptools) refuses a request line that HTTP does not allow, most often a
query string with raw UTF-8 (``?search=王`` typed unencoded), before the app sees it, and
answers a plain-text "Invalid HTTP request received.". Clients of this API switch on
``application/problem+json``, so this answers the same 400 as one: ``invalid-parameter``,
saying what to do. Nothing of the request can be trusted here (not even ``Accept-Language``),
so the text is English and names no field.
"""

from __future__ import annotations

import json

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

UNPARSEABLE = {
    "type": "urn:timebank:problem:invalid-parameter",
    "title": "Invalid parameter",
    "status": 400,
    "detail": (
        "the request is not valid HTTP/1.1; characters outside ASCII in the path or query "
        "must be percent-encoded as UTF-8 (e.g. ?search=%E7%8E%8B, or curl -G --data-urlencode)"
    ),
}


class ProblemHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` whose 400 for an unparseable request is problem+json."""

    def send_400_response(self, msg: str) -> None:
        body = json.dumps(UNPARSEABLE, separators=(",", ":")).encode("ascii")
        content = [STATUS_LINE[400]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/problem+json\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()
