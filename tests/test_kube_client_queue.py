"""The Kube client under a burst: requests beyond its connections wait their turn instead of
failing with a pool timeout (500 pools reconciled at once made every request time out waiting
for a connection, and nothing converged: e2e/bench/operatorscale.py)."""

from __future__ import annotations

import asyncio

from teeroute.kube.client import MAX_CONNECTIONS, Kube
from teeroute.kube.config import ClusterConfig

DELAY_S = 0.4
TIMEOUT_S = 2.0  # each request alone takes DELAY_S: generous slack for a loaded machine
BURST = 12 * MAX_CONNECTIONS  # about 12 turns of DELAY_S: far past TIMEOUT_S for the last


async def _slow_apiserver(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A keep-alive HTTP/1.1 server that answers every GET with `{}` after DELAY_S."""
    try:
        while await reader.readuntil(b"\r\n\r\n"):
            await asyncio.sleep(DELAY_S)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
            writer.write(b"Content-Length: 2\r\n\r\n{}")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _burst() -> list[object]:
    server = await asyncio.start_server(_slow_apiserver, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    kube = Kube(ClusterConfig(server=f"http://127.0.0.1:{port}"), timeout_s=TIMEOUT_S)
    try:
        calls = [kube.get(f"/api/v1/namespaces/n{i}") for i in range(BURST)]
        return await asyncio.gather(*calls, return_exceptions=True)
    finally:
        await kube.aclose()
        server.close()
        await server.wait_closed()


def test_a_burst_past_the_connection_limit_queues_instead_of_timing_out() -> None:
    results = asyncio.run(_burst())
    failures = [r for r in results if isinstance(r, BaseException)]
    assert not failures, f"{len(failures)} of {BURST} failed, e.g. {failures[0]!r}"
    assert results == [{}] * BURST
