"""OpenAI response bodies and server-sent events for a generated `Completion`.

Streams follow OpenAI: chat chunks (`chat.completion.chunk`) open with the assistant role
(an event of its own, `ROLE_INDEX`),
then one chunk per token, then an empty delta with the finish reason; completion chunks
(`text_completion`) carry one token's text each, then the finish reason. With
`stream_options.include_usage`, every chunk has `"usage": null` and one more chunk, with no
choices, carries the usage. `data: [DONE]` ends the stream.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from teeroute_engine_sim.generation import Completion
from teeroute_engine_sim.validation import CompletionRequest

DONE = b"data: [DONE]\n\n"
ROLE_INDEX = -1
"""The index a chat stream's role-only delta waits for: none (the app sends it with the
first token, or at once with `role_first`)."""

_OBJECT = {"chat": "chat.completion", "text": "text_completion"}
_CHUNK_OBJECT = {"chat": "chat.completion.chunk", "text": "text_completion"}


def dumps(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def usage(request: CompletionRequest, completion: Completion) -> dict[str, int]:
    completion_tokens = completion.completion_tokens
    return {
        "prompt_tokens": request.prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": request.prompt_tokens + completion_tokens,
    }


def response_id(request: CompletionRequest, unique: str) -> str:
    return f"chatcmpl-{unique}" if request.kind == "chat" else f"cmpl-{unique}"


def full_response(
    request: CompletionRequest, completion: Completion, identifier: str, created: int
) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0}
    if request.kind == "chat":
        choice["message"] = {"role": "assistant", "content": completion.text}
    else:
        choice["text"] = completion.text
    choice["logprobs"] = None
    choice["finish_reason"] = completion.finish_reason
    return {
        "id": identifier,
        "object": _OBJECT[request.kind],
        "created": created,
        "model": request.model,
        "choices": [choice],
        "usage": usage(request, completion),
    }


def stream_events(
    request: CompletionRequest, completion: Completion, identifier: str, created: int
) -> Iterator[tuple[int, bytes]]:
    """The stream's SSE events, each with the index of the token it waits for."""
    head = {
        "id": identifier,
        "object": _CHUNK_OBJECT[request.kind],
        "created": created,
        "model": request.model,
    }

    def event(choices: list[dict[str, Any]]) -> bytes:
        chunk = {**head, "choices": choices}
        if request.include_usage:
            chunk["usage"] = None
        return b"data: " + dumps(chunk) + b"\n\n"

    chat = request.kind == "chat"
    if chat:
        yield ROLE_INDEX, event([_choice(chat, {"role": "assistant", "content": ""}, None)])
    for index, piece in enumerate(completion.pieces):
        if piece:
            yield index, event([_choice(chat, {"content": piece} if chat else piece, None)])
    last = completion.completion_tokens - 1
    yield last, event([_choice(chat, {} if chat else "", completion.finish_reason)])
    if request.include_usage:
        final = {**head, "choices": [], "usage": usage(request, completion)}
        yield last, b"data: " + dumps(final) + b"\n\n"
    yield last, DONE


def empty_event(request: CompletionRequest, identifier: str, created: int) -> bytes:
    """A chunk with an empty delta (no content): what a padding miner sends before its
    first token."""
    chat = request.kind == "chat"
    chunk = {
        "id": identifier,
        "object": _CHUNK_OBJECT[request.kind],
        "created": created,
        "model": request.model,
        "choices": [_choice(chat, {"content": ""} if chat else "", None)],
    }
    return b"data: " + dumps(chunk) + b"\n\n"


def _choice(chat: bool, content: dict[str, str] | str, finish_reason: str | None) -> dict[str, Any]:
    if chat:
        return {"index": 0, "delta": content, "logprobs": None, "finish_reason": finish_reason}
    return {"index": 0, "text": content, "logprobs": None, "finish_reason": finish_reason}
