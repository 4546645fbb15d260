"""Listeners for the table's frontends, each splicing connections to a backend.

A frontend's address goes on the namespace's loopback (`ip addr add IP/32 dev lo`) before it
is bound; a connection with no ready backend, or whose backend refuses, is closed at once
(a client sees a reset, as with kube-proxy's REJECT for Services without endpoints).
"""

from __future__ import annotations

import asyncio
import itertools

from teeroute_sandbox import netns
from teeroute_sandbox.serviceproxy.table import Backend, Frontend

CHUNK = 64 * 1024
CONNECT_TIMEOUT_S = 5.0


class Forwarder:
    def __init__(self, kubernetes_ip: str) -> None:
        self._kubernetes_ip = kubernetes_ip  # already on lo; the apiserver serves it itself
        self._table: dict[Frontend, list[Backend]] = {}
        self._servers: dict[Frontend, asyncio.base_events.Server] = {}
        self._addresses: set[str] = {kubernetes_ip}
        self._turn = itertools.count()

    async def apply(self, table: dict[Frontend, list[Backend]]) -> None:
        self._table = table
        for frontend in [f for f in self._servers if f not in table]:
            self._servers.pop(frontend).close()
        for frontend in table:
            if frontend not in self._servers and frontend[0] != self._kubernetes_ip:
                await self._listen(frontend)

    async def _listen(self, frontend: Frontend) -> None:
        ip, port = frontend
        if ip not in self._addresses:
            netns.ip("addr", "replace", f"{ip}/32", "dev", "lo")
            self._addresses.add(ip)
        try:
            self._servers[frontend] = await asyncio.start_server(
                lambda r, w: self._serve(frontend, r, w), ip, port, reuse_address=True
            )
        except OSError as exc:
            print(f"service proxy: cannot listen on {ip}:{port}: {exc}", flush=True)

    def _pick(self, frontend: Frontend) -> Backend | None:
        choices = self._table.get(frontend) or []
        return choices[next(self._turn) % len(choices)] if choices else None

    async def _serve(
        self, frontend: Frontend, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        backend = self._pick(frontend)
        if backend is None:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(*backend), CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError):
            writer.close()
            return
        try:
            await _splice((reader, up_writer), (up_reader, writer))
        finally:
            up_writer.close()
            writer.close()


async def _splice(
    one: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    other: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    """Both directions until each has ended; a broken one ends the other at once (a
    half-close, EOF one way, keeps the other way open, as TCP does)."""
    pending = {asyncio.ensure_future(_pipe(*one)), asyncio.ensure_future(_pipe(*other))}
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        if not all(task.result() for task in done):
            for task in pending:
                task.cancel()
            return


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """Copy until EOF (then half-close the writer): True, or False when a side broke."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, RuntimeError):
        return False
    return True
