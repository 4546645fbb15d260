"""The ASGI app (Starlette): thin routes that parse a request, call the pure modules and pace
the answer with asyncio sleeps. Every error leaves as an OpenAI error body.

    GET  /health                200, empty (as vLLM)
    GET  /v1/models             the served models, OpenAI list shape
    POST /v1/chat/completions   chat, streamed (SSE) or not
    POST /v1/completions        text completion, streamed (SSE) or not

With `--api-key-env`, every /v1/ request must bear the key first (auth.py).

A client that disconnects mid-stream cancels the stream (Starlette listens for the
disconnect), so no further tokens are sent or waited for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import count
from typing import Any
from uuid import uuid4

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from teeroute_engine_sim.auth import RequireApiKey, api_key
from teeroute_engine_sim.errors import (
    EngineError,
    MethodNotAllowed,
    RouteNotFound,
    SimulatedFailure,
)
from teeroute_engine_sim.failures import fails
from teeroute_engine_sim.generation import generate, request_digest
from teeroute_engine_sim.pacing import token_due
from teeroute_engine_sim.responses import (
    dumps,
    empty_event,
    full_response,
    response_id,
    stream_events,
)
from teeroute_engine_sim.settings import EngineSettings
from teeroute_engine_sim.validation import CompletionRequest, parse_chat, parse_text

OWNER = "teeroute-engine-sim"
JSON = "application/json"
SSE_HEADERS = {"Cache-Control": "no-cache"}

Parser = Callable[[bytes, Sequence[str]], CompletionRequest]


class Engine:
    """The routes' state: settings, the request counter for --fail-rate, the requests in
    flight for --load-ttft-ms, the models body."""

    def __init__(self, settings: EngineSettings) -> None:
        self.settings = settings
        self._sequence = count()
        self._inflight = 0
        """Completion requests being answered (for `load_ttft_ms`)."""
        created = int(time.time())
        self._models = dumps(
            {
                "object": "list",
                "data": [
                    {"id": name, "object": "model", "created": created, "owned_by": OWNER}
                    for name in settings.models
                ],
            }
        )

    async def health(self, request: Request) -> Response:
        return Response(status_code=200)

    async def models(self, request: Request) -> Response:
        return Response(self._models, media_type=JSON)

    async def chat(self, request: Request) -> Response:
        return await self._complete(request, parse_chat)

    async def text(self, request: Request) -> Response:
        return await self._complete(request, parse_text)

    async def _complete(self, request: Request, parse: Parser) -> Response:
        arrived = time.monotonic()
        settings = self.settings
        parsed = parse(await request.body(), settings.models)
        if fails(settings.seed, next(self._sequence), settings.fail_rate):
            raise SimulatedFailure
        digest = request_digest(
            seed=settings.seed, model=parsed.model, request_seed=parsed.seed, prompt=parsed.prompt
        )
        completion = generate(digest, parsed.max_tokens, parsed.stop)
        identifier, created = response_id(parsed, uuid4().hex), int(time.time())
        self._inflight += 1
        ttft_ms = settings.ttft_ms + settings.load_ttft_ms * (self._inflight - 1)
        if parsed.stream:
            events = stream_events(parsed, completion, identifier, created)
            pad = empty_event(parsed, identifier, created) if settings.pad_empty_ms > 0 else b""
            paced = self._paced(events, Pace(arrived, ttft_ms, pad))
            return StreamingResponse(paced, media_type="text/event-stream", headers=SSE_HEADERS)
        try:
            await self._until(Pace(arrived, ttft_ms), completion.completion_tokens - 1)
        finally:
            self._inflight -= 1
        body = full_response(parsed, completion, identifier, created)
        return Response(dumps(body), media_type=JSON)

    async def _paced(self, events: Iterator[tuple[int, bytes]], pace: Pace) -> AsyncIterator[bytes]:
        """Events as they fall due. Paced, each token's events leave in their own write, even
        when the loop fell behind the pace (as an engine's steps: one event per token per
        stream; the paced benchmark counts on it); unpaced, the whole stream is one write,
        which spares the server a send per token without changing the SSE. The role delta
        leaves with the first token, or at once (`role_first`); a padding engine sends empty
        deltas while the first token is not due."""
        ready: list[bytes] = []
        paced, current = self.settings.tokens_per_s > 0, 0
        try:
            for due_index, event in events:
                index = due_index if self.settings.role_first else max(due_index, 0)
                delay = self._delay(pace, index)
                if ready and (delay > 0 or (paced and index != current)):
                    yield b"".join(ready)
                    ready.clear()
                if delay > 0 and pace.pad and index == 0:
                    async for padding in self._padding(pace):
                        yield padding
                elif delay > 0:
                    await asyncio.sleep(delay)
                ready.append(event)
                current = index
            yield b"".join(ready)
        finally:
            self._inflight -= 1

    async def _padding(self, pace: Pace) -> AsyncIterator[bytes]:
        """Empty deltas every `pad_empty_ms` until the first token is due."""
        step = self.settings.pad_empty_ms / 1000
        while (left := self._delay(pace, 0)) > 0:
            yield pace.pad
            await asyncio.sleep(min(step, left))

    async def _until(self, pace: Pace, index: int) -> None:
        delay = self._delay(pace, index)
        if delay > 0:
            await asyncio.sleep(delay)

    def _delay(self, pace: Pace, index: int) -> float:
        """Seconds until event `index` is due (-1, the role delta sent at once: now)."""
        if index < 0:
            return 0.0
        due = pace.arrived + token_due(index, pace.ttft_ms, self.settings.tokens_per_s)
        return due - time.monotonic()


@dataclass(frozen=True, slots=True)
class Pace:
    """One request's timing: when it arrived, its time to first token (load included), the
    padding event (empty: none)."""

    arrived: float
    ttft_ms: float
    pad: bytes = b""


def create_app(settings: EngineSettings) -> Starlette:
    engine = Engine(settings)
    routes = [
        Route("/health", engine.health, methods=["GET"]),
        Route("/v1/models", engine.models, methods=["GET"]),
        Route("/v1/chat/completions", engine.chat, methods=["POST"]),
        Route("/v1/completions", engine.text, methods=["POST"]),
    ]
    handlers: dict[Any, Any] = {
        EngineError: _engine_error,
        HTTPException: _http_error,
        Exception: _crash,
    }
    key = api_key(settings)
    middleware = [Middleware(RequireApiKey, key=key)] if key is not None else []
    return Starlette(routes=routes, exception_handlers=handlers, middleware=middleware)


def error_response(error: EngineError, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(error.body()), error.status, headers, JSON)


async def _engine_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, EngineError):
        return error_response(exc)
    return await _crash(request, exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Routing errors (Starlette raises them for unknown paths and wrong methods)."""
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    headers = exc.headers if isinstance(exc, HTTPException) else None
    if status == 405:
        error: EngineError = MethodNotAllowed(f"{request.method} is not allowed here.")
    else:
        error = RouteNotFound(f"No endpoint {request.url.path}.")
    return error_response(error, dict(headers) if headers else None)


async def _crash(request: Request, exc: Exception) -> Response:
    """A bug, not a simulated failure: still an OpenAI body; the server logs the traceback."""
    error = EngineError("The engine simulator hit an internal error.")
    return error_response(error)
