"""The few ASGI primitives the gateway uses: headers, a bounded body read (in size, and in
time with `body_deadline`), whole responses.

Raw ASGI rather than a framework's request/response objects: on the proxy path every
microsecond per request is throughput.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from teeroute_gateway.errors import BadRequest, GatewayError, PayloadTooLarge, RequestTimeout
from teeroute_gateway.metrics import REFUSED

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

JSON = (b"content-type", b"application/json")
CLOSE = {"Connection": "close"}  # a client too slow to send its body gets no more time
SSE = (b"content-type", b"text/event-stream")


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value  # type: ignore[no-any-return]
    return None


def bearer(scope: Scope) -> str | None:
    value = header(scope, b"authorization")
    if value is None:
        return None
    scheme, _, token = value.decode("latin-1").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    declared = header(scope, b"content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise BadRequest("Content-Length is not a number") from None
        if size > limit:
            raise _too_large(limit)
    parts = []
    total = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > limit:
            raise _too_large(limit)
        parts.append(chunk)
        if not message.get("more_body", False):
            return parts[0] if len(parts) == 1 else b"".join(parts)


def _too_large(limit: int) -> PayloadTooLarge:
    # no Connection: close: the protocol ends the connection once it has dropped what the
    # client is still sending (protocol.py), so the client can read this answer
    REFUSED["body_too_large"].inc()
    return PayloadTooLarge(f"the body is over the limit of {limit} bytes", code="body_too_large")


def body_deadline(receive: Receive, timeout_s: float) -> Receive:
    """`receive`, raising RequestTimeout (408) if the request body is not complete within
    `timeout_s` from now. Once it is, later calls (waiting for a disconnect while a response
    streams) have no deadline."""
    deadline = time.monotonic() + timeout_s
    complete = False

    async def receive_in_time() -> Message:
        nonlocal complete
        if complete:
            return await receive()
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                message = await receive()
        except TimeoutError:
            REFUSED["body_timeout"].inc()
            raise RequestTimeout(
                f"the request body was not sent within {timeout_s:g} s",
                code="request_timeout",
                headers=CLOSE,
            ) from None
        complete = message["type"] != "http.request" or not message.get("more_body", False)
        return message

    return receive_in_time


class ClientGone(Exception):
    """The client disconnected before the request was read."""


async def respond(
    send: Send, status: int, body: bytes, headers: Iterable[tuple[bytes, bytes]] = (JSON,)
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": list(headers)})
    await send({"type": "http.response.body", "body": body})


async def respond_error(send: Send, error: GatewayError, extra: Headers | None = None) -> None:
    headers: Headers = [JSON, *(extra or [])]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await respond(send, error.status, error.encoded(), headers)
