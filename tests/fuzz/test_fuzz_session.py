"""Fuzzing wire v2: frames (whole and streamed), the HELLO and its transcript, the WELCOME,
ONESHOT, REQUEST and CHUNK payloads.

Property: any bytes end in a result or a SealingError (FrameInvalid, EnvelopeInvalid,
OpenFailed), never another exception; the stream decoder never holds more than a header and
its bound; and a mutated message opens, verifies or confirms only if it is the original."""

from __future__ import annotations

from functools import partial

import pytest
from hypothesis import given
from hypothesis import strategies as st

from teeroute.sealing.errors import FrameInvalid, SealingError
from teeroute.sealing.frames import HEADER_LEN, Frame, FrameDecoder, decode_one
from teeroute.sealing.params import Hello, SessionParams, parse_hello
from teeroute.sealing.session import Exchange, open_oneshot

from . import budget
from . import sealing_inputs as s
from .json_values import VALUES, changed, deep
from .mutate import inputs, typed

pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(budget.TIMEOUT_S)]

SMALL_BOUND = 300
"""A payload bound below the sample's largest frame, so streams cross it too."""


@budget.budget()
@given(inputs(s.STREAM, max_random=64))
def test_decode_one_raises_only_frame_invalid(body: bytes) -> None:
    typed(lambda: decode_one(body), FrameInvalid)


def _cuts(data: bytes) -> st.SearchStrategy[list[bytes]]:
    """`data` cut into pieces at sorted random points."""
    points = st.lists(st.integers(0, len(data)), max_size=12).map(sorted)
    return points.map(
        lambda at: [data[a:b] for a, b in zip([0, *at], [*at, len(data)], strict=True)]
    )


@st.composite
def _stream_in_pieces(draw: st.DrawFn) -> list[bytes]:
    return draw(_cuts(draw(inputs(s.STREAM, max_random=64))))


@budget.budget()
@given(_stream_in_pieces(), st.sampled_from((SMALL_BOUND, 1 << 20)))
def test_the_stream_decoder_raises_only_frame_invalid_and_holds_a_bounded_rest(
    pieces: list[bytes], bound: int
) -> None:
    decoder = FrameDecoder(bound)
    for piece in pieces:
        if isinstance(typed(partial(decoder.feed, piece), FrameInvalid), FrameInvalid):
            return
        assert decoder.pending <= HEADER_LEN + bound


@budget.budget()
@given(_cuts(s.STREAM))
def test_any_split_of_a_valid_stream_gives_the_same_frames(pieces: list[bytes]) -> None:
    decoder, frames = FrameDecoder(), []
    for piece in pieces:
        frames += decoder.feed(piece)
    expected, at = [], 0
    while at < len(s.STREAM):
        length = int.from_bytes(s.STREAM[at + 4 : at + 8], "big")
        expected.append(decode_one(s.STREAM[at : at + HEADER_LEN + length]))
        at += HEADER_LEN + length
    assert frames == expected and decoder.pending == 0
    assert all(isinstance(f, Frame) for f in frames)


_TRANSCRIPT_DOC = __import__("json").loads(s.TRANSCRIPT)


@budget.budget(budget.SHAPES)
@given(st.one_of(inputs(s.TRANSCRIPT), deep(), changed(_TRANSCRIPT_DOC), VALUES))
def test_a_transcript_of_any_shape_raises_only_envelope_invalid(raw: object) -> None:
    data = raw if isinstance(raw, bytes) else __import__("json").dumps(raw).encode()
    typed(lambda: SessionParams.from_transcript(data), SealingError)


@budget.budget()
@given(inputs(s.HELLO))
def test_a_mutated_hello_is_refused_or_signed_over_the_same_bytes(payload: bytes) -> None:
    hello = typed(lambda: parse_hello(payload), SealingError)
    if not isinstance(hello, Hello):
        return
    if typed(lambda: hello.check_signature(s.GATEWAY_PUBLIC), SealingError) is None:
        assert (hello.signed_bytes, hello.signature) == (
            parse_hello(s.HELLO).signed_bytes,
            parse_hello(s.HELLO).signature,
        )


@budget.budget()
@given(inputs(s.WELCOME, max_random=64))
def test_a_mutated_welcome_confirms_only_if_unchanged(payload: bytes) -> None:
    if typed(lambda: s.initiator().confirm(payload), SealingError) is None:
        assert payload == s.WELCOME


@budget.budget()
@given(inputs(s.ONESHOT))
def test_a_mutated_oneshot_opens_only_if_unchanged(payload: bytes) -> None:
    opened = typed(
        lambda: open_oneshot(
            payload, s.ENCLAVE_PRIVATE, s.ENCLAVE_PUBLIC, s.SIGNING_SHA256, s.NOW + 1
        ),
        SealingError,
    )
    if isinstance(opened, tuple):
        assert payload[: len(s.ONESHOT)] == s.ONESHOT  # nothing after it is authenticated
        assert len(payload) == len(s.ONESHOT)


@budget.budget()
@given(inputs(s.REQUEST))
def test_a_mutated_request_opens_only_if_unchanged(payload: bytes) -> None:
    opened = typed(lambda: s.enclave().open_request(payload, s.NOW + 1), SealingError)
    if isinstance(opened, tuple):
        assert payload == s.REQUEST
        assert opened[:2] == (s.META, s.BODY)


@budget.budget()
@given(st.integers(0, 1), st.data())
def test_a_mutated_chunk_opens_only_if_unchanged(index: int, data: st.DataObject) -> None:
    exchange = Exchange(s.initiator(), s.REQUEST_COUNTER, "")
    if index:
        exchange.open(s.CHUNKS[0])
    payload = data.draw(inputs(s.CHUNKS[index], max_random=64))
    if isinstance(typed(lambda: exchange.open(payload), SealingError), bytes):
        assert payload == s.CHUNKS[index]
