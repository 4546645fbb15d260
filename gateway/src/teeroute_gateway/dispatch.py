"""Sending a request to the first candidate that answers well, before the client sees a byte.

Each attempt goes to the next candidate (selection.py orders them: the next pool first). An
attempt fails on a connect error, a timeout, a broken or malformed response, 5xx or 429;
then the next candidate is tried, up to `max_attempts`. A non-streamed answer is read whole
inside the attempt, so even a miner dying mid-body is retried; a stream's attempt ends with
its first body chunk, after which the client has seen the 200 and nothing is retried.
Other statuses (4xx) are the client's problem: they end the attempts and are passed on.

Every attempt is reported to the HealthBook (which may eject the endpoint) and counted.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from teeroute_gateway.errors import (
    GatewayError,
    UpstreamFailed,
    UpstreamTimeout,
    upstream_status_error,
)
from teeroute_gateway.health import EndpointHealth, HealthBook
from teeroute_gateway.metrics import GatewayMetrics
from teeroute_gateway.requests import CHAT, InferenceRequest, upstream_body
from teeroute_gateway.selection import Candidate
from teeroute_gateway.settings import GatewaySettings
from teeroute_gateway.upstream import Origin, Response, UpstreamError, UpstreamPool

MAX_RESPONSE = 64 * 1024 * 1024
ERROR_PEEK = 4096
PATHS = {CHAT: b"/v1/chat/completions", "text_completion": b"/v1/completions"}


@dataclass(slots=True)
class Attempt:
    candidate: Candidate
    response: Response
    entry: EndpointHealth
    sent_at: float
    first_byte_at: float
    body: bytes = b""
    """Non-streamed (or error) responses: the whole body."""
    stream: AsyncIterator[bytes] | None = None
    """Streamed responses: the rest of the body, after `body` (the first chunk)."""
    parsed: dict[str, Any] | None = None
    """Non-streamed 200 responses: the body as JSON."""
    attempts: int = 1


class _Failed(Exception):
    def __init__(self, error: GatewayError) -> None:
        self.error = error


class Dispatcher:
    def __init__(
        self,
        upstream: UpstreamPool,
        health: HealthBook,
        metrics: GatewayMetrics,
        settings: GatewaySettings,
    ) -> None:
        self.upstream = upstream
        self.health = health
        self.metrics = metrics
        self.settings = settings
        self._origins: dict[str, Origin] = {}

    async def attempt(
        self,
        candidates: list[Candidate],
        request: InferenceRequest,
        max_tokens: int,
        request_id: str,
    ) -> Attempt:
        last: GatewayError | None = None
        for number, candidate in enumerate(candidates[: self.settings.max_attempts], start=1):
            try:
                found = await self._try(candidate, request, max_tokens, request_id)
            except _Failed as failed:
                last = failed.error
                continue
            found.attempts = number
            return found
        raise last or UpstreamFailed("no candidate to try", code="no_candidate")

    async def _try(
        self, candidate: Candidate, request: InferenceRequest, max_tokens: int, request_id: str
    ) -> Attempt:
        endpoint = candidate.endpoint
        body = upstream_body(request, candidate.backend.upstream_model, max_tokens)
        headers = b"Content-Type: application/json\r\nX-Request-Id: %s\r\n" % request_id.encode()
        if request.stream:
            headers += b"Accept: text/event-stream\r\n"
        entry = self.health.started(endpoint.key, endpoint.pool)
        sent = time.perf_counter()
        try:
            response = await self.upstream.request(
                self._origin(endpoint.url),
                b"POST",
                PATHS[request.kind],
                headers,
                body,
                self.settings.first_byte_timeout_s,
            )
            first = time.perf_counter()
            found = Attempt(candidate, response, entry, sent, first)
            if response.status == 429 or response.status >= 500:
                peek = await response.read(self.settings.idle_timeout_s, MAX_RESPONSE)
                self._failed(
                    entry, candidate, f"status_{'429' if response.status == 429 else '5xx'}"
                )
                raise _Failed(
                    upstream_status_error(response.status, _message(peek, response.status))
                )
            await self._read(found, request)
        except UpstreamError as exc:
            self._failed(entry, candidate, exc.kind)
            raise _Failed(_as_error(exc)) from None
        return found

    async def _read(self, found: Attempt, request: InferenceRequest) -> None:
        response = found.response
        if request.stream and response.status == 200:
            found.stream = response.chunks(self.settings.idle_timeout_s)
            found.body = await anext(found.stream, b"")
            return
        found.body = await response.read(self.settings.idle_timeout_s, MAX_RESPONSE)
        if response.status == 200:
            found.parsed = _object(found.body)
            if found.parsed is None:
                raise UpstreamError("protocol", "the miner's answer is not a JSON object", False)

    def succeeded(self, attempt: Attempt) -> None:
        self.health.finished(attempt.entry, ok=True)
        self.metrics.attempts.labels(attempt.candidate.backend.pool.key, "ok").inc()

    def failed_late(self, attempt: Attempt, kind: str) -> None:
        """A stream broke after the client got the 200."""
        self._failed(attempt.entry, attempt.candidate, kind)

    def _failed(self, entry: EndpointHealth, candidate: Candidate, kind: str) -> None:
        pool = candidate.backend.pool.key
        self.metrics.attempts.labels(pool, kind).inc()
        if self.health.finished(entry, ok=False):
            self.metrics.ejections.labels(pool).inc()

    def _origin(self, url: str) -> Origin:
        found = self._origins.get(url)
        if found is None:
            found = self._origins[url] = Origin.parse(url)
        return found


def _object(body: bytes) -> dict[str, Any] | None:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _message(body: bytes, status: int) -> str:
    try:
        error = orjson.loads(body).get("error")
        message = error.get("message") if isinstance(error, dict) else error
    except (orjson.JSONDecodeError, AttributeError):
        message = None
    text = message if isinstance(message, str) else ""
    return f"the miner answered {status}" + (f": {text[:200]}" if text else "")


def _as_error(exc: UpstreamError) -> GatewayError:
    if exc.kind == "timeout":
        return UpstreamTimeout(f"no miner answered in time: {exc}", code="upstream_timeout")
    return UpstreamFailed(f"no miner could serve the request: {exc}", code=f"upstream_{exc.kind}")
