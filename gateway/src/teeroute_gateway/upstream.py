"""HTTP/1.1 to miners: a keep-alive connection pool on asyncio protocols, parsed by httptools.

The proxy path (`dispatch.py`) is the only caller. A general client (httpx) costs several
hundred microseconds per request in Python; this one does what a proxy needs and nothing
else: write one request, hand back the status and headers as soon as they arrive, then the
body chunk by chunk as it arrives (with back-pressure), and reuse the connection when the
response ended cleanly.

Errors are `UpstreamError` with a `kind`: connect (nothing was sent), timeout, closed (the
peer hung up), protocol (not HTTP). `before_response` tells the caller whether any byte of
the response had arrived, which decides whether a retry is safe.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

HIGH_WATER = 256 * 1024
"""Buffered body bytes at which reading from the miner pauses (the client is slower)."""
MAX_HEAD = 64 * 1024
"""Bytes a miner may send before its status line and headers are complete; the parser holds
an unfinished header whole, so past this the answer is refused (a protocol error)."""


class UpstreamError(Exception):
    def __init__(self, kind: str, message: str, before_response: bool = True) -> None:
        super().__init__(message)
        self.kind = kind
        self.before_response = before_response


@dataclass(frozen=True, slots=True)
class Origin:
    host: str
    port: int
    tls: bool
    base_path: str
    host_header: bytes

    @classmethod
    def parse(cls, url: str) -> Origin:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        return cls(
            host=parts.hostname,
            port=port,
            tls=tls,
            base_path=parts.path.rstrip("/"),
            host_header=(parts.netloc or parts.hostname).encode(),
        )


class _Connection(asyncio.Protocol):
    """One TCP connection; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._reset()

    def _reset(self) -> None:
        loop = asyncio.get_running_loop()
        self.parser = httptools.HttpResponseParser(self)
        self.head: asyncio.Future[int] = loop.create_future()
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.waiter: asyncio.Future[None] | None = None
        self.complete = False
        self.keep_alive = False
        self.error: UpstreamError | None = None
        self.got_bytes = False
        self.paused = False
        self.head_bytes = 0

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError("protocol", f"not an HTTP response: {exc}", self._early()))
            self.abort()
            return
        if self._early():  # counted after feeding: a head and its body may share a chunk
            self.head_bytes += len(data)
            if self.head_bytes > MAX_HEAD:
                message = f"the miner's headers are larger than {MAX_HEAD} bytes"
                self._fail(UpstreamError("protocol", message))
                self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete:
            self._fail(UpstreamError("closed", "the miner closed the connection", self._early()))

    def pause_writing(self) -> None:  # requests are small; nothing to pause
        pass

    def resume_writing(self) -> None:
        pass

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        # asked here: after the message completes, the parser no longer knows
        self.keep_alive = self.parser.should_keep_alive()
        if not self.head.done():
            self.head.set_result(self.parser.get_status_code())

    def on_body(self, body: bytes) -> None:
        self.body.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and self.transport is not None and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self._wake()

    # helpers
    def _early(self) -> bool:
        return not self.head.done()

    def _fail(self, error: UpstreamError) -> None:
        if self.error is None:
            self.error = error
        if not self.head.done():
            self.head.set_exception(error)
            self.head.exception()  # retrieved: a caller that gave up must not leak a warning
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def take(self) -> bytes:
        chunk = self.body.popleft()
        self.buffered -= len(chunk)
        if self.paused and self.buffered < HIGH_WATER // 2 and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return chunk

    def reusable(self) -> bool:
        return self.complete and not self.closed and self.keep_alive

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class Response:
    """A miner's response: status and headers now, the body as it arrives."""

    def __init__(self, pool: UpstreamPool, key: Origin, conn: _Connection, status: int) -> None:
        self._pool = pool
        self._key = key
        self._conn = conn
        self.status = status
        self.headers = conn.headers
        self._done = False

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    async def chunks(self, idle_timeout_s: float) -> AsyncIterator[bytes]:
        """The body as it arrives; UpstreamError("timeout") after `idle_timeout_s` without
        a byte of it. One watchdog per body, not a timer per wait: a paced stream waits once
        per token."""
        conn = self._conn
        loop = asyncio.get_running_loop()
        watchdog = _Watchdog(conn, idle_timeout_s)
        try:
            while True:
                while conn.body:
                    yield conn.take()
                if conn.complete:
                    self._finish()
                    return
                if conn.error is not None:
                    raise conn.error
                conn.waiter = waiter = loop.create_future()
                watchdog.waiting(loop)
                try:
                    await waiter
                finally:
                    conn.waiter = None
                if not conn.body and not conn.complete and conn.error is None:
                    raise UpstreamError(
                        "timeout", "the miner stopped sending", before_response=False
                    )
        finally:  # failed, or given up on (the generator closed early): drop the connection
            watchdog.cancel()
            self.close()

    async def read(self, idle_timeout_s: float, limit: int) -> bytes:
        parts = []
        size = 0
        async for chunk in self.chunks(idle_timeout_s):
            size += len(chunk)
            if size > limit:
                self.close()
                raise UpstreamError("protocol", "the miner's response is too large", False)
            parts.append(chunk)
        return b"".join(parts)

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            self._pool.release(self._key, self._conn)

    def close(self) -> None:
        """Give up on the body: the connection is dropped (the miner sees it and stops)."""
        if not self._done:
            self._done = True
            self._conn.abort()


class _Watchdog:
    """Wakes a body's reader once `idle_s` passed since it began waiting with nothing new.
    Its one timer is re-armed only when it fires early (the body moved on since)."""

    def __init__(self, conn: _Connection, idle_s: float) -> None:
        self.conn, self.idle_s = conn, idle_s
        self.since = 0.0  # when the reader last began to wait
        self.timer: asyncio.TimerHandle | None = None

    def waiting(self, loop: asyncio.AbstractEventLoop) -> None:
        self.since = loop.time()
        if self.timer is None:
            self.timer = loop.call_at(self.since + self.idle_s, self._fire, loop)

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        self.timer = None
        waiter = self.conn.waiter
        if waiter is None or waiter.done():
            return  # not waiting now: the next wait arms it again
        due = self.since + self.idle_s
        if loop.time() >= due:
            waiter.set_result(None)
        else:
            self.timer = loop.call_at(due, self._fire, loop)

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class UpstreamPool:
    """Idle keep-alive connections per origin."""

    def __init__(
        self,
        connect_timeout_s: float = 2.0,
        max_idle_per_origin: int = 256,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.connect_timeout_s = connect_timeout_s
        self.max_idle = max_idle_per_origin
        self._idle: dict[Origin, list[_Connection]] = {}
        self._tls = tls

    async def request(
        self,
        origin: Origin,
        method: bytes,
        path: bytes,
        headers: bytes,
        body: bytes,
        head_timeout_s: float,
    ) -> Response:
        """Send one request; return once the status line and headers are in. A reused
        connection that turns out closed before answering is retried once on a fresh one
        (that failure says nothing about the miner)."""
        conn, reused = await self._acquire(origin)
        try:
            return await self._exchange(origin, conn, method, path, headers, body, head_timeout_s)
        except UpstreamError as exc:
            if not (reused and exc.kind == "closed" and exc.before_response and not conn.got_bytes):
                raise
        conn = await self._connect(origin)
        return await self._exchange(origin, conn, method, path, headers, body, head_timeout_s)

    async def _exchange(
        self,
        origin: Origin,
        conn: _Connection,
        method: bytes,
        path: bytes,
        headers: bytes,
        body: bytes,
        head_timeout_s: float,
    ) -> Response:
        if conn.transport is None:
            raise UpstreamError("connect", "the connection to the miner is not open")
        conn.transport.write(
            b"%s %s%s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n%s\r\n%s"
            % (
                method,
                origin.base_path.encode(),
                path,
                origin.host_header,
                len(body),
                headers,
                body,
            )
        )
        loop = asyncio.get_running_loop()
        timer = loop.call_later(head_timeout_s, _head_timeout, conn)
        try:
            status = await conn.head
        finally:
            timer.cancel()
        return Response(self, origin, conn, status)

    async def _acquire(self, origin: Origin) -> tuple[_Connection, bool]:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if not conn.closed:
                conn._reset()
                return conn, True
        return await self._connect(origin), False

    async def _connect(self, origin: Origin) -> _Connection:
        loop = asyncio.get_running_loop()
        tls: ssl.SSLContext | None = None
        if origin.tls:
            tls = self._tls or ssl.create_default_context()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, conn = await loop.create_connection(
                    _Connection, origin.host, origin.port, ssl=tls
                )
        except TimeoutError:
            raise UpstreamError("connect", "connecting to the miner timed out") from None
        except OSError as exc:
            raise UpstreamError("connect", f"cannot connect to the miner: {exc.strerror}") from None
        return conn

    def release(self, origin: Origin, conn: _Connection) -> None:
        if not conn.reusable():
            conn.abort()
            return
        idle = self._idle.setdefault(origin, [])
        if len(idle) < self.max_idle:
            idle.append(conn)
        else:
            conn.abort()

    def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.abort()
        self._idle.clear()


def _head_timeout(conn: _Connection) -> None:
    if not conn.head.done():
        conn._fail(UpstreamError("timeout", "the miner did not answer in time"))
        conn.abort()
