"""Bounded reading from a peer (teeroute.wire): server-sent events split the same however the
bytes are cut, each byte searched once, an unfinished event bounded, in every component that
reads a peer's events; a body read from a real socket server given up at its limit."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import httpx
import pytest

from teeroute import wire
from teeroute.client.proxy import EventRelay
from teeroute.sealing.envelope import FrameReader
from teeroute.sealing.errors import EnvelopeInvalid
from teeroute.wire import BodyEncoded, BodyTooLarge, EventSplitter, EventTooLarge, read_capped
from teeroute_enclave.usage import MAX_PENDING, StreamMeter
from teeroute_gateway.requests import CHAT
from teeroute_gateway.streaming import StreamRelay
from teeroute_gateway.upstream import UpstreamError
from tests.hostile import Plan, hostile

EVENTS = b"data: a\n\ndata: bb\n\nevent: x\ndata: ccc\n\n"
CRLF_EVENTS = b"data: a\r\n\r\ndata: bb\n\ndata: c\n\r\n"


@pytest.mark.parametrize("crlf", [False, True])
@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 64])
def test_events_come_out_whole_however_the_bytes_are_cut(size: int, crlf: bool) -> None:
    stream = (CRLF_EVENTS if crlf else EVENTS) + b"data: unfinish"
    splitter = EventSplitter(1024, crlf=crlf)
    out = b"".join(splitter.feed(stream[i : i + size]) for i in range(0, len(stream), size))
    assert out == stream.removesuffix(b"data: unfinish")
    assert splitter.pending == b"data: unfinish"
    assert splitter.take_rest() == b"data: unfinish" and splitter.pending_size == 0


def test_without_crlf_only_a_blank_lf_line_ends_an_event() -> None:
    splitter = EventSplitter(1024)
    assert splitter.feed(b"data: a\r\n\r\n") == b""
    assert splitter.feed(b"data: b\n\n") == b"data: a\r\n\r\ndata: b\n\n"


@pytest.mark.parametrize(
    "piece", [b"data: x\n", b"x"], ids=["lines-without-event-breaks", "one-giant-line"]
)
def test_an_event_past_the_bound_is_refused_with_what_came_before(piece: bytes) -> None:
    splitter = EventSplitter(1000)
    ready = splitter.feed(b"data: ok\n\n" + piece * 10)
    assert ready == b"data: ok\n\n"
    with pytest.raises(EventTooLarge) as raised:
        for _ in range(2000):
            splitter.feed(piece * 10)
    assert raised.value.limit == 1000 and len(raised.value.rest) <= 1000 + len(piece) * 10
    assert splitter.pending_size == 0  # nothing more is held


def test_each_byte_is_searched_for_an_event_end_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """An event that grows piece by piece is never rescanned from its start."""
    searched = []
    real = wire._last_end

    def counting(buffer: bytes | bytearray, start: int, separators: tuple[bytes, ...]) -> int:
        searched.append(len(buffer) - start)
        return real(buffer, start, separators)

    monkeypatch.setattr(wire, "_last_end", counting)
    splitter = EventSplitter(64 * 1024 * 1024, crlf=True)  # (the "\n\n" path inlines it)
    piece = b"data: " + b"x" * 4090
    for _ in range(4096):  # 16 MB in one unfinished event
        splitter.feed(piece)
    assert sum(searched) <= 4096 * (len(piece) + 4)  # and a 4-byte window across two pieces
    assert splitter.feed(b"\n\n").endswith(b"x\n\n")


HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"


@pytest.mark.parametrize(
    ("head", "error"),
    [
        (HEAD + b"\r\n", BodyTooLarge),
        (HEAD + b"Content-Length: 999999999\r\n\r\n", BodyTooLarge),
        (HEAD + b"Content-Encoding: gzip\r\n\r\n", BodyEncoded),
    ],
    ids=["endless", "declared-too-large", "compressed"],
)
def test_a_body_is_given_up_at_its_limit(head: bytes, error: type[Exception]) -> None:
    limit = 100_000
    with hostile(Plan(head, b"x" * 65536, 64 * 1024 * 1024)) as peer:
        with (
            httpx.Client(timeout=30) as client,
            client.stream("GET", peer.url) as answer,
            pytest.raises(error),
        ):
            read_capped(answer, limit, "answer")
        assert peer.answered.wait(30)
    assert peer.hung_up and peer.sent < 32 * 1024 * 1024


def test_a_body_within_its_limit_is_read_whole() -> None:
    body = b'{"ok": true}'
    head = HEAD + b"Content-Length: %d\r\n\r\n" % len(body)
    with (
        hostile(Plan(head, b"", 0, prefix=body)) as peer,
        httpx.Client(timeout=30) as client,
        client.stream("GET", peer.url) as answer,
    ):
        assert read_capped(answer, 1000, "answer") == body


def _gateway_relay(piece: bytes) -> None:
    relay = StreamRelay(CHAT)
    for _ in range(4096):
        relay.feed(piece)


def _frame_reader(piece: bytes) -> None:
    reader = FrameReader()
    for _ in range(4096):
        list(reader.feed(piece))


def _proxy_relay(piece: bytes) -> None:
    relay = EventRelay(keep_usage=False)
    for _ in range(4096):
        relay.feed(piece)


@pytest.mark.parametrize(
    ("read", "error", "check"),
    [
        (_gateway_relay, UpstreamError, "protocol"),
        (_frame_reader, EnvelopeInvalid, "frame.size"),
        (_proxy_relay, EnvelopeInvalid, "answer.event"),
    ],
    ids=["gateway-stream", "sealed-frames", "local-proxy"],
)
def test_every_reader_of_a_peers_events_refuses_one_without_end(
    read: Callable[[bytes], None], error: type[Exception], check: str
) -> None:
    """16 MB of `data:` lines that never end an event: each reader gives up at its bound."""
    with pytest.raises(error) as raised:
        read(b"data: " + b"x" * 4090 + b"\n")
    assert check in {getattr(raised.value, "kind", None), getattr(raised.value, "check", None)}


def test_the_agent_passes_an_engine_event_without_end_on_instead_of_holding_it() -> None:
    meter = StreamMeter()
    piece = b"data: " + b"x" * 4090 + b"\n"
    passed = sum(len(meter.feed(piece)) for _ in range(4096))
    assert passed + len(meter.tail()) == 4096 * len(piece)
    assert passed >= 4096 * len(piece) - MAX_PENDING - len(piece)  # at most that held back


def test_an_event_sent_a_byte_at_a_time_is_held_in_few_buffers() -> None:
    splitter = EventSplitter(1 << 20)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for _ in range(200_000):
            splitter.feed(b"x")
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held - before < 2 * 200_000  # not an object (tens of bytes) per byte
    assert splitter.feed(b"\n\n") == b"x" * 200_000 + b"\n\n"
