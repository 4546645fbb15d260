"""Sending a request to the first candidate that answers well, before the client sees a byte.

Each attempt goes to the next candidate (selection.py orders them: the next pool first). An
attempt fails on a connect error, a timeout, a broken or malformed response, 5xx or 429;
then the next candidate is tried, up to `max_attempts`. A non-streamed answer is read whole
inside the attempt, so even a miner dying mid-body is retried; a stream's attempt ends with
its first body chunk, after which the client has seen the 200 and nothing is retried.
Other statuses (4xx) are the client's problem: they end the attempts and are passed on,
except where the gateway sealed the request itself and the enclave refused it (421: its key
changed; a `session_*` or `sealed_*` refusal), which are the endpoint's failures.

Sealed hops (wire v2) go in the gateway's session with the enclave (sessions.py, hop_v2.py):
the first request to an admission opens it (a HELLO signed by the gateway key), and a 409
`session_unknown` (the agent restarted) opens it again and sends the request once more. A
plain request carries `teeroute-gateway-auth`, signed by the gateway key (`gatewayKeyFile`)
for this method, path and body to the candidate's attested HPKE key: enclave agents answer
no one else (teeroute.sealing.gateway_auth). An agent refusing either (401/403
`gateway_auth_*`: it pins another key, or its clock is off) is the endpoint's failure too.

Every attempt is reported to the HealthBook (which may eject the endpoint) and counted.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Any

import orjson

from teeroute.sealing import frames, gateway_auth
from teeroute.sealing.errors import SealingError
from teeroute_gateway import gateway_key, hop_v2, sessions
from teeroute_gateway.catalog import Endpoint
from teeroute_gateway.client_sealed import ClientRoutes
from teeroute_gateway.errors import (
    GatewayError,
    UpstreamFailed,
    UpstreamTimeout,
    upstream_status_error,
)
from teeroute_gateway.health import EndpointHealth, HealthBook
from teeroute_gateway.metrics import GatewayMetrics
from teeroute_gateway.requests import CHAT, InferenceRequest, upstream_body
from teeroute_gateway.sealed import Hop, hop_mode
from teeroute_gateway.selection import Candidate
from teeroute_gateway.settings import GatewaySettings
from teeroute_gateway.upstream import Origin, Response, UpstreamError, UpstreamPool

MAX_RESPONSE = 64 * 1024 * 1024
ERROR_PEEK = 4096
PATHS = {CHAT: b"/v1/chat/completions", "text_completion": b"/v1/completions"}
SEALED_REFUSALS = ("session_", "sealed_", "unsupported_wire_version")
"""The agent's refusals of a gateway-sealed request: the hop's failure (the gateway sealed
it), never the client's."""


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
    hop: Hop = field(default_factory=lambda: Hop("plain"))
    """How the request went (sealed.py): its frames and receipt as they come back."""
    passthrough: bool = False
    """A client-sealed answer: relay `body` and `stream` as they are (unopened frames)."""
    peeked: bytes | None = None
    """A sealed hop's error body, already read (to see whether the session was gone)."""
    load: int = 1
    """The endpoint's requests in flight when this one was sent, itself included (speed.py)."""
    answered_at: float = 0.0
    """perf_counter when a whole answer had been read (streams: when the first chunk was)."""


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
        key_file = settings.gateway_key_file
        self.gateway_key = None if key_file is None else gateway_key.load(key_file)
        """Signs each plain request to a miner and each session HELLO; None: unsigned
        (agents refuse them)."""
        self.sessions = self._session_pool()
        self.client_routes = ClientRoutes()

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
        entry = self.health.started(endpoint.key, endpoint.pool)
        load = entry.inflight
        sent = time.perf_counter()
        try:
            response, hop, peeked = await self._send(candidate, request, max_tokens, request_id)
            first = time.perf_counter()
            found = Attempt(
                candidate, response, entry, sent, first, hop=hop, peeked=peeked, load=load
            )
            if response.status == 429 or response.status >= 500:
                peek = await response.read(self.settings.idle_timeout_s, MAX_RESPONSE)
                self._failed(
                    entry, candidate, f"status_{'429' if response.status == 429 else '5xx'}"
                )
                raise _Failed(
                    upstream_status_error(response.status, _message(peek, response.status))
                )
            await self._read(found, request)
            found.answered_at = time.perf_counter()
            if response.status in (401, 403) and _refused_us(found.body):
                raise UpstreamError("auth", "the enclave refused the gateway's authorization")
        except UpstreamError as exc:
            self._failed(entry, candidate, exc.kind)
            raise _Failed(_as_error(exc)) from None
        return found

    async def _send(
        self, candidate: Candidate, request: InferenceRequest, max_tokens: int, request_id: str
    ) -> tuple[Response, Hop, bytes | None]:
        endpoint = candidate.endpoint
        mode = hop_mode(candidate.model.spec.sealing, request.sealed is not None, endpoint)
        if mode is None:  # plan() leaves such candidates out
            raise UpstreamError("sealed", "no attested key to seal to")
        if mode != "plain":
            return await self._send_sealed(mode, candidate, request, max_tokens, request_id)
        hop, body, headers = outgoing(candidate, request, max_tokens)
        headers += b"X-Request-Id: %s\r\n" % request_id.encode()
        origin = self.origin(endpoint.url)
        headers += self._authorization(origin, PATHS[request.kind], body, endpoint)
        response = await self.upstream.request(
            origin, b"POST", PATHS[request.kind], headers, body, self.settings.first_byte_timeout_s
        )
        return response, hop, None

    async def _send_sealed(
        self,
        mode: str,
        candidate: Candidate,
        request: InferenceRequest,
        max_tokens: int,
        request_id: str,
    ) -> tuple[Response, Hop, bytes | None]:
        """A sealed attempt in the endpoint's session (hop_v2.py); one the enclave no longer
        knows (409 session_unknown: it restarted) is opened again and the request sent once
        more. The session authenticates the gateway: no per-request signature."""
        origin = self.origin(candidate.endpoint.url)
        headers = hop_v2.headers(request_id, candidate.backend.upstream_model, request.stream)
        for again in (False, True):
            pooled = await self.sessions.get(candidate.endpoint)
            try:
                hop, body = hop_v2.sealed_outgoing(
                    pooled, mode, candidate, request, max_tokens, request_id
                )
            except SealingError as exc:
                raise UpstreamError("sealed", f"the request could not be sealed: {exc}") from None
            timeout = self.settings.first_byte_timeout_s
            path = PATHS[request.kind]
            response = await self.upstream.request(origin, b"POST", path, headers, body, timeout)
            if response.status != 409 or again:
                return response, hop, None
            peeked = await response.read(self.settings.idle_timeout_s, sessions.MAX_ERROR)
            if not sessions.Refusal.of(409, peeked).session_gone:
                return response, hop, peeked
            self.sessions.forget(pooled)
        raise AssertionError("unreachable")

    def _session_pool(self) -> sessions.SessionPool:
        """The sessions with enclaves; HELLOs signed by the gateway key (none without one:
        agents then refuse them, as they refuse unsigned requests)."""
        key = self.gateway_key
        public = key.public_key().public_bytes_raw() if key is not None else b""
        handshake = sessions.handshake_over(
            self.upstream, self.origin, self.settings.first_byte_timeout_s
        )
        return sessions.SessionPool(
            handshake,
            sessions.gateway_initiator(public),
            key.sign if key is not None else None,
            on_open=lambda endpoint: self.metrics.sessions.labels(endpoint.pool).inc(),
        )

    def post_frames(self, endpoint: Endpoint, path: bytes, body: bytes) -> Awaitable[bytes]:
        """POSTs wire-v2 bytes to an endpoint (a client HELLO, a roots flush): its answer."""
        return sessions.post_frames(
            self.upstream, self.origin(endpoint.url), path, body, self.settings.first_byte_timeout_s
        )

    def _authorization(self, origin: Origin, path: bytes, body: bytes, endpoint: Endpoint) -> bytes:
        """The `teeroute-gateway-auth` header line for this request to this endpoint's
        attested key (an unattested endpoint has none: no agent would take it)."""
        if self.gateway_key is None or not endpoint.hpke_key_sha256:
            return b""  # nothing to bind it to: no enclave agent would take it (25 µs saved)
        value = gateway_auth.sign(
            self.gateway_key,
            "POST",
            (origin.base_path.encode() + path).decode(),
            body,
            endpoint.hpke_key_sha256,
            time.time_ns() // 1_000_000,
        )
        return b"%s: %s\r\n" % (gateway_auth.HEADER.encode(), value.encode())

    async def _read(self, found: Attempt, request: InferenceRequest) -> None:
        response = found.response
        if found.hop.mode != "plain":
            await self._read_sealed(found, request)
            return
        if request.stream and response.status == 200:
            found.stream = response.chunks(self.settings.idle_timeout_s)
            found.body = await anext(found.stream, b"")
            return
        found.body = await response.read(self.settings.idle_timeout_s, MAX_RESPONSE)
        if response.status == 200:
            found.parsed = _object(found.body)
            if found.parsed is None:
                raise UpstreamError("protocol", "the miner's answer is not a JSON object", False)

    async def _read_sealed(self, found: Attempt, request: InferenceRequest) -> None:
        response, hop = found.response, found.hop
        kind = (response.header(b"content-type") or b"").decode("latin-1")
        if not frames.looks_v2(kind):
            # the agent's own error, in clear (no content in it); a 200 must be sealed
            if response.status == 200:
                raise UpstreamError("protocol", "the miner did not seal its answer", False)
            peeked = found.peeked
            if peeked is None:
                peeked = await response.read(self.settings.idle_timeout_s, MAX_RESPONSE)
            found.body = peeked
            if response.status == 421:  # sealed to a key the enclave no longer holds
                raise UpstreamError("sealed", "the enclave's key changed", False)
            refusal = sessions.Refusal.of(response.status, found.body)
            if hop.mode == "gateway" and refusal.type.startswith(SEALED_REFUSALS):
                # our own request, sealed just now: the hop failed, not the client
                message = f"the enclave refused the gateway's sealed request ({refusal})"
                raise UpstreamError("sealed", message, False)
            return
        chunks = response.chunks(self.settings.idle_timeout_s)
        if hop.mode == "client":
            found.passthrough = True
            found.stream = hop.inspected(chunks)
            found.body = await anext(found.stream, b"")
        elif request.stream and response.status == 200:
            found.stream = hop.opened(chunks)
            found.body = await anext(found.stream, b"")
        else:
            found.body = hop.open_all(
                await response.read(self.settings.idle_timeout_s, MAX_RESPONSE)
            )
            if response.status == 200:
                found.parsed = _object(found.body)
                if found.parsed is None:
                    raise UpstreamError(
                        "protocol", "the miner's answer is not a JSON object", False
                    )

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

    def origin(self, url: str) -> Origin:
        found = self._origins.get(url)
        if found is None:
            found = self._origins[url] = Origin.parse(url)
        return found


def outgoing(
    candidate: Candidate, request: InferenceRequest, max_tokens: int
) -> tuple[Hop, bytes, bytes]:
    """The hop, body and headers for sending `request` to this candidate in plain (sealed
    hops: hop_v2.sealed_outgoing)."""
    body = upstream_body(request, candidate.backend.upstream_model, max_tokens)
    accept = b"Accept: text/event-stream\r\n" if request.stream else b""
    return Hop("plain"), body, b"Content-Type: application/json\r\n" + accept


def _object(body: bytes) -> dict[str, Any] | None:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _error_type(body: bytes) -> str | None:
    try:
        error = orjson.loads(body).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    kind = error.get("type") if isinstance(error, dict) else None
    return kind if isinstance(kind, str) else None


def _refused_us(body: bytes) -> bool:
    """Whether an agent's error refuses the gateway's authorization (not the client)."""
    kind = _error_type(body)
    return kind is not None and kind.startswith("gateway_auth_")


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
