"""The agent's decoder of the engine's chunked answers: every data byte once, however the
bytes are split; what one read holds as one piece; garbage and unbounded lines refused."""

from __future__ import annotations

import pytest

from teeroute_enclave.chunked import ChunkedDecoder, ChunkedError

EVENTS = [b'data: {"choices":[{"delta":{"content":"%d"}}]}\n\n' % i for i in range(5)]
BODY = (
    b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in EVENTS[:3])
    + b"%X;name=value\r\n%s\r\n" % (len(EVENTS[3]), EVENTS[3])  # upper-case hex, an extension
    + b"%x \r\n%s\r\n" % (len(EVENTS[4]), EVENTS[4])  # whitespace after the size
    + b"0\r\nX-Trailer: 1\r\n\r\n"
)


def decode(pieces: list[bytes]) -> tuple[list[bytes], bool]:
    decoder = ChunkedDecoder()
    out = [decoder.feed(piece) for piece in pieces]
    return out, decoder.done


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, len(BODY)])
def test_any_split_gives_every_data_byte_once(size: int) -> None:
    out, done = decode([BODY[i : i + size] for i in range(0, len(BODY), size)])
    assert b"".join(out) == b"".join(EVENTS) and done


def test_every_two_way_split_gives_the_data() -> None:
    for at in range(len(BODY) + 1):
        out, done = decode([BODY[:at], BODY[at:]])
        assert (b"".join(out), done) == (b"".join(EVENTS), True), at


def test_the_chunks_of_one_read_are_one_piece() -> None:
    assert decode([BODY]) == ([b"".join(EVENTS)], True)


def test_a_body_cut_before_its_last_chunk_is_not_done() -> None:
    out, done = decode([BODY[: BODY.index(b"0\r\n")]])
    assert b"".join(out) == b"".join(EVENTS) and not done


@pytest.mark.parametrize(
    "garbage",
    [
        b"zz\r\nhello\r\n",  # not hex
        b"-5\r\nhello\r\n",
        b"0x5\r\nhello\r\n",
        b"\r\nhello\r\n",  # no size
        b"5\r\nhelloXX",  # data not followed by CRLF
        b"1" * 16 + b"\r\n",  # a size no engine sends
    ],
)
def test_what_is_not_chunked_coding_is_refused(garbage: bytes) -> None:
    with pytest.raises(ChunkedError):
        decode([garbage])


def test_a_size_line_that_never_ends_is_refused_once_past_the_bound() -> None:
    decoder = ChunkedDecoder(max_line=100)
    decoder.feed(b"5" * 100)  # held: it may still end
    with pytest.raises(ChunkedError):
        decoder.feed(b"5")


def test_one_chunk_per_read_gives_its_data_as_one_piece() -> None:
    # the usual case, an engine's token per read
    reads = [b"%x\r\n%s\r\n" % (len(e), e) for e in EVENTS] + [b"0\r\n\r\n"]
    assert decode(reads) == ([*EVENTS, b""], True)
