"""The ASGI app in process: stream shape, and a disconnect that stops the stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import MutableMapping
from typing import Any

from teeroute_engine_sim.app import create_app
from teeroute_engine_sim.generation import generate, request_digest
from teeroute_engine_sim.responses import full_response, stream_events
from teeroute_engine_sim.settings import EngineSettings
from teeroute_engine_sim.validation import parse_chat, parse_text
from tests.engine_sim.asgi import chat_scope

MODELS = ("sim-model",)
HELLO = [{"role": "user", "content": "Hello, world!"}]


def events(body: dict[str, Any], parse: Any = parse_chat) -> tuple[Any, Any, list[bytes]]:
    request = parse(json.dumps(body).encode(), MODELS)
    digest = request_digest(seed=0, model=request.model, request_seed=None, prompt=request.prompt)
    completion = generate(digest, request.max_tokens, request.stop)
    streamed = [event for _, event in stream_events(request, completion, "id", 1)]
    return request, completion, streamed


def payloads(streamed: list[bytes]) -> list[dict[str, Any]]:
    assert streamed[-1] == b"data: [DONE]\n\n"
    assert all(e.startswith(b"data: ") and e.endswith(b"\n\n") for e in streamed)
    return [json.loads(event[len(b"data: ") :]) for event in streamed[:-1]]


def test_a_chat_stream_opens_with_the_role_and_ends_with_the_finish_reason_and_usage() -> None:
    body = {"messages": HELLO, "max_tokens": 6, "stream": True}
    request, completion, streamed = events({**body, "stream_options": {"include_usage": True}})
    chunks = payloads(streamed)
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-2]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "length",
    }
    assert all(chunk["usage"] is None for chunk in chunks[:-1])
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == full_response(request, completion, "id", 1)["usage"]
    text = "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks[:-1])
    assert text == completion.text


def test_without_include_usage_chunks_carry_no_usage_field() -> None:
    _, _, streamed = events({"messages": HELLO, "max_tokens": 3, "stream": True})
    assert all("usage" not in chunk for chunk in payloads(streamed))


def test_a_text_stream_carries_one_token_per_chunk() -> None:
    _, completion, streamed = events({"prompt": "Hi", "max_tokens": 5, "stream": True}, parse_text)
    chunks = payloads(streamed)
    assert {chunk["object"] for chunk in chunks} == {"text_completion"}
    assert [chunk["choices"][0]["text"] for chunk in chunks[:-1]] == list(completion.pieces)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_stream_events_wait_for_their_own_token() -> None:
    request = parse_text(b'{"prompt": "Hi", "max_tokens": 4, "stream": true}', MODELS)
    digest = request_digest(seed=0, model=request.model, request_seed=None, prompt=request.prompt)
    completion = generate(digest, request.max_tokens)
    assert [index for index, _ in stream_events(request, completion, "id", 1)] == [0, 1, 2, 3, 3, 3]


def test_a_client_disconnecting_mid_stream_stops_the_stream() -> None:
    """Paced at 20 tokens/s the stream would last ≥ 0.8 s and send ≥ 18 events; the client
    leaves after 3, and the app must return without sending the rest."""
    app = create_app(EngineSettings(tokens_per_s=20))
    body = json.dumps({"messages": HELLO, "max_tokens": 1000, "stream": True}).encode()
    sent: list[MutableMapping[str, Any]] = []
    left = asyncio.Event()
    requests = iter([{"type": "http.request", "body": body, "more_body": False}])

    async def receive() -> dict[str, Any]:
        message = next(requests, None)
        if message is not None:
            return message
        await left.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)
        if sum(m["type"] == "http.response.body" for m in sent) == 3:
            left.set()

    scope = chat_scope()
    asyncio.run(asyncio.wait_for(app(scope, receive, send), timeout=30))
    bodies = [m["body"] for m in sent if m["type"] == "http.response.body"]
    assert len(bodies) == 3
    assert not any(b"[DONE]" in chunk for chunk in bodies)
