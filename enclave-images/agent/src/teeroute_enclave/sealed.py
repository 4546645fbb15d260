"""Sealed requests through the agent (docs/sealed-mode.md, sections 1 to 4).

    open_sealed(keys, raw, path, ...)      -> Opened: the engine's request and the sealer
    sealed_body(answer, opened, keys)      -> the sealed response body, piece by piece
    open_release(keys, raw)                -> a `/v1/secrets` release, signature checked

A sealed request is opened with the enclave's HPKE key and forwarded in clear to the engine
(on loopback, inside the enclave) with two changes: `"model"` becomes the gateway's
`X-Teeroute-Upstream-Model` when present (the gateway cannot rewrite a sealed body), and a
stream gets `stream_options.include_usage = true`, so the engine reports usage for the receipt.
Also the output bound (teeroute.sealing.bounds): `meta.max_tokens` is what the gateway
reserved credit for, and the client authenticated it, so it is required, and the engine is
asked for at most that many tokens in all: the per-choice limit becomes meta.max_tokens divided
by the completions the body asks for (n, best_of, a batch of prompts), in every limit field.
A body asking for more completions than meta.max_tokens covers (or without meta.max_tokens)
is refused, 400 `sealed_envelope_invalid` naming `meta.max_tokens`.

The answer: each piece the engine sends becomes one frame, sealed and passed on at once (a
stream holds back only an unfinished SSE event, until the read that completes it); then one
final frame (empty) and the signed receipt. If the engine breaks off, an OpenAI-style SSE error
event is sealed as the last frame before the final one, the receipt says `complete: false`,
and the client still sees an authenticated end.

Errors before the answer are `SealedRejected` (status, type, message naming the check; never
content or key bytes): 400 `sealed_envelope_invalid` (cannot be read, or its meta does not fit
the request), 421 `sealed_key_mismatch` (sealed to another enclave's key), 400
`sealed_open_failed` (does not authenticate), 400 `invalid_request` (the opened body or the
request id is not usable), 403 `release_refused` (a secret release not signed by the release
key this agent pins, or signed for another enclave key or pool); and the replay guard's
(replay.py): 400 `sealed_request_stale`, 409 `sealed_request_replayed`, 503
`replay_cache_full`.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any

from teeroute.sealing import bounds, envelope, receipts, secrets
from teeroute.sealing.errors import OpenFailed, ReleaseInvalid, SealingError
from teeroute_enclave import proxy, usage
from teeroute_enclave.keys import EnclaveKeys
from teeroute_enclave.replay import Refused, ReplayGuard

SEALED_PATHS = frozenset({"/v1/chat/completions", "/v1/completions"})
UPSTREAM_MODEL_HEADER = "X-Teeroute-Upstream-Model"
REQUEST_ID_HEADER = "X-Request-Id"
RESPONSE_HEADERS = (
    ("Content-Type", "text/event-stream"),
    ("Cache-Control", "no-cache"),
    ("X-Teeroute-Sealed", envelope.VERSION),
)
MAX_TEXT = receipts.MAX_TEXT  # request id, model names: what a receipt can carry


class SealedRejected(Exception):
    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


@dataclass(frozen=True)
class Opened:
    """An opened sealed request, ready for the engine, and what its receipt needs."""

    body: bytes
    sealer: envelope.ResponseSealer
    request_sha256: str
    request_id: str
    model: str
    upstream_model: str | None
    input_estimate: int

    @property
    def engine_headers(self) -> list[tuple[str, str]]:
        return [("Content-Type", "application/json"), (REQUEST_ID_HEADER, self.request_id)]


def open_sealed(
    keys: EnclaveKeys,
    raw: bytes,
    path: str,
    guard: ReplayGuard,
    *,
    request_id: str | None = None,
    upstream_model: str | None = None,
    now: float | None = None,
) -> Opened:
    """`raw`, a sealed request body POSTed to `path`, opened if fresh and new to `guard`;
    `request_id` and `upstream_model` are the gateway's headers (REQUEST_ID_HEADER,
    UPSTREAM_MODEL_HEADER); `now` is the enclave's clock (seconds since the epoch)."""
    now = time.time() if now is None else now
    sealed = _parse(raw)
    if sealed.meta.get("path") != path:
        raise _invalid("meta.path", "sealed for another path")
    model = sealed.meta.get("model")
    if not isinstance(model, str) or not 0 < len(model) <= MAX_TEXT:
        raise _invalid("meta.model", "expected the model's name")
    request_id = _request_id(request_id)
    try:
        sealed_at = guard.check_time(sealed.meta.get(envelope.SEALED_AT), now)
        plain, sealer = _open(keys, sealed)
        guard.remember(sealed.enc, sealed_at, now)
    except Refused as exc:
        raise SealedRejected(exc.status, exc.kind, exc.message) from None
    try:
        request = json.loads(plain)
    except (ValueError, UnicodeDecodeError):
        request = None
    if not isinstance(request, dict):
        raise SealedRejected(400, "invalid_request", "the sealed body is not a JSON object")
    upstream_model = upstream_model or None
    return Opened(
        body=json.dumps(
            engine_request(request, sealed.meta, upstream_model), ensure_ascii=False
        ).encode(),
        sealer=sealer,
        request_sha256=sealed.digest,
        request_id=request_id,
        model=model,
        upstream_model=upstream_model,
        input_estimate=usage.prompt_tokens(request),
    )


def engine_request(
    request: dict[str, Any], meta: Mapping[str, Any], upstream_model: str | None
) -> dict[str, Any]:
    """The opened body as the engine gets it (see the module docstring)."""
    request = dict(request)
    if upstream_model:
        request["model"] = upstream_model
    if request.get("stream") is True:
        options = request.get("stream_options")
        request["stream_options"] = {
            **(options if isinstance(options, dict) else {}),
            "include_usage": True,
        }
    per_choice = _per_choice(request, meta)
    limits = [key for key in bounds.LIMIT_FIELDS if key in request]
    for key in limits or ["max_tokens"]:
        if not (type(request.get(key)) is int and 0 < request[key] <= per_choice):
            request[key] = per_choice
    return request


def _per_choice(request: dict[str, Any], meta: Mapping[str, Any]) -> int:
    """The per-choice limit that keeps the whole answer within meta.max_tokens."""
    cap = meta.get("max_tokens")
    if type(cap) is not int or cap < 1:
        raise _invalid("meta.max_tokens", "the output bound the gateway holds for is required")
    try:
        count = bounds.choices(request, str(meta.get("path")))
    except bounds.BoundInvalid as exc:
        raise SealedRejected(400, "invalid_request", str(exc)) from None
    if count > cap:
        raise _invalid("meta.max_tokens", f"too small for the {count} completions asked")
    return cap // count


def _parse(raw: bytes) -> envelope.SealedRequest:
    try:
        return envelope.SealedRequest.parse(raw)
    except SealingError as exc:
        raise _invalid(exc.check, exc.detail) from None


def _open(
    keys: EnclaveKeys, sealed: envelope.SealedRequest
) -> tuple[bytes, envelope.ResponseSealer]:
    if sealed.key_id != keys.hpke_key_id:
        raise _key_mismatch()
    try:
        return keys.open_request(sealed)
    except OpenFailed as exc:
        raise _open_failed(exc) from None
    except SealingError as exc:  # an `enc` that is no X25519 key
        raise _invalid(exc.check, exc.detail) from None


def _invalid(check: str, detail: str) -> SealedRejected:
    return SealedRejected(400, "sealed_envelope_invalid", f"{check}: {detail}")


def _open_failed(exc: OpenFailed) -> SealedRejected:
    return SealedRejected(400, "sealed_open_failed", f"{exc.check}: {exc.detail}")


def _key_mismatch() -> SealedRejected:
    return SealedRejected(421, "sealed_key_mismatch", "key_id: sealed to another enclave key")


def _request_id(given: str | None) -> str:
    if not given:
        return uuid.uuid4().hex
    if len(given) > MAX_TEXT or not given.isascii() or not given.isprintable():
        raise SealedRejected(
            400,
            "invalid_request",
            f"{REQUEST_ID_HEADER} must be printable ASCII, at most {MAX_TEXT} characters",
        )
    return given


# --- the answer ------------------------------------------------------------------------


def sealed_body(
    answer: proxy.EngineResponse, opened: Opened, keys: EnclaveKeys
) -> Generator[bytes, None, None]:
    """The sealed response body: frames as the engine's answer arrives, then the last frame
    (if any), the final frame and the receipt together (each yielded piece is one write)."""
    meter = usage.meter_for(_content_type(answer.headers))
    sealer = opened.sealer
    complete = True
    try:
        for piece in answer.chunks():
            ready = meter.feed(piece)
            if ready:
                yield sealer.frame(ready)
        rest = meter.tail()
    except proxy.EngineError as exc:
        complete = False
        rest = error_event(exc)  # an unfinished event the engine left is dropped
    end = [sealer.frame(rest)] if rest else []
    end.append(sealer.frame(b"", final=True))
    counted = usage.account(meter, opened.input_estimate, answer.status)
    receipt = receipts.sign_receipt(
        sign=keys.sign,
        signing_public=keys.signing_public,
        hpke_public=keys.hpke_public,
        request_id=opened.request_id,
        model=opened.model,
        served_model=_served_model(meter.model, opened),
        input_tokens=counted.input_tokens,
        output_tokens=counted.output_tokens,
        usage_source=counted.source,
        status=answer.status,
        complete=complete,
        request_sha256=opened.request_sha256,
        response_sha256=sealer.digest.hexdigest(),
        now=dt.datetime.now(dt.UTC),
    )
    end.append(envelope.sse_event(envelope.RECEIPT_EVENT, receipt.text().encode()))
    yield b"".join(end)  # the last frames and the receipt leave in one write


def error_event(error: proxy.EngineError) -> bytes:
    """The OpenAI-style SSE error event that ends a stream the engine broke off."""
    body = {"error": {"message": str(error), "type": error.kind, "code": error.status}}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def _content_type(headers: list[tuple[str, str]]) -> str:
    return next((value for name, value in headers if name.lower() == "content-type"), "")


def _served_model(engine_model: str | None, opened: Opened) -> str:
    for name in (engine_model, opened.upstream_model):
        if name and len(name) <= MAX_TEXT:
            return name
    return opened.model


# --- secret release --------------------------------------------------------------------


def open_release(keys: EnclaveKeys, raw: bytes) -> secrets.Release:
    """The release in a `/v1/secrets` body sealed to this enclave and signed by the release
    key it pins (403 `release_refused` otherwise)."""
    try:
        return keys.open_secrets(raw)
    except ReleaseInvalid as exc:
        raise SealedRejected(403, "release_refused", f"{exc.check}: {exc.detail}") from None
    except OpenFailed as exc:
        raise (_key_mismatch() if exc.check == "key_id" else _open_failed(exc)) from None
    except SealingError as exc:
        raise _invalid(exc.check, exc.detail) from None
