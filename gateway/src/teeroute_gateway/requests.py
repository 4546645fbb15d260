"""Reading an OpenAI request body: what the router needs, checked, without copying content.

`parse_request` validates only what the gateway acts on (model or models, messages or
prompt, stream, max tokens, the provider object, a session id); everything else is passed
through to the miner untouched. `upstream_body` is the body the miner gets: its own model
name, usage always requested, a max-token bound always set (the budget hold relies on it),
and the routing fields removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from teeroute.sealing.envelope import SealedRequest
from teeroute.sealing.errors import SealingError
from teeroute_gateway.errors import BadRequest
from teeroute_gateway.provider import ProviderPrefs, parse_provider

CHAT = "chat"
COMPLETION = "text_completion"
PATHS = {CHAT: "/v1/chat/completions", COMPLETION: "/v1/completions"}
ROUTING_FIELDS = ("models", "provider", "session_id", "route", "transforms")
MAX_MODELS = 8


@dataclass(slots=True)
class InferenceRequest:
    kind: str
    """chat or text_completion (the OpenTelemetry GenAI operation names)."""
    body: dict[str, Any]
    models: list[str]
    """The requested model, then the `models` fallbacks, without repeats."""
    stream: bool
    max_tokens: int | None
    """What the client asked for (max_tokens or max_completion_tokens); None: unbounded."""
    prefs: ProviderPrefs
    session_id: str | None
    input_estimate: int
    """Input tokens, estimated from the body size before the miner counts them."""
    sealed: SealedRequest | None = None
    """A client-sealed request: routed by its metadata, forwarded as `raw`, never opened."""
    raw: bytes = b""


def json_object(raw: bytes) -> dict[str, Any]:
    """A request body that must be a JSON object; BadRequest `invalid_json` otherwise."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("the body is not valid JSON", code="invalid_json") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object", code="invalid_json")
    return body


def parse_request(raw: bytes, kind: str, session_header: str | None) -> InferenceRequest:
    body = json_object(raw)
    _check_input(body, kind)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("stream must be true or false", param="stream")
    session = body.get("session_id", session_header)
    if session is not None and not isinstance(session, str):
        raise BadRequest("session_id must be a string", param="session_id")
    return InferenceRequest(
        kind=kind,
        body=body,
        models=_models(body),
        stream=stream,
        max_tokens=_max_tokens(body),
        prefs=parse_provider(body.get("provider")),
        session_id=session or None,
        input_estimate=estimate_input_tokens(len(raw)),
    )


def parse_sealed(raw: bytes, kind: str) -> InferenceRequest:
    """A client-sealed request (docs/sealed-mode.md): only its authenticated metadata is
    read; the body stays sealed to the enclave the client chose."""
    try:
        sealed = SealedRequest.parse(raw)
    except SealingError as exc:
        raise BadRequest(
            f"the sealed request is malformed: {exc}",
            code="sealed_envelope_invalid",
            param=exc.check,
        ) from None
    meta = sealed.meta
    path = PATHS[kind]
    if meta.get("path") != path:
        raise BadRequest(f"the sealed request is for another path than {path}", param="meta.path")
    model = meta.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("meta.model must be a non-empty string", param="meta.model")
    stream = meta.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("meta.stream must be true or false", param="meta.stream")
    return InferenceRequest(
        kind=kind,
        body={},
        models=[model],
        stream=stream,
        max_tokens=_max_tokens({"max_tokens": meta.get("max_tokens")}, "meta."),
        prefs=parse_provider(None),
        session_id=None,
        input_estimate=estimate_input_tokens(len(sealed.ciphertext)),
        sealed=sealed,
        raw=raw,
    )


def estimate_input_tokens(body_bytes: int) -> int:
    """A generous estimate: one token per three bytes of JSON (text runs about four bytes
    per token and the JSON adds quoting and keys). The miner's count replaces it."""
    return body_bytes // 3 + 8


def _check_input(body: dict[str, Any], kind: str) -> None:
    if kind == CHAT:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("messages must be a non-empty list", param="messages")
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise BadRequest(
                    f"messages[{i}] must be an object with a role", param=f"messages[{i}]"
                )
    else:
        prompt = body.get("prompt")
        if not (isinstance(prompt, str) or (isinstance(prompt, list) and prompt)):
            raise BadRequest("prompt must be a string or a non-empty list", param="prompt")


def _models(body: dict[str, Any]) -> list[str]:
    model = body.get("model")
    extra = body.get("models", [])
    if model is not None and (not isinstance(model, str) or not model):
        raise BadRequest("model must be a non-empty string", param="model")
    if not isinstance(extra, list) or not all(isinstance(m, str) and m for m in extra):
        raise BadRequest("models must be a list of model names", param="models")
    names = list(dict.fromkeys(([model] if model else []) + extra))
    if not names:
        raise BadRequest("model is required", param="model")
    if len(names) > MAX_MODELS:
        raise BadRequest(f"at most {MAX_MODELS} models may be listed", param="models")
    return names


def _max_tokens(body: dict[str, Any], where: str = "") -> int | None:
    for field in ("max_completion_tokens", "max_tokens"):
        value = body.get(field)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BadRequest(f"{where}{field} must be a positive integer", param=where + field)
        return value
    return None


def upstream_body(request: InferenceRequest, model: str, max_tokens: int) -> bytes:
    body = {k: v for k, v in request.body.items() if k not in ROUTING_FIELDS}
    body["model"] = model
    if "max_completion_tokens" in body:
        body["max_completion_tokens"] = max_tokens
    else:
        body["max_tokens"] = max_tokens
    if request.stream:
        options = body.get("stream_options")
        body["stream_options"] = {
            **(options if isinstance(options, dict) else {}),
            "include_usage": True,
        }
    return orjson.dumps(body)
