"""The upstream HTTP/1.1 pool against real sockets: reuse, honest errors, timeouts."""

from __future__ import annotations

import asyncio

import pytest

from teeroute_gateway.upstream import Origin, UpstreamError, UpstreamPool

BODY = b'{"ok":true}'


async def http_server(
    answer: bytes | None, accepted: list[int], close_after: bool = False
) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    ),
                    0,
                )
                await reader.readexactly(length)
                if answer is None:
                    await asyncio.sleep(30)  # never answers
                writer.write(answer)
                await writer.drain()
                if close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def ok(extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(BODY), extra, BODY)


async def _requests(
    answer: bytes | None, n: int, close_after: bool = False, **pool_kw: float
) -> tuple[list[bytes], int]:
    accepted: list[int] = []
    server = await http_server(answer, accepted, close_after)
    port = server.sockets[0].getsockname()[1]
    pool = UpstreamPool(**pool_kw)
    origin = Origin.parse(f"http://127.0.0.1:{port}")
    bodies = []
    try:
        for _ in range(n):
            response = await pool.request(origin, b"POST", b"/v1/x", b"", b"{}", head_timeout_s=0.5)
            bodies.append(await response.read(1.0, 1 << 20))
    finally:
        pool.close()
        server.close()
    return bodies, len(accepted)


def test_sequential_requests_reuse_one_connection() -> None:
    bodies, connections = asyncio.run(_requests(ok(), 50))
    assert bodies == [BODY] * 50 and connections == 1


def test_a_server_that_closes_after_each_answer_gets_a_new_connection_each_time() -> None:
    bodies, connections = asyncio.run(_requests(ok(b"Connection: close\r\n"), 5, close_after=True))
    assert bodies == [BODY] * 5 and connections == 5


def test_nothing_listening_is_a_connect_error() -> None:
    async def go() -> None:
        pool = UpstreamPool(connect_timeout_s=1)
        await pool.request(
            Origin.parse("http://127.0.0.1:9"), b"GET", b"/", b"", b"", head_timeout_s=1
        )

    with pytest.raises(UpstreamError) as raised:
        asyncio.run(go())
    assert raised.value.kind == "connect" and raised.value.before_response


def test_a_silent_server_is_a_timeout_before_the_response() -> None:
    with pytest.raises(UpstreamError) as raised:
        asyncio.run(_requests(None, 1))
    assert raised.value.kind == "timeout" and raised.value.before_response


def test_garbage_is_a_protocol_error() -> None:
    with pytest.raises(UpstreamError) as raised:
        asyncio.run(_requests(b"SSH-2.0-OpenSSH\r\n\r\n", 1))
    assert raised.value.kind == "protocol"


@pytest.mark.parametrize("url", ["ftp://host/", "http://", "not a url"])
def test_only_http_urls_are_origins(url: str) -> None:
    with pytest.raises(ValueError):
        Origin.parse(url)


async def _trickle(gaps_s: list[float], idle_timeout_s: float) -> list[bytes]:
    """A chunked answer whose pieces come after `gaps_s` of silence each, read with
    `idle_timeout_s`: the pieces read before the body ended or timed out."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(2)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for gap in gaps_s:
            await asyncio.sleep(gap)
            writer.write(b"2\r\nok\r\n")
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(5)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    origin = Origin.parse(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
    pool = UpstreamPool()
    got: list[bytes] = []
    try:
        response = await pool.request(origin, b"POST", b"/v1/x", b"", b"{}", head_timeout_s=1)
        async for piece in response.chunks(idle_timeout_s):
            got.append(piece)
    finally:
        pool.close()
        server.close()
    return got


def test_a_body_that_keeps_coming_is_read_past_the_idle_timeout() -> None:
    # 8 pieces 0.1 s apart: twice the idle timeout in all, never that long silent
    assert asyncio.run(_trickle([0.1] * 8, idle_timeout_s=0.4)) == [b"ok"] * 8


def test_a_miner_that_stops_mid_body_is_a_timeout_after_the_idle_time() -> None:
    got: list[bytes] = []

    async def go() -> None:
        got.extend(await _trickle([0.1, 0.1, 2.0], idle_timeout_s=0.4))

    with pytest.raises(UpstreamError) as raised:
        asyncio.run(go())
    assert raised.value.kind == "timeout" and not raised.value.before_response
