"""uvicorn's httptools protocol, answering a request it cannot parse in the API's error shape.

A request line or header the HTTP parser refuses (a control character in a header value, a
malformed request line) never reaches the ASGI app: uvicorn itself answers 400 with a
text/plain "Invalid HTTP request received.", which OpenAI clients cannot read as an error.
This protocol answers the same 400 (and closes the connection, as uvicorn does) with the
OpenAI body every other error has, code `invalid_http_request`. The protocol server.py runs
(protocol.GuardedProtocol, which adds the head deadline and bounds) builds on it.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from teeroute_gateway.errors import BadRequest

MALFORMED = BadRequest(
    "the HTTP request is malformed (request line or headers)", code="invalid_http_request"
).encoded()


def bad_request_bytes(default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """The whole 400 response to a request the parser refused."""
    content = [STATUS_LINE[400]]
    for name, value in default_headers:
        content += [name, b": ", value, b"\r\n"]
    content += [
        b"content-type: application/json\r\n",
        b"content-length: " + str(len(MALFORMED)).encode() + b"\r\n",
        b"connection: close\r\n\r\n",
        MALFORMED,
    ]
    return b"".join(content)


class OpenAIErrorProtocol(HttpToolsProtocol):
    def send_400_response(self, msg: str) -> None:
        self.transport.write(bad_request_bytes(self.server_state.default_headers))
        self.transport.close()
