"""The gateway's HTTP/1.1 connection: uvicorn's httptools protocol plus the limits it lacks.

uvicorn bounds neither the time a client may take to send a request's head (its keep-alive
timer starts only after a response, and any byte received stops it, so a client trickling
one header byte every few seconds holds a connection forever) nor the head's size (httptools
joins the pieces of a header without limit). `GuardedProtocol` adds, per connection:

- a head deadline: from the connection's opening, or a later request's first byte, to the end
  of its headers, at most `head_timeout_s`; then 408 (or nothing, if nothing was sent) and close;
- a head bound: at most `max_head_bytes` of request line and headers (counted as httptools
  hands them over, and per socket read while a head is unfinished, since httptools joins a
  header's pieces itself), and at most `max_headers` header lines; then 431 and close;
- a connection bound: past `max_connections` open ones, a new connection gets 503 and close;
- a response sent before its request's body was read to the end closes the connection (after
  dropping at most 1 MiB or 2 s of what is still arriving, so the client can read the answer),
  so a client cannot keep feeding a body nobody will read.

Bodies are bounded in the application (`asgi.read_body`, `asgi.body_deadline`); uvicorn stops
reading a connection once 64 KiB of body wait unread. These errors are written straight to
the transport (no application runs yet), in the OpenAI shape of errors.py. It is a protocol
subclass rather than middleware because only the protocol sees bytes before a request exists.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from teeroute_gateway.errors import GatewayError, HeadersTooLarge, RequestTimeout
from teeroute_gateway.http_protocol import OpenAIErrorProtocol
from teeroute_gateway.metrics import REFUSED
from teeroute_gateway.overload import overloaded
from teeroute_gateway.settings import GatewaySettings

LINGER_S = 2.0
LINGER_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ConnectionLimits:
    head_timeout_s: float
    max_head_bytes: int
    max_headers: int
    max_connections: int
    retry_after_s: int

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> ConnectionLimits:
        return cls(
            head_timeout_s=settings.request_head_timeout_s,
            max_head_bytes=settings.max_header_bytes,
            max_headers=settings.max_headers,
            max_connections=settings.max_connections,
            retry_after_s=settings.overload_retry_after_s,
        )


def error_response(error: GatewayError, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """A whole HTTP/1.1 response carrying `error`, which closes the connection."""
    body = error.encoded()
    lines = [b"%s: %s" % pair for pair in default_headers]
    lines += [b"content-type: application/json", b"content-length: %d" % len(body)]
    lines += [b"%s: %s" % (k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    if "connection" not in {k.lower() for k in error.headers}:
        lines.append(b"connection: close")
    return STATUS_LINE[error.status] + b"\r\n".join(lines) + b"\r\n\r\n" + body


class GuardedProtocol(OpenAIErrorProtocol):
    """uvicorn's httptools protocol (answering unparseable requests in the OpenAI shape) with
    the head deadline and bounds above; server.py binds `limits` with functools.partial."""

    def __init__(self, *args: Any, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self._head_timer: asyncio.TimerHandle | None = None
        self._in_head = True  # bytes arriving now belong to a request head
        self._head_begun = False  # ... and at least one of them has arrived
        self._head_bytes = 0  # bytes of the reads an unfinished head spans
        self._parsed_bytes = 0  # bytes of the URL and headers httptools handed over
        self._header_count = 0
        self._refusal: GatewayError | None = None
        self._lingering: int | None = None  # bytes dropped since the answer (see _linger)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            REFUSED["connection_cap"].inc()
            self._refuse(overloaded("too many open connections", self.limits.retry_after_s))
            return
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering is not None:
            self._lingering += len(data)
            if self._lingering > LINGER_BYTES:
                self.transport.close()
            return
        super().data_received(data)  # runs the parser callbacks below
        if self._in_head and self._head_begun and not self.transport.is_closing():
            self._head_bytes += len(data)  # a head spanning reads: count what was kept
            if self._head_bytes > self.limits.max_head_bytes:
                self._refuse(
                    _too_large(f"the request head is over {self.limits.max_head_bytes} bytes")
                )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_begun = True, True
        self._head_bytes, self._parsed_bytes, self._header_count = 0, 0, 0
        if self._head_timer is None:
            self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        self._parsed_bytes += len(url)
        self._check_parsed()
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._parsed_bytes += len(name) + len(value) + 4
        if self._header_count > self.limits.max_headers:
            self._refusal = _too_large(f"more than {self.limits.max_headers} header lines")
            raise self._refusal  # stops the parser; uvicorn then calls send_400_response
        self._check_parsed()
        super().on_header(name, value)

    def _check_parsed(self) -> None:
        """A head that arrived in one read is measured here, as httptools hands it over."""
        if self._parsed_bytes > self.limits.max_head_bytes:
            self._refusal = _too_large(
                f"the request head is over {self.limits.max_head_bytes} bytes"
            )
            raise self._refusal

    def on_headers_complete(self) -> None:
        self._in_head, self._head_begun = False, False
        self._disarm_head_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        if not self.pipeline and self.cycle is not None and self.cycle.more_body:
            self._linger()  # the body was never read: do not keep taking it
        super().on_response_complete()

    def _linger(self) -> None:
        """Close after an answer sent before the body was read, but first take and drop what
        the client is still sending, for at most LINGER_S and LINGER_BYTES: closing with its
        bytes unread would reset the connection, and the client could lose the answer."""
        if self.transport.is_closing():
            return  # the answer said Connection: close, and uvicorn closed
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self._lingering = 0
        self.loop.call_later(LINGER_S, self.transport.close)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes httptools refused, or to a head we refused mid-parse."""
        self._disarm_head_timer()
        if self._refusal is None:
            super().send_400_response(msg)
        else:
            self._refuse(self._refusal)

    def _refuse(self, error: GatewayError) -> None:
        self._disarm_head_timer()
        if not self.transport.is_closing():
            self.transport.write(error_response(error, self.server_state.default_headers))
            self.transport.close()

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        self._head_timer = self.loop.call_later(self.limits.head_timeout_s, self._head_late)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self._arm_head_timer()  # a response is still going out first (pipelining)
        elif not self._head_begun:
            self.transport.close()  # nothing asked, nothing to answer
        else:
            REFUSED["head_timeout"].inc()
            self._refuse(
                RequestTimeout(
                    f"the request head took over {self.limits.head_timeout_s:g} s",
                    code="request_timeout",
                )
            )


def _too_large(message: str) -> HeadersTooLarge:
    REFUSED["head_too_large"].inc()
    return HeadersTooLarge(message, code="headers_too_large")
