"""The paced scenario's clients: N streams at once through one mode of the gateway, each a
keep-alive HTTP/1.1 connection (asyncio and httptools, as the gateway's own upstream client:
a general client would cost the shared core more per event than the agent) asking for one
streamed answer after another, counting its tokens as their events arrive.

Every answer is checked whole: its token events, its usage and (client-sealed) its receipt
must all say the number of tokens the engine generates for the request, and the stream must
end (`[DONE]`; client-sealed: every chunk opened in order, the final one, a receipt tagged
with our session's key over this request and these chunks). Client-sealed requests go in one
client session with the enclave (wire v2), opened through the gateway before the streams
start; each stream seals its next request just before it is sent.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httptools
from gatewaybench.procs import BenchError, Service, busy_seconds_by_core, cpu_seconds

from sealedbench.client import Enclave
from sealedbench.modes import CHAT, Mode, sealed_meta
from sealedbench.paced import MAX_TOKENS, Paced, body
from teeroute.client.answer import SealedReader
from teeroute.client.session import sealed_meta as meta_bytes
from teeroute.sealing import frames
from teeroute.sealing.errors import SealingError

MAX_EVENT = 64 * 1024  # a plaintext SSE event of the simulator is a few hundred bytes
READ_SIZE = 64 * 1024
STREAM_TIMEOUT_S = 120.0


class StreamBroken(Exception):
    """One answer failed a check; the message says which."""


class SseTokens:
    """Counts a chat stream's tokens (events with delta content) as its bytes arrive, and
    reads its usage and its end. Holds at most one unfinished event (MAX_EVENT)."""

    def __init__(self, on_token: Callable[[int], None]) -> None:
        self._rest = b""
        self._on_token = on_token
        self.tokens = 0
        self.usage: int | None = None
        self.done = False

    def feed(self, data: bytes) -> None:
        *events, self._rest = (self._rest + data).split(b"\n\n")
        if len(self._rest) > MAX_EVENT:
            raise StreamBroken("an SSE event over 64 KiB")
        found = 0
        for event in events:
            found += self._event(event)
        if found:
            self.tokens += found
            self._on_token(found)

    def _event(self, event: bytes) -> int:
        if not event.startswith(b"data:"):
            return 0 if not event.strip() else self._broken(event)
        data = event[5:].strip()
        if data == b"[DONE]":
            self.done = True
            return 0
        chunk = json.loads(data)
        if chunk.get("usage"):
            self.usage = chunk["usage"]["completion_tokens"]
        choices = chunk.get("choices") or []
        return 1 if choices and (choices[0].get("delta") or {}).get("content") else 0

    @staticmethod
    def _broken(event: bytes) -> int:
        raise StreamBroken(f"not an SSE data event: {event[:80]!r}")


def check(expected: int, counted: int, usage: int | None, done: bool, receipt: int | None) -> str:
    """Why one finished answer is wrong ("" when right): every count must be the engine's."""
    if not done:
        return "the stream did not end ([DONE] missing)"
    if counted != expected:
        return f"{counted} token events, the engine generates {expected}"
    if usage != expected:
        return f"usage says {usage} completion tokens, the engine generates {expected}"
    if receipt is not None and receipt != expected:
        return f"the receipt counts {receipt} output tokens, the engine generates {expected}"
    return ""


@dataclass
class Tally:
    """What the streams of one run saw, tokens counted in the measured window apart."""

    window: tuple[float, float]
    tokens_in_window: int = 0
    streams_checked: int = 0
    tokens_checked: int = 0
    bad_streams: int = 0
    first_bad: str = ""
    ttft_ms: list[float] = field(default_factory=list)
    gap_ms: list[float] = field(default_factory=list)

    def in_window(self, now: float) -> bool:
        return self.window[0] <= now < self.window[1]

    def bad(self, why: str) -> None:
        self.bad_streams += 1
        self.first_bad = self.first_bad or why


class _Response:
    """httptools callbacks for one response: a 200's body goes to `sink` as it arrives,
    another status's (bounded) is kept for the error."""

    def __init__(self, sink: Callable[[bytes], None]) -> None:
        self.sink = sink
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.error = b""
        self.complete = False

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, data: bytes) -> None:
        if self.status == 200:
            self.sink(data)
        elif len(self.error) < 300:
            self.error += data[:300]

    def on_message_complete(self) -> None:
        self.complete = True


@dataclass
class Target:
    host: str
    port: int
    key: str
    mode: Mode
    enclave: Enclave
    variant: int  # the prompt
    expected: int  # tokens the engine generates for it


def _request_bytes(target: Target) -> tuple[bytes, _Sealed | None]:
    """The request's bytes on the wire, and (client-sealed) what reads its answer."""
    content = body(target.mode.model, target.variant)
    kind = "application/json"
    sealed = None
    if target.mode.client_sealed:
        enclave = target.enclave
        session = enclave.session()
        meta = sealed_meta(target.mode.model, True, MAX_TOKENS)
        raw_meta = meta_bytes(meta, enclave.hpke_key_sha256, int(time.time()))
        content, exchange = session.seal_request(raw_meta, content, time.time())
        reader = SealedReader(
            exchange, session.receipt_key, enclave.verified, target.mode.model, 200
        )
        sealed, kind = _Sealed(reader), frames.CONTENT_TYPE
    head = (
        f"POST {CHAT} HTTP/1.1\r\nHost: {target.host}:{target.port}\r\n"
        f"Authorization: Bearer {target.key}\r\nContent-Type: {kind}\r\n"
        f"Content-Length: {len(content)}\r\n\r\n"
    )
    return head.encode() + content, sealed


class _Sealed:
    """A client-sealed answer: chunks opened in order into the token counter, the receipt
    checked at the end (the SDK's reader)."""

    def __init__(self, reader: SealedReader) -> None:
        self.reader = reader
        self.tokens: SseTokens | None = None

    def feed(self, data: bytes) -> None:
        for plain in self.reader.feed(data):
            if self.tokens is not None:
                self.tokens.feed(plain)

    def receipt_tokens(self) -> int:
        return self.reader.finish().output_tokens


class Connection:
    """One stream slot's keep-alive connection, reopened when the server closes it."""

    def __init__(self, target: Target, tally: Tally) -> None:
        self.target, self.tally = target, tally
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def answer(self) -> None:
        """One request and its whole answer, counted and checked into the tally."""
        raw, unsealer = _request_bytes(self.target)
        sent, last = time.monotonic(), [0.0]

        def on_token(count: int) -> None:
            now = time.monotonic()
            tally = self.tally
            if tally.in_window(now):
                tally.tokens_in_window += count
                if last[0]:
                    tally.gap_ms.append((now - last[0]) * 1000)
                else:
                    tally.ttft_ms.append((now - sent) * 1000)
            last[0] = now

        tokens = SseTokens(on_token)
        if unsealer is not None:
            unsealer.tokens = tokens
        keep = await self._exchange(raw, unsealer.feed if unsealer else tokens.feed)
        receipt = unsealer.receipt_tokens() if unsealer is not None else None
        why = check(self.target.expected, tokens.tokens, tokens.usage, tokens.done, receipt)
        if why:
            raise StreamBroken(why)
        self.tally.streams_checked += 1
        self.tally.tokens_checked += tokens.tokens
        if not keep:
            await self.close()

    async def _exchange(self, raw: bytes, sink: Callable[[bytes], None]) -> bool:
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(
                self.target.host, self.target.port
            )
        reader = self.reader
        response = _Response(sink)
        self.writer.write(raw)
        while not response.complete:
            data = await reader.read(READ_SIZE)
            if not data:
                raise StreamBroken("the gateway closed the connection mid-answer")
            response.parser.feed_data(data)
        if response.status != 200:
            raise StreamBroken(f"HTTP {response.status}: {response.error[:200]!r}")
        return bool(response.parser.should_keep_alive())

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None


async def _slot(target: Target, tally: Tally, start_at: float) -> None:
    """Answers one after another from `start_at` until the window ends; a broken one is
    counted and its connection replaced."""
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    connection = Connection(target, tally)
    try:
        while time.monotonic() < tally.window[1]:
            try:
                async with asyncio.timeout(STREAM_TIMEOUT_S):
                    await connection.answer()
            except (StreamBroken, SealingError, OSError, ValueError, TimeoutError) as exc:
                tally.bad(f"{type(exc).__name__}: {exc}"[:300])
                await connection.close()
            except httptools.HttpParserError as exc:  # a check raised inside its callback
                cause = exc.__cause__ or exc.__context__ or exc
                tally.bad(f"{type(cause).__name__}: {cause}"[:300])
                await connection.close()
    finally:
        await connection.close()


def snapshot(services: Mapping[str, Service]) -> dict[str, Any]:
    """CPU seconds of each measured process tree, this harness's own, busy seconds per core."""
    cpu = {name: cpu_seconds(s.pid) for name, s in services.items()}
    cpu["client"] = time.process_time()  # this process only (its children are the services)
    return {"cpu": cpu, "cores": busy_seconds_by_core(), "at": time.monotonic()}


async def _sample(window: tuple[float, float], services: Mapping[str, Service]) -> list[Any]:
    taken = []
    for at in window:
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        taken.append(snapshot(services))
    return taken


async def run(
    target: Target, streams: int, settings: Paced, services: Mapping[str, Service]
) -> dict[str, Any]:
    """One run: `streams` slots started staggered over one answer's length (so all are in
    flight when the window opens), the window, then every answer in flight finished."""
    if target.mode.client_sealed:  # the run's session, opened before the streams start
        target.enclave.session(fresh=True)
    length = settings.answer_s(target.expected)
    start = time.monotonic() + 0.2
    window = (start + length + 0.5, start + length + 0.5 + settings.seconds)
    tally = Tally(window)
    slots = [_slot(target, tally, start + i * length / streams) for i in range(streams)]
    sampler = asyncio.ensure_future(_sample(window, services))
    await asyncio.gather(*slots)
    before, after = await sampler
    for name, service in services.items():
        if not service.alive():
            raise BenchError(f"{name} died during the run:\n{service.log_tail()}")
    return {
        "streams": streams,
        "window_s": round(after["at"] - before["at"], 3),
        "tokens_in_window": tally.tokens_in_window,
        "cpu_s": {k: round(after["cpu"][k] - before["cpu"][k], 3) for k in after["cpu"]},
        "core_busy_s": {
            str(c): round(after["cores"][c] - before["cores"][c], 3) for c in after["cores"]
        },
        "streams_checked": tally.streams_checked,
        "tokens_checked": tally.tokens_checked,
        "expected_per_stream": target.expected,
        "bad_streams": tally.bad_streams,
        "first_bad": tally.first_bad,
        "ttft_ms": tally.ttft_ms,
        "gap_ms": tally.gap_ms,
    }
