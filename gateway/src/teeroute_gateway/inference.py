"""POST /v1/chat/completions and /v1/completions: from request to settled bill.

    authenticate → read and check the body → resolve models → rate limit → plan candidates
    → hold the worst-case cost (kept alive while the request runs) → dispatch (retries
    before the first byte) → answer (whole or streamed) → bill (billing.py, one pure
    decision) → settle the hold with the bill → count tokens against tpm

Errors before the answer starts are OpenAI error bodies with their status; after a stream
started, an SSE error event. The hold is always settled or released, whatever happens.

An answer's usage record is committed before its last bytes go out (the whole body, or a
stream's usage chunk and [DONE]): a gateway killed at any moment leaves no delivered answer
unbilled (docs/faults.md). If the ledger stays unreachable past SETTLE_WITHIN_S, a whole answer
is withheld (503 ledger_unavailable) and a stream ends with an error event instead of [DONE].
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from teeroute.sealing import frames
from teeroute_gateway import tracing
from teeroute_gateway.asgi import (
    JSON,
    SSE,
    ClientGone,
    Headers,
    Receive,
    Scope,
    Send,
    bearer,
    header,
    read_body,
    respond,
    respond_error,
)
from teeroute_gateway.billing import Bill, Counted, Counts, Held, bill
from teeroute_gateway.catalog import Catalog, PublicModel
from teeroute_gateway.client_sealed import parse_client_frame, refuse_v1
from teeroute_gateway.dispatch import Attempt
from teeroute_gateway.errors import (
    BadRequest,
    GatewayError,
    NotFound,
    PaymentRequired,
    Unauthorized,
    Unavailable,
    UpstreamFailed,
)
from teeroute_gateway.holds import HoldKeeper
from teeroute_gateway.key_slots import KeySlots
from teeroute_gateway.ledger import (
    Account,
    BudgetExceeded,
    Hold,
    InsufficientCredit,
    UnknownAccount,
    UsageRecord,
)
from teeroute_gateway.ledger.durable import settle_within
from teeroute_gateway.limits import LimiterUnavailable, Limits
from teeroute_gateway.metering import (
    Usage,
    as_float,
    cost_nano,
    count_completion_text,
    display,
    reported_usage,
)
from teeroute_gateway.requests import InferenceRequest, parse_request, parse_sealed
from teeroute_gateway.sealed import NO_RECEIPT, SEALED_TYPE, Judgement, Observed, hop_mode, judge
from teeroute_gateway.selection import Candidate, Context, plan
from teeroute_gateway.services import Services
from teeroute_gateway.speed import (
    Sample,
    claim_consistent,
    sealed_stream_timing,
    stream_timing,
    whole_timing,
)
from teeroute_gateway.streaming import StreamRelay, error_event, usage_body
from teeroute_gateway.throttle import enforce
from teeroute_gateway.upstream import UpstreamError

log = logging.getLogger("teeroute_gateway.requests")


@dataclass(slots=True)
class Outcome:
    """What happened, for the ledger, metrics, traces and the log line. The bill is decided
    once (billing.bill) and set whole; None: nothing was served, the hold is released."""

    status: int = 0
    outcome: str = "ok"
    candidate: Candidate | None = None
    bill: Bill | None = None
    ttft_ms: float | None = None
    """Streamed: sent -> first content-bearing delta (speed.py); whole answers: None."""
    timing: Sample | None = None
    """The answer's speed, for the HealthBook once it ended well (speed.py)."""
    attempts: int = 0
    headers: Headers = field(default_factory=list)
    error: GatewayError | None = None
    receipt: Judgement = NO_RECEIPT
    started: float = 0.0
    settled: bool = False
    """The usage record is committed (ahead of the answer's last bytes)."""

    @property
    def usage(self) -> Usage | None:
        return self.bill.usage if self.bill else None

    @property
    def cost_nano(self) -> int:
        return self.bill.cost_nano if self.bill else 0


@dataclass(frozen=True, slots=True)
class Reserved:
    """The hold of a request in flight and the output bound it covers."""

    hold: Hold
    per_choice: int
    """The per-choice limit the miner is sent (sealed by the client: the whole bound)."""
    output_bound: int
    account: Account
    model: PublicModel
    """The public model the request is billed under (the first it named)."""


class InferenceHandler:
    def __init__(self, services: Services) -> None:
        self.s = services
        self._rng = random.Random()  # noqa: S311  # load balancing, not secrets
        self._holds = HoldKeeper(services.ledger, services.settings.hold_ttl_s)
        self._slots = KeySlots(services.settings.max_in_flight_per_key)

    async def __call__(self, scope: Scope, receive: Receive, send: Send, kind: str) -> None:
        started = time.perf_counter()
        rid = "gen-" + os.urandom(12).hex()
        ids: Headers = [(b"x-request-id", rid.encode())]
        try:
            account = await self.s.keys.account(bearer(scope))
            self._slots.take(account.id)  # (before the body is read: nothing to read for a 429)
        except GatewayError as exc:
            self.s.metrics.rejections.labels(_reason(exc)).inc()
            await respond_error(send, exc, ids)
            return
        try:
            await self._serve(scope, receive, send, kind, account, rid, ids, started)
        finally:
            self._slots.give_back(account.id)

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        kind: str,
        account: Account,
        rid: str,
        ids: Headers,
        started: float,
    ) -> None:
        try:
            request, models, candidates, reserved = await self._prepare(
                scope, receive, kind, rid, account
            )
        except GatewayError as exc:
            self.s.metrics.rejections.labels(_reason(exc)).inc()
            await respond_error(send, exc, ids)
            return
        except ClientGone:
            return
        span = tracing.start(self.s.tracer, kind, request.models[0], request.max_tokens)
        result = Outcome(headers=ids, started=started)
        hold = reserved.hold
        self._holds.keep(hold)  # renewed while the request runs, however long
        try:
            attempt = await self._dispatch(candidates, request, reserved.per_choice, rid, result)
            if attempt is None:
                await respond_error(send, result.error or UpstreamFailed("no answer"), ids)
            elif attempt.passthrough:
                await self._passthrough(attempt, request, receive, send, rid, result, reserved)
            elif request.stream and attempt.response.status == 200:
                await self._stream(attempt, request, receive, send, rid, result, reserved)
            else:
                await self._whole(attempt, request, send, rid, result, reserved)
        finally:
            self._holds.drop(hold)
            await self._settle(account, request, models[0], hold, rid, result, started, span)

    async def _prepare(
        self, scope: Scope, receive: Receive, kind: str, rid: str, account: Account
    ) -> tuple[InferenceRequest, list[PublicModel], list[Candidate], Reserved]:
        raw = await read_body(scope, receive, self.s.settings.max_body_bytes)
        content_type = (header(scope, b"content-type") or b"").decode("latin-1")
        if frames.looks_v2(content_type):
            routes = self.s.dispatcher.client_routes
            request = parse_sealed(parse_client_frame(raw, routes, time.time()), kind)
        elif frames.looks_v1(content_type):
            raise refuse_v1()
        else:
            session = header(scope, b"x-session-id")
            request = parse_request(raw, kind, session.decode("latin-1") if session else None)
        models = self._models(self.s.catalog, request.models)
        if request.sealed is None and models[0].spec.sealing == "required":
            raise BadRequest(
                f"the model {models[0].name} accepts only requests sealed to an attested "
                "enclave (see teeroute proxy)",
                code="sealing_required",
            )
        await self._admit(account, models[0])
        context = Context(
            now=dt.datetime.now(dt.UTC),
            monotonic=time.monotonic(),
            rng=self._rng,
            health=self.s.health,
            currency=self.s.settings.currency,
            allow_unattested=self.s.settings.allow_unattested,
        )
        candidates = sealable(plan(models, request.prefs, request.session_id, context), request)
        per_choice = self._max_tokens(request, candidates)
        bound = per_choice * request.choices
        hold = await self._reserve(account, request, candidates, bound, rid)
        reserved = Reserved(hold, per_choice, bound, account, models[0])
        return request, models, candidates, reserved

    def _models(self, catalog: Catalog, names: list[str]) -> list[PublicModel]:
        found = [catalog.models[n] for n in names if n in catalog.models]
        if not found:
            raise NotFound(
                f"the model {names[0]} does not exist", code="model_not_found", param="model"
            )
        return found

    async def _admit(self, account: Account, model: PublicModel) -> None:
        limits = _limits(model)
        if limits is not None:
            await enforce(self.s.limiter, f"{account.id}|{model.route_key}", limits, model.name)

    def _max_tokens(self, request: InferenceRequest, candidates: list[Candidate]) -> int:
        """The per-choice limit: the client's, else the default within the context left."""
        if request.max_tokens is not None:
            return request.max_tokens
        bound = self.s.settings.default_max_tokens
        lengths = [c.backend.pool.served.get(c.backend.upstream_model) for c in candidates]
        known = [n for n in lengths if n]
        if known:
            bound = max(1, min(bound, min(known) - request.input_estimate))
        return bound

    async def _reserve(
        self,
        account: Account,
        request: InferenceRequest,
        candidates: list[Candidate],
        output_bound: int,
        rid: str,
    ) -> Hold:
        amount = max(
            cost_nano(c.backend.pool, request.input_estimate, output_bound) for c in candidates
        )
        try:
            return await self.s.ledger.reserve(account.id, amount, rid, self.s.settings.hold_ttl_s)
        except InsufficientCredit as exc:
            raise PaymentRequired(
                f"insufficient credit: this request may cost up to {display(amount)} "
                f"{self.s.settings.currency}, {display(max(exc.available_nano, 0))} "
                "is available "
                "(lower max_tokens or add credit)",
                code="insufficient_credit",
            ) from None
        except UnknownAccount:  # disabled since its key was cached
            raise Unauthorized("the API key is not valid", code="invalid_api_key") from None
        except BudgetExceeded as exc:
            raise PaymentRequired(
                f"the key's {exc.period}ly spend limit is reached",
                code="budget_exceeded",
                headers={"Retry-After": str(max(1, int(exc.retry_after_s)))},
            ) from None

    async def _dispatch(
        self,
        candidates: list[Candidate],
        request: InferenceRequest,
        max_tokens: int,
        rid: str,
        result: Outcome,
    ) -> Attempt | None:
        try:
            attempt = await self.s.dispatcher.attempt(candidates, request, max_tokens, rid)
        except GatewayError as exc:
            result.status, result.outcome = exc.status, "upstream_failed"
            result.error = exc
            result.attempts = min(len(candidates), self.s.settings.max_attempts)
            return None
        result.candidate = attempt.candidate
        result.attempts = attempt.attempts
        pool = attempt.candidate.backend.pool
        result.headers += [
            (b"x-teeroute-pool", pool.key.encode()),
            (b"x-teeroute-model", attempt.candidate.backend.upstream_model.encode()),
            # which miner: its evidence is listed under this key by /v1/attestations
            (b"x-teeroute-endpoint", attempt.candidate.endpoint.key.encode()),
        ]
        return attempt

    async def _whole(
        self,
        attempt: Attempt,
        request: InferenceRequest,
        send: Send,
        rid: str,
        result: Outcome,
        reserved: Reserved,
    ) -> None:
        self.s.dispatcher.succeeded(attempt)
        result.status = attempt.response.status
        obj = attempt.parsed
        if result.status != 200 or obj is None:
            result.outcome = "upstream_rejected"
            await respond(send, result.status, attempt.body, [JSON, *result.headers])
            return
        reported = Counts(*reported_usage(obj))
        ours = Counted(request.input_estimate, count_completion_text(obj))
        usage = self._bill(attempt, result, reserved, reported, ours, rid)
        result.timing = Sample(
            time.monotonic(),
            attempt.load,
            tokens_per_s=whole_timing(attempt.sent_at, attempt.answered_at, usage.output_tokens),
        )
        if result.receipt.status not in ("", "valid"):
            result.outcome = f"receipt_{result.receipt.status}"
        pool = attempt.candidate.backend.pool
        obj["usage"] = usage_body(obj.get("usage"), usage, result.cost_nano)
        obj["provider"] = pool.name
        if not await self._write_ahead(request, rid, result, reserved):
            result.bill, result.status, result.outcome = None, 503, "ledger_unavailable"
            await respond_error(send, _unrecorded(), result.headers)
            return
        result.headers.append((b"x-teeroute-cost", display(result.cost_nano).encode()))
        await respond(send, 200, orjson.dumps(obj), [JSON, *result.headers])

    async def _stream(
        self,
        attempt: Attempt,
        request: InferenceRequest,
        receive: Receive,
        send: Send,
        rid: str,
        result: Outcome,
        reserved: Reserved,
    ) -> None:
        result.status = 200
        relay = StreamRelay(request.kind)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [SSE, (b"cache-control", b"no-cache"), *result.headers],
            }
        )
        gone = asyncio.Event()
        watcher = asyncio.create_task(_watch_disconnect(receive, gone, attempt))
        error: str | None = None
        try:
            error = await self._pump(attempt, relay.feed, send, gone)
        finally:
            watcher.cancel()
        reported = Counts(*reported_usage(relay.reported()))
        ours = Counted(request.input_estimate, relay.counted)
        usage = self._bill(attempt, result, reserved, reported, ours, rid)
        timed = stream_timing(
            attempt.sent_at, relay.first_content_at, relay.last_content_at, usage.output_tokens
        )
        result.ttft_ms = timed[0]
        result.timing = Sample(time.monotonic(), attempt.load, *timed)
        _check_claim(attempt, result, rid)
        if result.receipt.status not in ("", "valid"):
            result.outcome = f"receipt_{result.receipt.status}"
        if gone.is_set():
            result.outcome = "cancelled"
            self.s.dispatcher.succeeded(attempt)
            await send({"type": "http.response.body", "body": b""})
            return
        if error is not None:
            result.outcome = "upstream_error_after_start"
            self.s.dispatcher.failed_late(attempt, error)
            await send(
                {
                    "type": "http.response.body",
                    "body": error_event("the miner stopped mid-stream", "upstream_error", 502),
                }
            )
            return
        self.s.dispatcher.succeeded(attempt)
        if not await self._write_ahead(request, rid, result, reserved):
            result.outcome = "ledger_unavailable"  # the record is tried again when settling
            error_body = error_event(_unrecorded().message, "service_unavailable", 503)
            await send({"type": "http.response.body", "body": error_body})
            return
        closing = relay.closing(
            usage, result.cost_nano, rid, attempt.candidate.backend.upstream_model
        )
        await send({"type": "http.response.body", "body": closing})

    def _bill(
        self,
        attempt: Attempt,
        result: Outcome,
        reserved: Reserved,
        reported: Counts,
        counted: Counted,
        rid: str,
    ) -> Usage:
        """Judges a sealed hop's receipt, then bills (billing.bill) and notes the bill."""
        hop = attempt.hop
        if hop.mode != "plain":
            seen = reported if hop.mode == "gateway" else Counts()
            observed = Observed(
                hop.request_bytes, hop.frame_bytes, seen.input_tokens, seen.output_tokens
            )
            result.receipt = judge(hop, attempt.candidate.endpoint, rid, observed)
            self.s.metrics.receipts.labels(
                attempt.candidate.backend.pool.key, result.receipt.status
            ).inc()
            if result.receipt.status != "valid":
                log.warning(
                    "request %s: receipt %s (%s)", rid, result.receipt.status, result.receipt.check
                )
        pool = attempt.candidate.backend.pool
        held = Held(reserved.hold.amount_nano, reserved.output_bound, pool)
        result.bill = bill(hop.mode, reported, counted, result.receipt, held)
        return result.bill.usage

    async def _passthrough(
        self,
        attempt: Attempt,
        request: InferenceRequest,
        receive: Receive,
        send: Send,
        rid: str,
        result: Outcome,
        reserved: Reserved,
    ) -> None:
        """A client-sealed answer: frames and receipt relayed unopened, billed by the receipt
        (by the frames relayed when none came)."""
        result.status = attempt.response.status
        headers = [(b"content-type", SEALED_TYPE), (b"cache-control", b"no-cache")]
        await send(
            {
                "type": "http.response.start",
                "status": result.status,
                "headers": [*headers, *result.headers],
            }
        )
        gone = asyncio.Event()
        watcher = asyncio.create_task(_watch_disconnect(receive, gone, attempt))
        try:
            error = await self._pump(attempt, _unchanged, send, gone)
        finally:
            watcher.cancel()
        ours = Counted(request.input_estimate, None, attempt.hop.frames)
        usage = self._bill(attempt, result, reserved, Counts(), ours, rid)
        # the frames are opaque here: the agent's timings, held to the frames (docs/scores.md)
        tps = whole_timing(attempt.sent_at, time.perf_counter(), usage.output_tokens)
        ttft, tpot = _client_sealed_timing(attempt, result, usage.output_tokens)
        result.ttft_ms = ttft
        result.timing = Sample(time.monotonic(), attempt.load, ttft, tpot, tps)
        if gone.is_set():
            result.outcome = "cancelled"
        elif error is not None:
            result.outcome = "upstream_error_after_start"
            self.s.dispatcher.failed_late(attempt, error)
        elif result.receipt.status != "valid":
            result.outcome = f"receipt_{result.receipt.status}"
            self.s.dispatcher.failed_late(attempt, "receipt")
        else:
            self.s.dispatcher.succeeded(attempt)
        await self._release(attempt, request, send, rid, result, reserved, gone)

    async def _release(
        self,
        attempt: Attempt,
        request: InferenceRequest,
        send: Send,
        rid: str,
        result: Outcome,
        reserved: Reserved,
        gone: asyncio.Event,
    ) -> None:
        """The end of a client-sealed answer: its held final CHUNK and RECEIPT go out only
        after its usage record is committed (as a plain answer's last bytes do); when the
        ledger stays out of reach they never do, and an ERROR frame says why."""
        held = attempt.hop.release()
        if held and not gone.is_set():
            if not attempt.hop.whole:
                pass  # no RECEIPT came: not a whole answer, relayed as it came
            elif not await self._write_ahead(request, rid, result, reserved):
                result.outcome = "ledger_unavailable"  # the record is tried again when settling
                held = frames.encode(frames.FrameType.ERROR, _unrecorded().encoded())
            await send({"type": "http.response.body", "body": held, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def _pump(
        self, attempt: Attempt, feed: Callable[[bytes], bytes], send: Send, gone: asyncio.Event
    ) -> str | None:
        """Relays the answer's chunks, each through `feed`, until it ends, the client leaves
        or the miner fails (then: the failure's kind)."""
        try:
            chunk = attempt.body
            while True:
                out = feed(chunk)
                if out:
                    await send({"type": "http.response.body", "body": out, "more_body": True})
                if gone.is_set() or attempt.stream is None:
                    return None
                chunk = await anext(attempt.stream, b"")
                if not chunk:
                    return None
        except UpstreamError as exc:
            attempt.response.close()  # `feed` may refuse what the miner still sends: hang up
            return None if gone.is_set() else exc.kind

    async def _settle(
        self,
        account: Account,
        request: InferenceRequest,
        model: PublicModel,
        hold: Hold,
        rid: str,
        result: Outcome,
        started: float,
        span: object,
    ) -> None:
        elapsed = time.perf_counter() - started
        usage = result.usage
        try:
            record = self._record(account, request, model, rid, result, elapsed)
            if record is None:
                await self.s.ledger.release(hold)
            elif not result.settled:  # (else committed ahead of the answer's last bytes)
                await settle_within(self.s.ledger, hold, record)  # e.g. an answer cut off
        except Exception:  # the answer is out; a ledger failure must not lose the request's log
            log.exception("settling %s failed", rid)
        self._observe(account, request, model, rid, result, elapsed, span)
        if usage is not None:
            limits = _limits(model)
            if limits is not None and limits.tpm is not None:
                try:
                    await self.s.limiter.record_tokens(
                        f"{account.id}|{model.route_key}",
                        limits,
                        usage.input_tokens + usage.output_tokens,
                    )
                except LimiterUnavailable:
                    log.warning("tokens of %s not counted against tpm: limiter unavailable", rid)

    async def _write_ahead(
        self, request: InferenceRequest, rid: str, result: Outcome, reserved: Reserved
    ) -> bool:
        """Commit the usage record before the answer's last bytes go out, so that no answer
        a client received is missing from the ledger whenever the gateway dies; retried
        through a short ledger outage (ledger.durable). False: the ledger stayed out of reach."""
        elapsed = time.perf_counter() - result.started
        record = self._record(reserved.account, request, reserved.model, rid, result, elapsed)
        if record is None:
            return True
        result.settled = await settle_within(self.s.ledger, reserved.hold, record) is not None
        return result.settled

    def _record(
        self,
        account: Account,
        request: InferenceRequest,
        model: PublicModel,
        rid: str,
        result: Outcome,
        elapsed: float,
    ) -> UsageRecord | None:
        """The request's usage record; None when nothing was served (nothing to bill)."""
        candidate, usage = result.candidate, result.usage
        if usage is None or candidate is None:
            return None
        return UsageRecord(
            request_id=rid,
            account_id=account.id,
            public_model=model.name,
            pool=candidate.backend.pool.key,
            endpoint=candidate.endpoint.key,
            upstream_model=candidate.backend.upstream_model,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            input_reported=usage.input_reported,
            output_reported=usage.output_reported,
            cost_nano=result.cost_nano,
            claimed_nano=result.bill.claimed_nano if result.bill else None,
            bill_reason=result.bill.reason if result.bill else "",
            latency_ms=elapsed * 1000,
            ttft_ms=result.ttft_ms,
            tpot_ms=result.timing.tpot_ms if result.timing else None,  # as the metric's
            status=result.status,
            outcome=result.outcome,
            streamed=request.stream,
            created_at=dt.datetime.now(dt.UTC),
            receipt_status=result.receipt.status,
            receipt=result.receipt.text,
        )

    def _observe_speed(self, model: PublicModel, pool: str, result: Outcome) -> None:
        """TTFT and TPOT metrics and the endpoint's speed sample, from answers that ended
        well (a cancelled or broken one says nothing about the miner's pace)."""
        timing, candidate = result.timing, result.candidate
        if timing is None or candidate is None or result.outcome != "ok":
            return
        if timing.ttft_ms is not None:
            self.s.metrics.ttft.labels(model.name, pool).observe(timing.ttft_ms / 1000)
        if timing.tpot_ms is not None:
            self.s.metrics.tpot.labels(model.name, pool).observe(timing.tpot_ms / 1000)
        entry = self.s.health.get(candidate.endpoint.key)
        if entry is not None:
            self.s.health.observe(entry, timing)

    def _observe(
        self,
        account: Account,
        request: InferenceRequest,
        model: PublicModel,
        rid: str,
        result: Outcome,
        elapsed: float,
        span: object,
    ) -> None:
        m = self.s.metrics
        pool = result.candidate.backend.pool.key if result.candidate else "none"
        m.requests.labels(model.name, pool, f"{result.status // 100}xx").inc()
        m.duration.labels(model.name, "true" if request.stream else "false").observe(elapsed)
        usage = result.usage
        if usage is not None:
            m.tokens.labels(
                model.name, pool, "input", "reported" if usage.input_reported else "counted"
            ).inc(usage.input_tokens)
            m.tokens.labels(
                model.name, pool, "output", "reported" if usage.output_reported else "counted"
            ).inc(usage.output_tokens)
            m.cost.labels(model.name, pool, self.s.settings.currency).inc(
                as_float(result.cost_nano)
            )
            self._observe_speed(model, pool, result)
        tracing.finish(
            span,
            {
                "gen_ai.response.model": result.candidate.backend.upstream_model
                if result.candidate
                else None,
                "gen_ai.usage.input_tokens": usage.input_tokens if usage else None,
                "gen_ai.usage.output_tokens": usage.output_tokens if usage else None,
                "teeroute.pool": pool,
                "gen_ai.server.time_to_first_token": _seconds(result.ttft_ms),
                "gen_ai.server.time_per_output_token": _seconds(
                    result.timing.tpot_ms if result.timing else None
                ),
                "teeroute.attempts": result.attempts,
                "teeroute.cost": as_float(result.cost_nano),
                "http.response.status_code": result.status,
            },
            None if result.status == 200 else result.outcome,
        )
        if self.s.settings.access_log:
            log.info(
                orjson.dumps(
                    {
                        "request_id": rid,
                        "account": account.id,
                        "model": model.name,
                        "pool": pool,
                        "status": result.status,
                        "outcome": result.outcome,
                        "attempts": result.attempts,
                        "input_tokens": usage.input_tokens if usage else 0,
                        "output_tokens": usage.output_tokens if usage else 0,
                        "cost_nano": result.cost_nano,
                        "ms": round(elapsed * 1000, 2),
                        "ttft_ms": round(result.ttft_ms, 2) if result.ttft_ms is not None else None,
                        "stream": request.stream,
                    }
                ).decode()
            )


def _seconds(ms: float | None) -> float | None:
    return None if ms is None else ms / 1000


def _unchanged(chunk: bytes) -> bytes:
    return chunk


def sealable(candidates: list[Candidate], request: InferenceRequest) -> list[Candidate]:
    """The candidates this request may go to: a client-sealed one only to the enclave it was
    sealed to, a plain one only where it can be sealed (or the Route turned sealing off)."""
    sealed = request.sealed
    usable = [
        c
        for c in candidates
        if hop_mode(c.model.spec.sealing, sealed is not None, c.endpoint) is not None
        and (sealed is None or c.endpoint.hpke_key_sha256 == sealed.key_id)
    ]
    if usable:
        return usable
    if sealed is not None:
        raise Unavailable(
            "the enclave this request was sealed to is not available; fetch fresh "
            "attestations and seal again",
            code="sealed_key_unavailable",
        )
    raise Unavailable(
        "no endpoint with an attested key to seal the request to is available",
        code="no_sealable_endpoint",
    )


def _limits(model: PublicModel) -> Limits | None:
    rl = model.spec.rate_limits
    if rl.requests_per_minute is None and rl.tokens_per_minute is None:
        return None
    return Limits(rpm=rl.requests_per_minute, tpm=rl.tokens_per_minute)


async def _watch_disconnect(receive: Receive, gone: asyncio.Event, attempt: Attempt) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            gone.set()
            attempt.response.close()  # the miner sees the connection close and stops generating
            return


def _reason(exc: GatewayError) -> str:
    return {
        401: "auth",
        402: "credit",
        429: "rate_limit",
        400: "invalid",
        413: "invalid",
        404: "not_found",
    }.get(exc.status, "no_endpoint")


def _unrecorded() -> Unavailable:
    return Unavailable(
        "the answer's usage cannot be recorded right now; try again shortly",
        code="ledger_unavailable",
        headers={"Retry-After": "5"},
    )


def _client_sealed_timing(
    attempt: Attempt, result: Outcome, output_tokens: int
) -> tuple[float | None, float | None]:
    """TTFT and TPOT of a client-sealed stream: the valid receipt's, held to the frames."""
    hop, receipt = attempt.hop, result.receipt.receipt
    if result.receipt.status != "valid" or receipt is None:  # a whole answer's has none
        return None, None
    first, last = hop.first_frame_at, hop.last_frame_at
    frames = (first, last) if first is not None and last is not None else None
    claimed = (receipt.ttft_us, receipt.tpot_us)
    return sealed_stream_timing(attempt.sent_at, frames, output_tokens, claimed)


def _check_claim(attempt: Attempt, result: Outcome, rid: str) -> None:
    """Gateway-sealed: the gateway's own timing counts; an agent claiming a slower first
    token than the gateway saw is logged (its clock or its code is off)."""
    receipt = result.receipt.receipt
    if attempt.hop.mode != "gateway" or receipt is None:
        return
    if not claim_consistent(result.ttft_ms, receipt.ttft_us):
        log.warning("request %s: the agent's ttft_us exceeds the observed TTFT", rid)
