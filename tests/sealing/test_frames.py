"""Wire v2 frames: any split of a stream decodes the same, every refusal names its check, and
a reader never holds more than one bounded frame."""

from __future__ import annotations

import json
import struct

import pytest

from teeroute.sealing import frames
from teeroute.sealing.errors import FrameInvalid
from teeroute.sealing.frames import Frame, FrameDecoder, FrameType, decode_one, encode

STREAM = [
    Frame(FrameType.CHUNK, b"first"),
    Frame(FrameType.CHUNK, b""),
    Frame(FrameType.RECEIPT, bytes(range(256)) * 3),
    Frame(FrameType.ROOT, b"TR\x02\x11 looks like a header inside a payload"),
]
BODY = b"".join(encode(f.type, f.payload) for f in STREAM)
V1_ENVELOPE = json.dumps({"teeroute_sealed": "v1", "aead": "aes-128-gcm"}).encode()
V1_SSE = b"event: sealed\ndata: AAAA\n\n"


def _header(version: int = 2, kind: int = 17, length: int = 0, magic: bytes = b"TR") -> bytes:
    return struct.pack(">2sBBI", magic, version, kind, length)


def _feed_in_pieces(body: bytes, size: int) -> tuple[list[Frame], FrameDecoder]:
    decoder = FrameDecoder()
    out: list[Frame] = []
    for at in range(0, len(body), size):
        out += decoder.feed(body[at : at + size])
    return out, decoder


@pytest.mark.parametrize("size", [1, 2, 3, 7, 8, 9, 13, 100, 777, len(BODY)])
def test_any_split_of_a_stream_decodes_to_the_same_frames(size: int) -> None:
    decoded, decoder = _feed_in_pieces(BODY, size)
    assert decoded == STREAM
    assert decoder.pending == 0


def test_a_stream_cut_inside_a_frame_leaves_pending_bytes() -> None:
    decoded, decoder = _feed_in_pieces(BODY[:-5], 10)
    assert decoded == STREAM[:-1]
    assert decoder.pending == len(encode(STREAM[-1].type, STREAM[-1].payload)) - 5


def test_oversize_length_is_refused_before_any_payload_is_held() -> None:
    decoder = FrameDecoder(max_payload=1024)
    with pytest.raises(FrameInvalid) as refused:
        decoder.feed(_header(length=1025))
    assert refused.value.check == "frame.size"
    assert decoder.pending == 0


def test_the_default_limit_refuses_a_4_gib_claim_from_its_header_alone() -> None:
    with pytest.raises(FrameInvalid) as refused:
        FrameDecoder().feed(_header(length=0xFFFFFFFF)[:8])
    assert refused.value.check == "frame.size"


@pytest.mark.parametrize(
    "body",
    [V1_ENVELOPE, V1_SSE, b"  " + V1_ENVELOPE, b"{", b"ev", b"event:"],
    ids=["json", "sse", "json-after-space", "brace", "sse-start", "sse-name"],
)
def test_v1_bytes_are_refused_as_another_wire_version(body: bytes) -> None:
    for read in (lambda b: FrameDecoder().feed(b), decode_one):
        with pytest.raises(FrameInvalid) as refused:
            read(body)
        assert refused.value.check == "frame.version"
        assert "v1" in refused.value.detail and "wire v2" in refused.value.detail


@pytest.mark.parametrize(
    ("head", "check"),
    [
        (_header(version=1), "frame.version"),
        (_header(version=3), "frame.version"),
        (_header(kind=99), "frame.type"),
        (_header(magic=b"XX"), "frame.magic"),
        (b"Q", "frame.magic"),
        (_header(length=frames.MAX_PAYLOAD + 1), "frame.size"),
    ],
    ids=["v1-byte", "v3-byte", "unknown-type", "magic", "magic-first-byte", "size"],
)
def test_bad_headers_are_refused_naming_the_check(head: bytes, check: str) -> None:
    with pytest.raises(FrameInvalid) as refused:
        FrameDecoder().feed(head)
    assert refused.value.check == check
    with pytest.raises(FrameInvalid) as refused_whole:
        decode_one(head)
    assert refused_whole.value.check == check


def test_a_bad_frame_after_good_ones_is_refused_and_spends_the_decoder() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(encode(FrameType.CHUNK, b"ok")) == [Frame(FrameType.CHUNK, b"ok")]
    with pytest.raises(FrameInvalid):
        decoder.feed(_header(version=1))
    with pytest.raises(FrameInvalid):
        decoder.feed(encode(FrameType.CHUNK, b"ok"))


@pytest.mark.parametrize(
    ("body", "check"),
    [
        (b"", "frame.truncated"),
        (b"TR\x02", "frame.truncated"),
        (encode(FrameType.REQUEST, b"payload")[:-1], "frame.truncated"),
        (encode(FrameType.REQUEST, b"payload") + b"x", "frame.trailing"),
        (encode(FrameType.REQUEST, b"a") + encode(FrameType.REQUEST, b"b"), "frame.trailing"),
    ],
    ids=["empty", "short-header", "short-payload", "trailing-byte", "two-frames"],
)
def test_decode_one_wants_exactly_one_whole_frame(body: bytes, check: str) -> None:
    with pytest.raises(FrameInvalid) as refused:
        decode_one(body)
    assert refused.value.check == check


def test_decode_one_reads_a_request_body() -> None:
    assert decode_one(encode(FrameType.HELLO, b"hi")) == Frame(FrameType.HELLO, b"hi")


def test_encode_refuses_a_payload_over_the_limit() -> None:
    with pytest.raises(FrameInvalid) as refused:
        encode(FrameType.CHUNK, bytes(frames.MAX_PAYLOAD + 1))
    assert refused.value.check == "frame.size"


@pytest.mark.parametrize(
    ("value", "v1", "v2"),
    [
        ("application/vnd.teeroute.sealed.v2", False, True),
        ("Application/VND.teeroute.sealed.v2; charset=binary", False, True),
        ("application/vnd.teeroute.sealed+json", True, False),
        ("application/json", False, False),
        ("text/event-stream", False, False),
    ],
)
def test_content_types_tell_the_wire_versions_apart(value: str, v1: bool, v2: bool) -> None:
    assert frames.looks_v1(value) is v1
    assert frames.looks_v2(value) is v2


@pytest.mark.parametrize(
    ("body", "v1"),
    [(V1_ENVELOPE, True), (V1_SSE, True), (b"\n" + V1_ENVELOPE, True), (BODY, False)],
)
def test_bodies_tell_the_wire_versions_apart(body: bytes, v1: bool) -> None:
    assert frames.looks_v1(body) is v1
