"""Wire v2 binary frames: every sealed request and response body is a run of these.

    MAGIC "TR" (2) | version u8 (= 2) | type u8 | payload length u32 big-endian | payload

Used by the agent, the gateway, the SDK client and `teeroute proxy` to cut sealed bodies into
frames (docs/sealed-mode.md, "Wire v2"). A reader bounds what it holds: the header is checked
(magic, version, type, length) before a single payload byte is kept, so a peer cannot make it
buffer more than `HEADER_LEN + max_payload` bytes. A v1 body (JSON envelope or SSE frames)
is refused as `frame.version`, so old and new peers tell each other apart clearly.

    encode(type, payload)       -> frame bytes
    FrameDecoder().feed(bytes)  -> the whole frames so far (any split of the stream)
    decode_one(body)            -> exactly one frame (a request body)
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from teeroute.sealing.errors import FrameInvalid

WIRE_VERSION = 2
CONTENT_TYPE = "application/vnd.teeroute.sealed.v2"
V1_CONTENT_TYPE = "application/vnd.teeroute.sealed+json"
MAGIC = b"TR"
HEADER_LEN = 8
MAX_PAYLOAD = (1 << 20) + 4096
V1_DETAIL = "a v1 sealed message (JSON/SSE); this peer speaks only wire v2"

_HEADER = struct.Struct(">2sBBI")
# How v1 bodies begin: a JSON envelope (maybe after whitespace) or an SSE event.
_V1_STARTS = (b"{", b" ", b"\t", b"\r", b"\n", b"event:")


class FrameType(enum.IntEnum):
    HELLO = 1
    WELCOME = 2
    REQUEST = 16
    CHUNK = 17
    ONESHOT = 18
    RECEIPT = 32
    ROOT = 33
    ERROR = 48


_TYPES = {int(t): t for t in FrameType}


@dataclass(frozen=True, slots=True)
class Frame:
    type: FrameType
    payload: bytes


def encode(type: FrameType, payload: bytes) -> bytes:
    """One frame; FrameInvalid("frame.size") past MAX_PAYLOAD."""
    if len(payload) > MAX_PAYLOAD:
        raise FrameInvalid("frame.size", f"payload over {MAX_PAYLOAD} bytes")
    return _HEADER.pack(MAGIC, WIRE_VERSION, type, len(payload)) + payload


def header(type: FrameType, length: int) -> bytes:
    """Just the 8-byte header, for writers that send the payload in pieces."""
    return _HEADER.pack(MAGIC, WIRE_VERSION, type, length)


def _refuse_start(start: bytes) -> None:
    """Refuses a frame start that cannot be a v2 frame (`start` is 1..HEADER_LEN bytes)."""
    if MAGIC.startswith(start[:2]):
        return
    if start.startswith(_V1_STARTS) or b"event:".startswith(start):
        raise FrameInvalid("frame.version", V1_DETAIL)
    raise FrameInvalid("frame.magic", "not a teeroute sealed frame")


def _parse_header(
    buf: bytes | bytearray | memoryview, at: int, max_payload: int
) -> tuple[FrameType, int]:
    """Checks a whole header at `at`: (its type, its payload length)."""
    magic, version, kind, length = _HEADER.unpack_from(buf, at)
    if magic != MAGIC:
        _refuse_start(bytes(buf[at : at + HEADER_LEN]))
    if version != WIRE_VERSION:
        raise FrameInvalid("frame.version", f"wire v{version}; this peer speaks only wire v2")
    frame_type = _TYPES.get(kind)
    if frame_type is None:
        raise FrameInvalid("frame.type", f"unknown frame type {kind}")
    if length > max_payload:
        raise FrameInvalid("frame.size", f"payload of {length} bytes, over {max_payload}")
    return frame_type, length


class FrameDecoder:
    """A streaming frame reader: feed it the body in any pieces, get whole frames back.

    It holds at most HEADER_LEN + max_payload bytes of an unfinished frame; a header that is
    wrong is refused as soon as its bytes arrive. After one error the decoder is spent.
    """

    __slots__ = ("_buf", "_failed", "_max")

    def __init__(self, max_payload: int = MAX_PAYLOAD) -> None:
        self._max = max_payload
        self._buf = bytearray()
        self._failed = False

    @property
    def pending(self) -> int:
        """Bytes held of an unfinished frame (nonzero at the end: the body was cut off)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        if self._failed:
            raise FrameInvalid("frame.truncated", "the decoder already refused this stream")
        if not self._buf and len(data) >= HEADER_LEN:
            buf: bytes | bytearray = data  # the common case: no copy into the buffer
        else:
            self._buf += data
            buf = self._buf
        try:
            frames, used = self._split(buf)
        except FrameInvalid:
            self._failed = True
            self._buf = bytearray()
            raise
        if buf is self._buf:
            del self._buf[:used]
        else:
            self._buf = bytearray(data[used:])
        return frames

    def _split(self, buf: bytes | bytearray) -> tuple[list[Frame], int]:
        frames: list[Frame] = []
        at, end = 0, len(buf)
        while end - at >= HEADER_LEN:
            frame_type, length = _parse_header(buf, at, self._max)
            stop = at + HEADER_LEN + length
            if stop > end:
                break
            frames.append(Frame(frame_type, bytes(buf[at + HEADER_LEN : stop])))
            at = stop
        if 0 < end - at < HEADER_LEN:
            _refuse_start(bytes(buf[at:end]))
        return frames, at


def decode_one(body: bytes) -> Frame:
    """Exactly one whole frame (a request body); FrameInvalid names what is wrong."""
    if len(body) < HEADER_LEN:
        if body:
            _refuse_start(body[:HEADER_LEN])
        raise FrameInvalid("frame.truncated", f"{len(body)} bytes, shorter than a frame header")
    frame_type, length = _parse_header(body, 0, MAX_PAYLOAD)
    stop = HEADER_LEN + length
    if len(body) < stop:
        raise FrameInvalid("frame.truncated", f"{stop - len(body)} payload bytes missing")
    if len(body) > stop:
        raise FrameInvalid("frame.trailing", f"{len(body) - stop} bytes after the frame")
    return Frame(frame_type, body[HEADER_LEN:stop])


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def looks_v2(content_type: str) -> bool:
    return _media_type(content_type) == CONTENT_TYPE


def looks_v1(content_type_or_body: str | bytes) -> bool:
    """A v1 sealed message: its content type (str), or its body's first bytes (bytes)."""
    if isinstance(content_type_or_body, str):
        return _media_type(content_type_or_body) == V1_CONTENT_TYPE
    start = content_type_or_body.lstrip()[:6]
    return start.startswith(b"{") or start == b"event:"
