"""HTTP/1.1 chunked transfer coding, decoded as it arrives (the engine's streamed answers).

The agent relays an engine's stream piece by piece. `ChunkedDecoder.feed` takes whatever one
read of the engine's socket returned and gives back the data it completes: every data byte
once, the data of all the chunks that read held joined into one piece (so what arrived
together leaves together), nothing held back but an unfinished chunk-size line (at most
MAX_LINE bytes: a peer cannot make the agent hold more). `done` once the last chunk and its
trailer lines are read. Bytes that are not chunked coding raise ChunkedError.
"""

from __future__ import annotations

import re

MAX_LINE = 64 * 1024  # as http.client's _MAXLINE
_SIZE_LINE = re.compile(rb"([0-9A-Fa-f]{1,15})[ \t]*(?:;[^\r\n]*)?\r\n")
"""A chunk-size line: hex digits (a chunk under 2**60 bytes: more is no engine's answer),
maybe chunk extensions (ignored)."""


class ChunkedError(Exception):
    """The engine's bytes are not chunked transfer coding."""


class ChunkedDecoder:
    """The data of a chunked body fed in arbitrary pieces."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self.done = False
        self._rest = b""  # an unfinished size or trailer line, or half a CRLF
        self._left = 0  # data bytes of the current chunk still to come
        self._crlf = False  # the CRLF that ends a chunk's data is due
        self._trailer = False  # past the last chunk: trailer lines until an empty one

    def feed(self, data: bytes) -> bytes:
        if not (self._rest or self._left or self._crlf or self._trailer):
            whole = _one_chunk(data)
            if whole is not None:
                return whole
        buf = self._rest + data if self._rest else data
        out: list[bytes] = []
        at = 0
        while at < len(buf) and not self.done:
            moved = self._step(buf, at, out)
            if moved == at:
                break  # the rest is an unfinished line (or half a CRLF)
            at = moved
        self._rest = b"" if self.done else buf[at:]
        if len(self._rest) > self.max_line:
            raise ChunkedError(f"a chunk-size or trailer line over {self.max_line} bytes")
        return out[0] if len(out) == 1 else b"".join(out)

    def _step(self, buf: bytes, at: int, out: list[bytes]) -> int:
        """One element of the coding from `at`: where the next one begins (`at`: incomplete)."""
        if self._left:
            end = min(len(buf), at + self._left)
            out.append(buf[at:end] if at or end < len(buf) else buf)
            self._left -= end - at
            self._crlf = not self._left
            return end
        if self._crlf:
            if len(buf) - at < 2:
                return at
            if buf[at : at + 2] != b"\r\n":
                raise ChunkedError("a chunk's data is not followed by CRLF")
            self._crlf = False
            return at + 2
        if self._trailer:
            end = buf.find(b"\r\n", at)
            if end < 0:
                return at
            self.done = end == at  # the empty line that ends the trailers
            return end + 2
        size = _SIZE_LINE.match(buf, at)
        if size is None:
            if buf.find(b"\r\n", at) >= 0:
                raise ChunkedError(f"not a chunk size: {buf[at : at + 40]!r}")
            return at
        self._left = int(size[1], 16)
        self._trailer = not self._left
        return size.end()


def _one_chunk(data: bytes) -> bytes | None:
    """The data of `data` when it is exactly one whole chunk (an engine's token, as one read
    usually returns it); None otherwise."""
    size = _SIZE_LINE.match(data)
    if size is None:
        return None
    start = size.end()
    end = start + int(size[1], 16)
    if end == start or end + 2 != len(data) or not data.endswith(b"\r\n"):
        return None
    return data[start:end]
