"""Bounded reading from a peer: every byte another component sends is counted before it is kept.

Whoever sits on the other end of a connection (a miner's agent, its engine, a gateway) may
send without end. Two tools keep what one peer can make a component hold, or scan, bounded:

    EventSplitter        server-sent events fed in pieces: whole events out, the unfinished
                         rest kept up to `max_event` bytes (EventTooLarge past it). Only the
                         new bytes of each piece are searched for the blank line that ends an
                         event, so an event that never ends costs its bytes once, never a
                         rescan of a growing buffer.
    aread_capped /       an httpx response body read as it streams (raw, never decompressed),
    read_capped          given up with BodyTooLarge once past `limit`: at most `limit` bytes
                         plus one network chunk are ever held.

Errors:

    WireError            the peer's bytes cannot be read within the bounds
    ├── BodyTooLarge         a body over its limit (declared or sent)
    │   └── EventTooLarge        one server-sent event over its limit
    └── BodyEncoded          a compressed body (its decoded size is not bounded by its bytes)

Callers: the operator (evidence, secret release answers), the gateway (a miner's stream),
the enclave agent (its engine's stream), the SDK client (the gateway's answers and frames).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where a response is read: the event splitter needs no httpx
    import httpx

LF_SEPARATORS = (b"\n\n",)
CRLF_SEPARATORS = (b"\n\n", b"\n\r\n")  # "\r\n\r\n" ends with "\n\r\n"
_OVERLAP = 2  # a separator (at most 3 bytes) may begin this many bytes before a new piece
COALESCE = 4096
"""Pieces of an unfinished event smaller than this are kept together in one buffer, so a peer
sending a byte at a time costs its bytes, not an object per byte."""


class WireError(Exception):
    """A peer's bytes that cannot be read within the bounds."""


class BodyTooLarge(WireError):
    def __init__(self, what: str, limit: int) -> None:
        super().__init__(f"{what} larger than {limit} bytes")
        self.limit = limit


class EventTooLarge(BodyTooLarge):
    def __init__(self, limit: int, ready: bytes = b"", rest: bytes = b"") -> None:
        super().__init__("a server-sent event", limit)
        self.ready = ready
        """The complete events that came before the oversized one in the last piece."""
        self.rest = rest
        """The oversized event's bytes so far (the splitter forgot them)."""


class BodyEncoded(WireError):
    def __init__(self, encoding: str) -> None:
        super().__init__(f"the body is {encoding}-encoded; only identity bodies are read")


class EventSplitter:
    """Splits a server-sent event stream, fed in arbitrary pieces, into runs of whole events.

    `feed` returns the bytes up to the end of the last complete event (b"" while an event is
    unfinished); the rest waits for the next piece. `crlf` also ends events at "\\r\\n\\r\\n"
    and "\\n\\r\\n" (engines may send either); without it only "\\n\\n" ends one. The unfinished
    event is kept as the pieces it came in (joined once, when it ends), and only its last two
    bytes are looked at again, for a separator that straddles two pieces.
    """

    def __init__(self, max_event: int, *, crlf: bool = False) -> None:
        self.max_event = max_event
        self._crlf = crlf
        self._separators = CRLF_SEPARATORS if crlf else LF_SEPARATORS
        self._parts: list[bytes | bytearray] = []
        self._size = 0
        self._tail = b""  # the unfinished event's last bytes (at most _OVERLAP)

    def feed(self, data: bytes) -> bytes:
        """Whole events now; raises EventTooLarge once the unfinished one passes `max_event`."""
        if self._crlf:
            end = _last_end(data, 0, self._separators)
        else:  # the gateway's case, per chunk of every stream: one search, no loop
            at = data.rfind(b"\n\n")
            end = at + 2 if at >= 0 else 0
        if self._size and end < _OVERLAP:
            end = max(end, self._straddling_end(data))
        if not end:
            self._keep(data)
            return b""
        if self._size:
            ready = b"".join([*self._parts, data[:end]])
            self._parts, self._size, self._tail = [], 0, b""
        else:  # the usual case: no copy of a piece that ends on an event
            ready = data if end == len(data) else data[:end]
        if end < len(data):
            self._keep(data[end:], ready)
        return ready

    def _straddling_end(self, data: bytes) -> int:
        """Where in `data` a separator that began in the unfinished event's bytes ends (0:
        none)."""
        window = self._tail + data[:_OVERLAP]
        end = _last_end(window, 0, self._separators)
        return end - len(self._tail) if end > len(self._tail) else 0

    def _keep(self, piece: bytes, ready: bytes = b"") -> None:
        if not piece:
            return
        last = self._parts[-1] if self._parts else b""
        if 0 < len(last) < COALESCE and len(piece) < COALESCE:
            # small pieces share one buffer: no object per piece, and no copy of the first
            if isinstance(last, bytearray):
                last += piece
            else:
                self._parts[-1] = bytearray(last) + piece
        else:
            self._parts.append(piece)
        self._size += len(piece)
        self._tail = piece[-_OVERLAP:] if len(piece) >= _OVERLAP else self._tail[-1:] + piece
        if self._size > self.max_event:
            raise EventTooLarge(self.max_event, ready, self.take_rest())

    def take_rest(self) -> bytes:
        """The unfinished event's bytes (empty for a well-formed stream), now forgotten."""
        rest = b"".join(self._parts)
        self._parts, self._size, self._tail = [], 0, b""
        return rest

    @property
    def pending(self) -> bytes:
        """Bytes after the last complete event (non-empty at the end: a cut-off stream)."""
        return b"".join(self._parts)

    @property
    def pending_size(self) -> int:
        return self._size


def _last_end(buffer: bytes | bytearray, start: int, separators: tuple[bytes, ...]) -> int:
    """Where the last separator found at or after `start` ends (0: none there)."""
    best = 0
    for separator in separators:
        at = buffer.rfind(separator, start)
        if at >= 0:
            best = max(best, at + len(separator))
    return best


def declared_length(response: httpx.Response) -> int | None:
    """The Content-Length the peer declared, if it is a plain number."""
    text = response.headers.get("content-length", "").strip()
    return int(text) if text.isascii() and text.isdigit() else None


def check_head(response: httpx.Response, limit: int, what: str) -> None:
    """Refuse, before reading any of it, a body declared too large or compressed."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise BodyEncoded(encoding[:40])
    declared = declared_length(response)
    if declared is not None and declared > limit:
        raise BodyTooLarge(what, limit)


async def aread_capped(response: httpx.Response, limit: int, what: str) -> bytes:
    """The body of a streamed `response`, or BodyTooLarge once more than `limit` bytes came
    (at most one network chunk past it is read; the caller closes the response)."""
    check_head(response, limit, what)
    parts: list[bytes] = []
    size = 0
    async for chunk in _araw(response):
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(what, limit)
        parts.append(chunk)
    return b"".join(parts)


def read_capped(response: httpx.Response, limit: int, what: str) -> bytes:
    """`aread_capped` for a synchronous client."""
    check_head(response, limit, what)
    parts: list[bytes] = []
    size = 0
    for chunk in raw_pieces(response):
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(what, limit)
        parts.append(chunk)
    return b"".join(parts)


def raw_pieces(response: httpx.Response) -> Iterator[bytes]:
    """The body as it arrives, never inflated; a body already in memory (a response made
    whole, as httpx.MockTransport's are) as one piece."""
    import httpx

    try:
        yield response.content
    except httpx.ResponseNotRead:
        yield from response.iter_raw()


async def _araw(response: httpx.Response) -> AsyncIterator[bytes]:
    import httpx

    try:
        yield response.content
    except httpx.ResponseNotRead:
        async for chunk in response.aiter_raw():
            yield chunk
