"""Sealed requests through the agent, wire v2 (docs/sealed-mode.md).

    Sealing(keys, gateways, clients, guard, callers, ...)   what sealed traffic needs
    open_gateway_request(sealing, raw, path, now)            a gateway session's REQUEST, opened
    open_inference(sealing, raw, path, ...)                  -> Opened: the engine's request,
                                                             the Reply its answer is sealed in
    open_release(keys, raw)                                  a `/v1/secrets` release (v1 envelope)

Every sealed body is one frame (`teeroute.sealing.frames`). Inference comes as a REQUEST of a
gateway session (opened by POST /v1/sessions, `handshake.py`); its authenticated meta says
what is inside (`inner`): "none", the plain OpenAI request (the gateway sealed the hop);
"client", a REQUEST frame of a client session the agent holds; "oneshot", a client ONESHOT
frame (its own HELLO inside). The answer is sealed under the innermost session (`answer.py`).

The engine's request is the opened body with two changes: `"model"` becomes the gateway's
`X-Teeroute-Upstream-Model` when present (the gateway cannot rewrite a client-sealed body),
and a stream gets `stream_options.include_usage = true`, so the engine reports usage for the
receipt. Also the output bound (teeroute.sealing.bounds): the gateway's `meta.max_tokens` is
what it holds credit for (required), a client's own `meta.max_tokens` what the client
authorized; the engine is asked for at most the smaller in all: the per-choice limit becomes
it divided by the completions the body asks for (n, best_of, a batch of prompts), in every
limit field. A body asking for more completions than that covers is refused, 400
`sealed_envelope_invalid` naming `meta.max_tokens`.

Errors before the answer are `SealedRejected` (status, type, message naming the check; never
content or key bytes; the table is `refusals.py`): 400 `unsupported_wire_version` (a v1
body), 400 `sealed_frame_invalid` (not one whole frame of the expected type), 409
`session_unknown` (no such open session, or it expired: open a new one), 409
`sealed_request_replayed` (a counter the session already took), 400 `sealed_open_failed`
(does not authenticate), 400 `sealed_envelope_invalid` (meta unusable), 400
`invalid_request` (the opened body is no JSON object, or the request id is unusable), 403
`release_refused` (a secret release not signed by the pinned key).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from teeroute.sealing import bounds, frames, receipt_body, secrets
from teeroute.sealing.errors import FrameInvalid, OpenFailed, ReleaseInvalid, SealingError
from teeroute.sealing.frames import FrameType
from teeroute.sealing.session import Reply
from teeroute_enclave import usage
from teeroute_enclave.gateway_auth import Callers
from teeroute_enclave.keys import EnclaveKeys
from teeroute_enclave.refusals import SealedRejected as SealedRejected
from teeroute_enclave.refusals import (
    invalid,
    key_mismatch,
    open_failed,
    rejected,
    unknown_session,
)
from teeroute_enclave.refusals import unsupported_v1 as unsupported_v1
from teeroute_enclave.replay import Refused, ReplayGuard
from teeroute_enclave.sessions import Entry, SessionStore

SEALED_PATHS = frozenset({"/v1/chat/completions", "/v1/completions"})
SESSIONS_PATH = "/v1/sessions"
ROOTS_PATH = "/v1/sessions/roots"
UPSTREAM_MODEL_HEADER = "X-Teeroute-Upstream-Model"
REQUEST_ID_HEADER = "X-Request-Id"
RESPONSE_HEADERS = (("Content-Type", frames.CONTENT_TYPE), ("Cache-Control", "no-cache"))
MAX_BODY = frames.HEADER_LEN + frames.MAX_PAYLOAD
"""A sealed request body is one frame: at most this many bytes are read."""
MAX_TEXT = receipt_body.MAX_TEXT  # request id, model names: what a receipt can carry
INNER = frozenset({"none", "client", "oneshot"})
SESSION_ID_LEN = 16
DEFAULT_ROOT_RECEIPTS = 64
DEFAULT_ROOT_INTERVAL_S = 10.0


@dataclass(frozen=True)
class Sealing:
    """What sealed traffic needs of the agent."""

    keys: EnclaveKeys
    guard: ReplayGuard
    """Takes each HELLO (and ONESHOT) once: its `enc` is remembered while it is fresh."""
    callers: Callers
    """The gateway keys a gateway session's HELLO must be signed by."""
    gateways: SessionStore
    clients: SessionStore
    root_receipts: int = DEFAULT_ROOT_RECEIPTS
    """A gateway session's receipts are covered by a signed root every this many..."""
    root_interval_s: float = DEFAULT_ROOT_INTERVAL_S
    """... or once the oldest uncovered one is this old (at the next receipt or flush)."""


@dataclass(frozen=True)
class GatewayRequest:
    """A gateway session's REQUEST, opened: its entry, authenticated meta, body, Reply."""

    entry: Entry
    meta: Mapping[str, Any]
    body: bytes
    reply: Reply


@dataclass(frozen=True)
class Opened:
    """An opened sealed inference request, ready for the engine, and what its answer and
    receipt need."""

    body: bytes
    reply: Reply
    """The innermost session's: the answer's CHUNKs, the request and response hashes."""
    gateway: Entry
    """The gateway session: numbers the receipt, tags it (kind 1), batches it under roots."""
    client_receipt_key: bytes | None
    """The client session's receipt key (tag kind 2), for inner "client" / "oneshot"."""
    request_id: str
    model: str
    upstream_model: str | None
    input_estimate: int
    received_at: float = 0.0
    """time.perf_counter() when the agent took the request: where its TTFT starts."""
    timings: bool = False
    """Whether the receipt may carry the agent's timings (`wants_timings`)."""

    @property
    def engine_headers(self) -> list[tuple[str, str]]:
        return [("Content-Type", "application/json"), (REQUEST_ID_HEADER, self.request_id)]


def open_gateway_request(sealing: Sealing, raw: bytes, path: str, now: float) -> GatewayRequest:
    """`raw`, a REQUEST frame of an open gateway session, POSTed to `path`, opened."""
    payload = frame_of(raw, FrameType.REQUEST)
    entry = sealing.gateways.get(payload[:SESSION_ID_LEN], now, sealing.keys.hpke_key_id)
    if entry is None:
        raise unknown_session("session.id", "gateway")
    try:
        meta, body, reply = entry.session.open_request(payload, now)
    except SealingError as exc:
        raise rejected(exc) from None
    return GatewayRequest(entry, _meta(meta, path), body, reply)


def open_inference(
    sealing: Sealing,
    raw: bytes,
    path: str,
    now: float,
    *,
    request_id: str | None = None,
    upstream_model: str | None = None,
) -> Opened:
    """A sealed inference request (see the module docstring); `request_id` and
    `upstream_model` are the gateway's headers (REQUEST_ID_HEADER, UPSTREAM_MODEL_HEADER)."""
    received_at = time.perf_counter()
    outer = open_gateway_request(sealing, raw, path, now)
    model = outer.meta.get("model")
    if not isinstance(model, str) or not 0 < len(model) <= MAX_TEXT:
        raise invalid("meta.model", "expected the model's name")
    request_id = _request_id(request_id)
    plain, reply, client_key, client_meta = _inner(sealing, outer, path, now)
    request = _json_object(plain)
    upstream_model = upstream_model or None
    bound = _bound(outer.meta, client_meta)
    return Opened(
        body=json.dumps(
            engine_request(request, bound, upstream_model), ensure_ascii=False
        ).encode(),
        reply=reply,
        gateway=outer.entry,
        client_receipt_key=client_key,
        request_id=request_id,
        model=model,
        upstream_model=upstream_model,
        input_estimate=usage.prompt_tokens(request),
        received_at=received_at,
        timings=wants_timings(outer.meta, client_meta if client_key is not None else None),
    )


def wants_timings(gateway_meta: Mapping[str, Any], client_meta: Mapping[str, Any] | None) -> bool:
    """Whether every reader of the receipt announced it reads its optional timing fields
    (an older reader refuses a field it does not know): the gateway, and the client too
    when the request is the client's (`client_meta` None: the gateway sealed it)."""
    asked = receipt_body.TIMINGS_META
    if gateway_meta.get(asked) is not True:
        return False
    return client_meta is None or client_meta.get(asked) is True


_Inner = tuple[bytes, Reply, bytes | None, Mapping[str, Any]]


def _inner(sealing: Sealing, outer: GatewayRequest, path: str, now: float) -> _Inner:
    """(the plain request, the innermost Reply, the client's receipt key, the client's meta)."""
    inner = outer.meta["inner"]
    if inner == "none":
        return outer.body, outer.reply, None, {}
    if inner == "client":
        payload = frame_of(outer.body, FrameType.REQUEST)
        entry = sealing.clients.get(payload[:SESSION_ID_LEN], now, sealing.keys.hpke_key_id)
        if entry is None:
            raise unknown_session("client.session", "client")
        try:
            meta, body, reply = entry.session.open_request(payload, now)
        except SealingError as exc:
            raise rejected(exc) from None
        return body, reply, entry.session.receipt_key, _client_meta(meta, path)
    return _oneshot(sealing, frame_of(outer.body, FrameType.ONESHOT), path, now)


def _oneshot(sealing: Sealing, payload: bytes, path: str, now: float) -> _Inner:
    try:
        opened = sealing.keys.open_oneshot(payload, now)
    except SealingError as exc:
        raise rejected(exc) from None
    remember_hello(sealing.guard, opened.hello.enc, opened.hello.params.created_at, now)
    return opened.body, opened.reply, opened.receipt_key, _client_meta(opened.meta, path)


def remember_hello(guard: ReplayGuard, enc: bytes, created_at: int, now: float) -> None:
    """Takes a HELLO (or ONESHOT) once: a copy sent again, which would open the same session
    keys, is refused while its `created_at` is within the window; after it, it is stale."""
    try:
        guard.check_time(created_at, now)
        guard.remember(b"hello:" + enc, created_at, now)
    except Refused as exc:
        kind = {"sealed_request_stale": "session_invalid"}.get(exc.kind, exc.kind)
        detail = exc.message.split(": ", 1)[-1]
        raise SealedRejected(exc.status, kind, f"hello.created_at: {detail}") from None


def frame_of(raw: bytes, expected: FrameType) -> bytes:
    """The payload of `raw`, exactly one frame of type `expected`."""
    try:
        frame = frames.decode_one(raw)
    except FrameInvalid as exc:
        raise rejected(exc) from None
    if frame.type is not expected:
        message = f"frame.type: expected a {expected.name} frame, got {frame.type.name}"
        raise SealedRejected(400, "sealed_frame_invalid", message)
    return frame.payload


def _meta(raw: bytes, path: str) -> dict[str, Any]:
    meta = _json(raw, "meta")
    if meta.get("path") != path:
        raise invalid("meta.path", f"sealed for another path than {path}")
    meta.setdefault("inner", "none")
    if meta["inner"] not in INNER:
        raise invalid("meta.inner", 'expected "none", "client" or "oneshot"')
    return meta


def _client_meta(raw: bytes, path: str) -> dict[str, Any]:
    """The client's own meta (may be empty): when it names a path, it is this one."""
    meta = _json(raw, "meta") if raw else {}
    if meta.get("path", path) != path:
        raise invalid("meta.path", f"the client sealed it for another path than {path}")
    return meta


def _json(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        value = None
    if not isinstance(value, dict):
        raise invalid(what, "expected a JSON object")
    return value


def _json_object(plain: bytes) -> dict[str, Any]:
    try:
        request = json.loads(plain)
    except (ValueError, UnicodeDecodeError, RecursionError):
        request = None
    if not isinstance(request, dict):
        raise SealedRejected(400, "invalid_request", "the sealed body is not a JSON object")
    return request


def _bound(gateway: Mapping[str, Any], client: Mapping[str, Any]) -> dict[str, Any]:
    """The meta the output bound is taken from: the gateway's, capped by the client's."""
    cap, theirs = gateway.get("max_tokens"), client.get("max_tokens")
    if type(cap) is int and type(theirs) is int and 0 < theirs < cap:
        cap = theirs
    return {"path": gateway["path"], "max_tokens": cap}


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
        raise invalid("meta.max_tokens", "the output bound the gateway holds for is required")
    try:
        count = bounds.choices(request, str(meta.get("path")))
    except bounds.BoundInvalid as exc:
        raise SealedRejected(400, "invalid_request", str(exc)) from None
    if count > cap:
        raise invalid("meta.max_tokens", f"too small for the {count} completions asked")
    return cap // count


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


# --- secret release --------------------------------------------------------------------


def open_release(keys: EnclaveKeys, raw: bytes) -> secrets.Release:
    """The release in a `/v1/secrets` body sealed to this enclave and signed by the release
    key it pins (403 `release_refused` otherwise)."""
    try:
        return keys.open_secrets(raw)
    except ReleaseInvalid as exc:
        raise SealedRejected(403, "release_refused", f"{exc.check}: {exc.detail}") from None
    except OpenFailed as exc:
        raise (key_mismatch() if exc.check == "key_id" else open_failed(exc)) from None
    except SealingError as exc:
        raise invalid(exc.check, exc.detail) from None
