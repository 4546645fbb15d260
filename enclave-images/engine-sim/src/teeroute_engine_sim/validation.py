"""Request bodies of /v1/chat/completions and /v1/completions → `CompletionRequest`.

Plain JSON and hand-written checks (no pydantic on the hot path); every problem is an
`InvalidRequest` naming the field, an unknown model a `ModelNotFound`. Sampling parameters the
simulator does not model (temperature, top_p, logprobs, tools, …) are accepted and ignored.

Prompt tokens of a chat follow OpenAI's published counting rule, applied to the simulator's
tokenizer: each message costs 3 tokens plus its text (plus 1 for a `name`), and 3 more prime
the reply. Only text content parts count.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard

from teeroute_engine_sim.errors import InvalidRequest, ModelNotFound
from teeroute_engine_sim.tokens import count_tokens

Kind = Literal["chat", "text"]

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
TOKENS_PRIMING_REPLY = 3
TEXT_DEFAULT_MAX_TOKENS = 16  # the legacy completions API's default, as OpenAI and vLLM
MAX_STOP_SEQUENCES = 4


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    kind: Kind
    model: str
    prompt: str
    """Canonical prompt: the text, or the messages as sorted compact JSON."""
    prompt_tokens: int
    max_tokens: int | None
    stop: tuple[str, ...]
    stream: bool
    include_usage: bool
    seed: int | None


def parse_chat(body: bytes, models: Sequence[str]) -> CompletionRequest:
    data = _json_object(body)
    prompt, prompt_tokens = _messages(data.get("messages"))
    limit = _integer(data, "max_completion_tokens", minimum=1)
    if limit is None:
        limit = _integer(data, "max_tokens", minimum=1)
    return _request("chat", data, models, prompt, prompt_tokens, limit)


def parse_text(body: bytes, models: Sequence[str]) -> CompletionRequest:
    data = _json_object(body)
    prompt, prompt_tokens = _prompt(data.get("prompt"))
    limit = _integer(data, "max_tokens", minimum=1)
    limit = TEXT_DEFAULT_MAX_TOKENS if limit is None else limit
    return _request("text", data, models, prompt, prompt_tokens, limit)


def _request(
    kind: Kind,
    data: dict[str, Any],
    models: Sequence[str],
    prompt: str,
    prompt_tokens: int,
    max_tokens: int | None,
) -> CompletionRequest:
    n = _integer(data, "n", minimum=1)
    if n not in (None, 1):
        raise InvalidRequest("Only n=1 is supported.", param="n")
    stream = _boolean(data, "stream")
    return CompletionRequest(
        kind=kind,
        model=_model(data.get("model"), models),
        prompt=prompt,
        prompt_tokens=prompt_tokens,
        max_tokens=max_tokens,
        stop=_stop(data.get("stop")),
        stream=stream,
        include_usage=_include_usage(data.get("stream_options"), stream),
        seed=_integer(data, "seed"),
    )


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise InvalidRequest("The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return data


def _model(value: object, models: Sequence[str]) -> str:
    if value is None:
        return models[0]  # as vLLM: the first served model
    if not isinstance(value, str):
        raise InvalidRequest("`model` must be a string.", param="model")
    if value not in models:
        raise ModelNotFound(value)
    return value


def _integer(data: dict[str, Any], name: str, minimum: int | None = None) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidRequest(f"`{name}` must be an integer.", param=name)
    if minimum is not None and value < minimum:
        raise InvalidRequest(f"`{name}` must be at least {minimum}.", param=name)
    return value


def _boolean(data: dict[str, Any], name: str) -> bool:
    value = data.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidRequest(f"`{name}` must be a boolean.", param=name)
    return value


def _include_usage(options: object, stream: bool) -> bool:
    if options is None:
        return False
    if not stream:
        raise InvalidRequest(
            "`stream_options` is only allowed with stream=true.", param="stream_options"
        )
    if not isinstance(options, dict):
        raise InvalidRequest("`stream_options` must be an object.", param="stream_options")
    return _boolean(options, "include_usage")


def _stop(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if (
        isinstance(value, list)
        and len(value) <= MAX_STOP_SEQUENCES
        and all(isinstance(item, str) for item in value)
    ):
        return tuple(value)
    raise InvalidRequest(
        f"`stop` must be a string or a list of at most {MAX_STOP_SEQUENCES} strings.",
        param="stop",
    )


def _messages(value: object) -> tuple[str, int]:
    if not isinstance(value, list) or not value:
        raise InvalidRequest("`messages` must be a non-empty list.", param="messages")
    tokens = TOKENS_PRIMING_REPLY
    for index, message in enumerate(value):
        tokens += _message_tokens(message, f"messages[{index}]")
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return canonical, tokens


def _message_tokens(message: object, where: str) -> int:
    if not isinstance(message, dict) or not isinstance(message.get("role"), str):
        raise InvalidRequest(f"`{where}` must be an object with a string `role`.", param=where)
    tokens = TOKENS_PER_MESSAGE + _content_tokens(message.get("content"), f"{where}.content")
    if message.get("name") is not None:
        tokens += TOKENS_PER_NAME
    return tokens


def _content_tokens(content: object, where: str) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return count_tokens(content)
    if isinstance(content, list):
        return sum(_part_tokens(part, f"{where}[{index}]") for index, part in enumerate(content))
    raise InvalidRequest(f"`{where}` must be a string, a list of parts or null.", param=where)


def _part_tokens(part: object, where: str) -> int:
    if not isinstance(part, dict) or not isinstance(part.get("type"), str):
        raise InvalidRequest(f"`{where}` must be an object with a string `type`.", param=where)
    if part["type"] != "text":
        return 0
    text = part.get("text")
    if not isinstance(text, str):
        raise InvalidRequest(f"`{where}.text` must be a string.", param=where)
    return count_tokens(text)


def _prompt(value: object) -> tuple[str, int]:
    """A string, a list holding one string, or token ids (a list of integers, or a list
    holding one such list). Batches of prompts are refused: they need n choices."""
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str | list):
        value = value[0]
    if isinstance(value, str):
        return value, count_tokens(value)
    if _is_token_ids(value):
        return json.dumps(value, separators=(",", ":")), len(value)
    raise InvalidRequest(
        "`prompt` must be a string or a list of token ids (batches are not supported).",
        param="prompt",
    )


def _is_token_ids(value: object) -> TypeGuard[list[int]]:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(item, int) and not isinstance(item, bool) for item in value)
    )
