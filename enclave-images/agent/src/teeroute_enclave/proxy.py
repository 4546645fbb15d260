"""Forwarding OpenAI-compatible requests to the engine beside the agent.

The agent is the pod's only door: the engine listens on loopback. `server.py` reads a request,
calls `forward(engine_url, method, path, headers, body, bearer=...)` and relays the
`EngineResponse` it yields as its bytes arrive, so SSE streams are never held back. Sealed
requests (`sealed.py`) use this same function: open the body, forward, seal what comes back.

Only a few headers cross, by allowlist (so hop-by-hop headers, Cookie and Accept-Encoding never
reach the engine, and its answer is relayed undecoded, so it must not be compressed). The
caller's Authorization never crosses either (it holds the gateway's client keys): the engine
gets `Authorization: Bearer <engine-api-key>` when that secret was released to the agent, and
no Authorization otherwise. The query string stays behind (these routes take none). One engine
connection per request; closing it (when the client goes away) makes the engine stop
generating.

Per streamed token the agent pays a read and a write, so those are kept bare: once the
engine's head is in, its socket (and the gateway's, server.py) wait with the kernel's
timeouts (SO_RCVTIMEO/SO_SNDTIMEO) instead of Python's, which polls before every read and
write; a chunked body is read from the socket and decoded by `chunked.py`, not http.client.

Errors, each with the HTTP status and error type the agent answers with:

    RequestError           the client's request
    ├── BadContentLength       400 invalid_request
    ├── LengthRequired         411 invalid_request   (chunked request bodies)
    └── BodyTooLarge           413 invalid_request
    EngineError            the engine
    ├── EngineUnavailable      503 engine_unavailable (none configured, refused, unreachable)
    ├── EngineFailed           502 engine_error       (closed or garbled before answering)
    └── EngineTimeout          504 engine_timeout
"""

from __future__ import annotations

import http.client
import socket
import struct
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

from teeroute_enclave.chunked import ChunkedDecoder, ChunkedError

MAX_BODY = 8 * 1024 * 1024
"""Largest request body forwarded (bytes); a long prompt is well under it."""

CONNECT_TIMEOUT_S = 5.0  # loopback: a connect that takes this long will not succeed
READ_TIMEOUT_S = 600.0
"""Longest silence from the engine (before its answer, or between two pieces of it)."""

READ_SIZE = 64 * 1024
LAST_CHUNK = b"0\r\n\r\n"

FORWARDED = frozenset(
    {("POST", "/v1/chat/completions"), ("POST", "/v1/completions"), ("GET", "/v1/models")}
)
REQUEST_HEADERS = ("Content-Type", "Accept", "X-Request-Id")
RESPONSE_HEADERS = ("Content-Type", "Cache-Control", "X-Request-Id")
_CANONICAL = {name.lower(): name for name in REQUEST_HEADERS}
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


class ProxyError(Exception):
    status = 500
    kind = "internal_error"


class RequestError(ProxyError):
    kind = "invalid_request"


class BadContentLength(RequestError):
    status = 400


class LengthRequired(RequestError):
    status = 411


class BodyTooLarge(RequestError):
    status = 413


class EngineError(ProxyError):
    pass


class EngineUnavailable(EngineError):
    status, kind = 503, "engine_unavailable"


class EngineFailed(EngineError):
    status, kind = 502, "engine_error"


class EngineTimeout(EngineError):
    status, kind = 504, "engine_timeout"


def forwarded(method: str, path: str) -> bool:
    return (method, path) in FORWARDED


def content_length(values: Sequence[str], limit: int) -> int:
    """The body length a request declares (no header: 0). Repeated headers must agree, so a
    request cannot mean one length to the agent and another to something behind it."""
    if len(set(values)) > 1:
        raise BadContentLength("conflicting Content-Length headers")
    text = values[0].strip() if values else "0"
    if not (text.isascii() and text.isdigit()):
        raise BadContentLength("Content-Length must be a non-negative integer")
    length = int(text)
    if length > limit:
        raise BodyTooLarge(f"the body must be at most {limit} bytes")
    return length


def chunk(piece: bytes) -> bytes:
    """One piece in chunked transfer encoding, framed for a single write."""
    return b"%x\r\n%s\r\n" % (len(piece), piece)


def request_headers(pairs: Iterable[tuple[str, str]], bearer: str | None = None) -> dict[str, str]:
    """The client's headers the engine gets: the allowlist (first of repeats), minus any the
    client marked hop-by-hop by naming it in Connection; plus the engine's own bearer token."""
    kept: dict[str, str] = {}
    for name, value in _allowed(pairs, REQUEST_HEADERS):
        kept.setdefault(_CANONICAL[name.lower()], value)
    if bearer:
        kept["Authorization"] = f"Bearer {bearer}"
    return kept


def response_headers(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The engine's headers the client gets (the framing headers are the agent's own)."""
    return _allowed(pairs, RESPONSE_HEADERS)


def _allowed(pairs: Iterable[tuple[str, str]], names: Sequence[str]) -> list[tuple[str, str]]:
    pairs = list(pairs)
    named = (_tokens(value) for name, value in pairs if name.lower() == "connection")
    allowed = {name.lower() for name in names} - HOP_BY_HOP.union(*named)
    return [(name, value) for name, value in pairs if name.lower() in allowed]


def _tokens(value: str) -> frozenset[str]:
    return frozenset(token.strip().lower() for token in value.split(",") if token.strip())


@dataclass
class EngineResponse:
    """The engine's answer: status and headers now, the body as it arrives."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    length: int | None
    """Content-Length of the body, None when the engine streams it (chunked)."""
    _response: http.client.HTTPResponse
    _timeout_s: float = READ_TIMEOUT_S
    _sock: socket.socket | None = None
    """The engine connection's socket: a chunked body is read from it directly."""

    def chunks(self) -> Generator[bytes, None, None]:
        """The body piece by piece, each as soon as the engine sent it."""
        if self._response.chunked and self._sock is not None:
            return self._dechunked(self._sock)
        return self._pieces()

    def _pieces(self) -> Generator[bytes, None, None]:
        while True:
            began = time.monotonic()
            try:
                piece = self._response.read1(READ_SIZE)
            except TimeoutError:
                raise EngineTimeout("the engine stopped sending") from None
            except (http.client.HTTPException, OSError) as exc:
                raise self._broken(began, type(exc).__name__) from None
            if not piece:
                return
            yield piece

    def _dechunked(self, sock: socket.socket) -> Generator[bytes, None, None]:
        """A chunked body decoded here rather than by http.client (a fraction of its Python
        per piece): one read of the socket per piece, the chunks of one read as one piece.
        The first read takes what http.client buffered with the head."""
        decoder = ChunkedDecoder()
        read: Callable[..., bytes] = self._response.fp.read1
        while not decoder.done:
            began = time.monotonic()
            try:
                data = read(READ_SIZE)
            except TimeoutError:
                raise EngineTimeout("the engine stopped sending") from None
            except OSError as exc:
                raise self._broken(began, type(exc).__name__) from None
            if not data:
                raise self._broken(began, "the connection closed")
            read = sock.recv
            try:
                piece = decoder.feed(data)
            except ChunkedError as exc:
                raise EngineFailed(f"the engine's answer is not chunked coding: {exc}") from None
            if piece:
                yield piece

    def _broken(self, began: float, why: str) -> EngineError:
        # the kernel's timeout (kernel_timeouts) ends a read as a short or failed one
        if time.monotonic() - began >= self._timeout_s:
            return EngineTimeout("the engine stopped sending")
        return EngineFailed(f"the engine's answer broke off: {why}")


@contextmanager
def forward(
    engine_url: str,
    method: str,
    path: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    read_timeout_s: float = READ_TIMEOUT_S,
    *,
    bearer: str | None = None,
) -> Iterator[EngineResponse]:
    """Send the request to `{engine_url}{path}` and yield the engine's response once its
    status line and headers arrived. Leaving the block closes the engine connection.
    `bearer`: the engine's API key, sent as `Authorization: Bearer`."""
    if not engine_url:
        raise EngineUnavailable("no engine is configured")
    connection = _connect(engine_url, read_timeout_s)
    response: http.client.HTTPResponse | None = None
    try:
        target = urlsplit(engine_url).path.rstrip("/") + path
        response = _exchange(connection, method, target, request_headers(headers, bearer), body)
        if connection.sock is not None:
            kernel_timeouts(connection.sock, read_timeout_s)
        yield EngineResponse(
            response.status,
            response.reason,
            response_headers(response.getheaders()),
            response.length,
            response,
            read_timeout_s,
            connection.sock,
        )
    finally:
        # The response owns the socket once it is read (http.client): close both, so the
        # engine sees the connection end and stops generating.
        if response is not None:
            response.close()
        connection.close()


def kernel_timeouts(sock: socket.socket, seconds: float) -> None:
    """Bound each read and write of a blocking `sock` by `seconds` in the kernel
    (SO_RCVTIMEO/SO_SNDTIMEO), instead of Python's socket timeout, which polls before every
    read and write: a stream's body costs one syscall per piece, not two. A read that times
    out then ends short (an empty read, an IncompleteRead), a write with BlockingIOError."""
    whole = int(seconds)
    value = struct.pack("ll", whole, int((seconds - whole) * 1_000_000))
    sock.settimeout(None)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)


def _connect(engine_url: str, read_timeout_s: float) -> http.client.HTTPConnection:
    url = urlsplit(engine_url)
    kind = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    try:
        connection = kind(url.hostname or "", url.port, timeout=CONNECT_TIMEOUT_S)
    except ValueError:
        raise EngineUnavailable("the engine URL has no valid port") from None
    try:
        connection.connect()
    except OSError as exc:
        connection.close()
        raise EngineUnavailable(f"the engine does not answer: {type(exc).__name__}") from None
    if connection.sock is not None:
        connection.sock.settimeout(read_timeout_s)
    return connection


def _exchange(
    connection: http.client.HTTPConnection,
    method: str,
    target: str,
    headers: dict[str, str],
    body: bytes,
) -> http.client.HTTPResponse:
    try:
        connection.request(method, target, body or None, headers)
        return connection.getresponse()
    except TimeoutError:
        raise EngineTimeout("the engine did not answer in time") from None
    except (http.client.HTTPException, OSError) as exc:
        raise EngineFailed(f"the engine did not answer: {type(exc).__name__}") from None
