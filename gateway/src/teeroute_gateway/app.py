"""The gateway's ASGI application: routes requests to handlers; errors become OpenAI bodies.

    POST /v1/chat/completions, /v1/completions   inference (inference.py), API key
    GET  /v1/models                                public: models, prices, TEE types
    GET  /v1/attestations?model=M                  public: current evidence of M's endpoints
    POST /v1/attestations {model, nonce}           API key: fresh evidence for the client's
                                                   own nonce (challenges.py; sealed mode)
    POST /v1/sessions (a client HELLO frame)       API key: opens the client's own session
                                                   with an enclave (client_sessions.py)
    POST /v1/gateway/attestation {nonce}           public: the gateway's own evidence, bound
                                                   to its TLS key (identity.py; tee not off)
    GET  /v1/generation?id=ID                      the key's own usage record of one request
    GET  /v1/miners[?format=weights|bittensor]     admin: the scoreboard (docs/scores.md)
    GET  /v1/settlement?from=&to=                  admin: usage and amounts per pool
    GET  /healthz, /readyz, /metrics               probes and Prometheus
    GET  /openapi.json                             public: this API's OpenAPI document

The lifespan (startup) is in `lifecycle.py`; this module only dispatches.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from teeroute_gateway import challenges, client_sessions, identity, listings, openapi, reports
from teeroute_gateway.asgi import (
    ClientGone,
    Receive,
    Scope,
    Send,
    bearer,
    body_deadline,
    read_body,
    respond,
    respond_error,
)
from teeroute_gateway.errors import (
    BadRequest,
    GatewayError,
    MethodNotAllowed,
    NotFound,
    Unauthorized,
    Unavailable,
)
from teeroute_gateway.inference import InferenceHandler
from teeroute_gateway.ledger import LedgerError
from teeroute_gateway.lifecycle import Lifecycle
from teeroute_gateway.overload import Gate
from teeroute_gateway.requests import CHAT, COMPLETION

log = logging.getLogger(__name__)
# probes and the static API document: never queued or refused for load
UNGATED = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})
Handler = Callable[[Scope, Receive, Send], Awaitable[None]]


class GatewayApp:
    def __init__(
        self, lifecycle: Lifecycle, gateway_identity: identity.GatewayIdentity | None = None
    ) -> None:
        self.lifecycle = lifecycle
        self.gateway_identity = gateway_identity
        self._inference: InferenceHandler | None = None
        self._gate: Gate | None = None  # made from the settings once services exist
        self._rng = random.Random()  # noqa: S311  # sampling endpoints, not secrets
        self.routes: dict[tuple[str, str], Handler] = {
            ("POST", "/v1/chat/completions"): self._chat,
            ("POST", "/v1/completions"): self._completion,
            ("GET", "/v1/models"): self._models,
            ("GET", "/v1/attestations"): self._attestations,
            ("POST", "/v1/attestations"): self._challenge,
            ("POST", "/v1/gateway/attestation"): self._gateway_attestation,
            ("POST", "/v1/sessions"): self._client_session,
            ("GET", "/v1/generation"): self._generation,
            ("GET", "/v1/miners"): self._miners,
            ("GET", "/v1/settlement"): self._settlement,
            ("GET", "/healthz"): self._healthz,
            ("GET", "/readyz"): self._readyz,
            ("GET", "/metrics"): self._metrics,
            ("GET", "/openapi.json"): self._openapi,
        }
        self.paths = {path for _, path in self.routes}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.lifecycle.lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope["path"].rstrip("/") or "/"
        handler = self.routes.get((scope["method"], path))
        try:
            if handler is None:
                if path in self.paths:
                    raise MethodNotAllowed(f"{scope['method']} is not allowed on {path}")
                raise NotFound(f"no route {scope['method']} {path}", code="unknown_url")
            await self._admitted(path, handler, scope, receive, send)
        except GatewayError as exc:
            await respond_error(send, exc)
        except ClientGone:
            return
        except LedgerError:
            log.exception("ledger unavailable on %s", path)
            await _last_word(
                send,
                Unavailable(
                    "accounts cannot be checked right now",
                    code="ledger_unavailable",
                    headers={"Retry-After": "5"},
                ),
            )
        except Exception:  # a bug: say so in the API's shape, keep the details in the log
            log.exception("unexpected error on %s", path)
            await _last_word(send, GatewayError("internal error", code="internal_error"))

    async def _admitted(
        self, path: str, handler: Handler, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Run `handler` in one of the gate's slots, taken once its body is in, which must be
        by a deadline (overload.py, docs/gateway-limits.md); probes and /openapi.json run at
        once, whatever the load."""
        if path in UNGATED:
            await handler(scope, receive, send)
            return
        settings = self.services.settings
        if self._gate is None:
            self._gate = Gate.from_settings(settings)
            self.services.metrics.admission = self._gate.load  # read at scrape time
        timed = body_deadline(receive, settings.body_read_timeout_s)
        async with self._gate.admitting(scope, timed) as admitted:
            await handler(scope, admitted, send)

    @property
    def services(self) -> Any:
        services = self.lifecycle.services
        if services is None:
            raise Unavailable("the gateway is starting", code="starting")
        return services

    async def _chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._handler()(scope, receive, send, CHAT)

    async def _completion(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._handler()(scope, receive, send, COMPLETION)

    def _handler(self) -> InferenceHandler:
        if self._inference is None:
            self._inference = InferenceHandler(self.services)
        return self._inference

    async def _models(self, scope: Scope, receive: Receive, send: Send) -> None:
        s = self.services
        body = listings.models(s.catalog, dt.datetime.now(dt.UTC), s.settings.allow_unattested)
        await respond(send, 200, orjson.dumps(body))

    async def _attestations(self, scope: Scope, receive: Receive, send: Send) -> None:
        s = self.services
        name = _query(scope).get("model")
        if not name:
            raise BadRequest("the model query parameter is required", param="model")
        model = s.catalog.models.get(name)
        if model is None:
            raise NotFound(
                f"the model {name} does not exist", code="model_not_found", param="model"
            )
        await respond(
            send, 200, orjson.dumps(listings.attestations(model, dt.datetime.now(dt.UTC)))
        )

    async def _challenge(self, scope: Scope, receive: Receive, send: Send) -> None:
        s = self.services
        account = await s.keys.account(bearer(scope))
        name, nonce = challenges.parse_challenge(
            await read_body(scope, receive, challenges.MAX_DOCUMENT)
        )
        model = s.catalog.models.get(name)
        if model is None:
            raise NotFound(
                f"the model {name} does not exist", code="model_not_found", param="model"
            )
        await challenges.charge(s.limiter, account.id, model)
        targets = challenges.sealable_endpoints(model, dt.datetime.now(dt.UTC), self._rng)
        answer = await challenges.challenge(s.dispatcher, targets, nonce)
        await respond(send, 200, orjson.dumps({"model": name, **answer}))

    async def _client_session(self, scope: Scope, receive: Receive, send: Send) -> None:
        await client_sessions.open_client_session(self.services, scope, receive, send)

    async def _gateway_attestation(self, scope: Scope, receive: Receive, send: Send) -> None:
        me = identity.attested(self.gateway_identity)
        nonce = identity.parse_nonce(await read_body(scope, receive, identity.MAX_BODY))
        await respond(send, 200, orjson.dumps(await identity.fresh_document(me, nonce)))

    async def _generation(self, scope: Scope, receive: Receive, send: Send) -> None:
        s = self.services
        account = await s.keys.account(bearer(scope))
        rid = _query(scope).get("id", "")
        record = await s.ledger.usage(rid) if rid else None
        if record is None or record.account_id != account.id:
            raise NotFound(
                "no such generation for this key", code="generation_not_found", param="id"
            )
        found = _record(record)  # + the receipt's inclusion proof, once a signed root covers it
        found["receipt_proof"] = _json_or_text(await s.ledger.receipt_proof(rid))
        await respond(send, 200, orjson.dumps({"data": found}))

    async def _miners(self, scope: Scope, receive: Receive, send: Send) -> None:
        s = self.services
        s.keys.require_admin(bearer(scope))
        board = listings.scoreboard(s.catalog, s.health, time.monotonic())
        shape = _query(scope).get("format")
        if shape in ("weights", "bittensor"):
            board = listings.weights_view(board, s.catalog, shape)
        await respond(send, 200, orjson.dumps(board))

    async def _settlement(self, scope: Scope, receive: Receive, send: Send) -> None:
        s = self.services
        s.keys.require_admin(bearer(scope))
        query = _query(scope)
        start, end = _period(query.get("from"), query.get("to"))
        rows = await s.ledger.settlement(start, end)
        await respond(
            send,
            200,
            orjson.dumps(
                {"from": start, "to": end, "data": [reports.settlement_row(r) for r in rows]}
            ),
        )

    async def _healthz(self, scope: Scope, receive: Receive, send: Send) -> None:
        await respond(send, 200, b'{"status":"ok"}')

    async def _readyz(self, scope: Scope, receive: Receive, send: Send) -> None:
        services = self.lifecycle.services
        if services is None or not services.ready:
            raise Unavailable("the gateway has no catalog yet", code="not_ready")
        await respond(send, 200, b'{"status":"ready"}')

    async def _openapi(self, scope: Scope, receive: Receive, send: Send) -> None:
        await respond(send, 200, openapi.encoded())

    async def _metrics(self, scope: Scope, receive: Receive, send: Send) -> None:
        s = self.services
        _require_scrape_token(s.settings.metrics_token_sha256, bearer(scope))
        body = generate_latest(s.metrics.registry)
        await respond(send, 200, body, [(b"content-type", CONTENT_TYPE_LATEST.encode())])


def _require_scrape_token(expected_sha256: str, given: str | None) -> None:
    """/metrics with `metricsTokenSha256` set: the bearer token must hash to it (constant
    time); Unauthorized (401) otherwise."""
    if not expected_sha256:
        return
    digest = hashlib.sha256((given or "").encode()).hexdigest()
    if given is None or not hmac.compare_digest(digest, expected_sha256):
        raise Unauthorized(
            "/metrics needs Authorization: Bearer <the metrics token>",
            code="invalid_metrics_token",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )


async def _last_word(send: Send, error: GatewayError) -> None:
    """An error response, unless one had already started (then the connection just ends)."""
    with contextlib.suppress(RuntimeError):
        await respond_error(send, error)


def _query(scope: Scope) -> dict[str, str]:
    raw = scope.get("query_string", b"").decode("latin-1")
    return {k: v[0] for k, v in parse_qs(raw).items()}


def _period(start: str | None, end: str | None) -> tuple[dt.datetime, dt.datetime]:
    try:
        reports.period_bound(start)
    except ValueError as exc:
        raise BadRequest(f"from {exc}", param="from") from None
    try:
        return reports.period(start, end)
    except ValueError as exc:
        raise BadRequest(f"to {exc}", param="to") from None


def _record(record: Any) -> dict[str, Any]:
    fields = (
        "request_id",
        "public_model",
        "pool",
        "upstream_model",
        "input_tokens",
        "output_tokens",
        "input_reported",
        "output_reported",
        "cost_nano",
        "charged_nano",
        "capped",
        "latency_ms",
        "ttft_ms",
        "tpot_ms",
        "status",
        "outcome",
        "streamed",
        "created_at",
        "receipt_status",
        "claimed_nano",
        "bill_reason",
    )
    found = {f: getattr(record, f) for f in fields}
    found["receipt"] = _json_or_text(record.receipt)
    return found


def _json_or_text(text: str | None) -> Any:
    """A stored receipt as JSON (it is canonical JSON unless it arrived malformed)."""
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text
