"""Reading an OpenAI request body: what the router needs, checked, without copying content.

`parse_request` validates only what the gateway acts on (model or models, messages or
prompt, stream, max tokens, the provider object, a session id); everything else is passed
through to the miner untouched. `upstream_body` is the body the miner gets: its own model
name, usage always requested, a max-token bound always set (the budget hold relies on it),
and the routing fields removed.

The output bound (teeroute.sealing.bounds): the per-choice limit (the smaller of
`max_tokens` and `max_completion_tokens` when both are given) times `choices` (n, best_of,
a batch of prompts). The hold covers the bound, and every limit field the miner gets says
the per-choice limit held for, so no engine can pick a larger one. A client-sealed request
carries its bound in `meta.max_tokens` (required: the gateway cannot read the body; the
enclave enforces it on the opened body).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from teeroute.sealing import bounds
from teeroute_gateway.client_sealed import ClientSealed
from teeroute_gateway.errors import BadRequest
from teeroute_gateway.provider import ProviderPrefs, parse_provider

CHAT = "chat"
COMPLETION = "text_completion"
PATHS = {CHAT: "/v1/chat/completions", COMPLETION: "/v1/completions"}
ROUTING_FIELDS = ("models", "provider", "session_id", "route", "transforms")
MAX_MODELS = 8
T = TypeVar("T")


@dataclass(slots=True)
class InferenceRequest:
    kind: str
    """chat or text_completion (the OpenTelemetry GenAI operation names)."""
    body: dict[str, Any]
    models: list[str]
    """The requested model, then the `models` fallbacks, without repeats."""
    stream: bool
    max_tokens: int | None
    """The per-choice limit the client asked for (the smaller of max_tokens and
    max_completion_tokens; a sealed request: its meta.max_tokens, for all choices)."""
    prefs: ProviderPrefs
    session_id: str | None
    input_estimate: int
    """Input tokens, estimated from the body size before the miner counts them."""
    sealed: ClientSealed | None = None
    """A client-sealed request: routed by its metadata, forwarded as `raw`, never opened."""
    raw: bytes = b""
    choices: int = 1
    """Completions the engine generates (n, best_of, prompts); a sealed request counts them
    in its meta.max_tokens."""


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
        max_tokens=_bounded(bounds.asked_max_tokens, body),
        prefs=parse_provider(body.get("provider")),
        session_id=session or None,
        input_estimate=estimate_input_tokens(len(raw)),
        choices=_bounded(bounds.choices, body, PATHS[kind]),
    )


def parse_sealed(sealed: ClientSealed, kind: str) -> InferenceRequest:
    """A client-sealed request (docs/sealed-mode.md, client_sealed.py): only its
    authenticated metadata is read; the body stays sealed to the enclave the client chose."""
    meta = sealed.meta
    path = PATHS[kind]
    if meta.get("path", path) != path:
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
        max_tokens=_sealed_bound(meta.get("max_tokens")),
        prefs=parse_provider(None),
        session_id=None,
        input_estimate=estimate_input_tokens(sealed.ciphertext_bytes),
        sealed=sealed,
        raw=sealed.raw,
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


def _bounded(rule: Callable[..., T], *args: Any) -> T:
    try:
        return rule(*args)
    except bounds.BoundInvalid as exc:
        raise BadRequest(str(exc), param=exc.param) from None


def _sealed_bound(value: Any) -> int:
    """meta.max_tokens: the whole request's output bound, required (the enclave refuses a
    body asking for more; without it the gateway would hold for less than may come)."""
    if value is None:
        raise BadRequest(
            "a sealed request must carry its output bound in meta.max_tokens",
            code="sealed_bound_missing",
            param="meta.max_tokens",
        )
    if type(value) is not int or value < 1:
        raise BadRequest("meta.max_tokens must be a positive integer", param="meta.max_tokens")
    return value


def upstream_body(request: InferenceRequest, model: str, max_tokens: int) -> bytes:
    """`max_tokens`: the per-choice limit held for; every limit field given says it."""
    body = {k: v for k, v in request.body.items() if k not in ROUTING_FIELDS}
    body["model"] = model
    given = [name for name in bounds.LIMIT_FIELDS if body.get(name) is not None]
    for name in given or ["max_tokens"]:
        body[name] = max_tokens
    if request.stream:
        options = body.get("stream_options")
        body["stream_options"] = {
            **(options if isinstance(options, dict) else {}),
            "include_usage": True,
        }
    return orjson.dumps(body)
