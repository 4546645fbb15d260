"""A paced stream leaves one write per token, as a real engine's steps do, even when the event
loop falls behind the pace (the paced benchmark counts on it: per-token cost is per event)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import MutableMapping
from typing import Any

import pytest

from teeroute_engine_sim.app import create_app
from teeroute_engine_sim.settings import EngineSettings
from tests.engine_sim.asgi import chat_scope

CHAT = [{"role": "user", "content": "Tell the benchmark a long story (342)."}]  # 255 tokens


def writes(settings: EngineSettings, max_tokens: int) -> list[bytes]:
    """The body writes the app makes for one streamed chat request, in order."""
    app = create_app(settings)
    body = json.dumps({"messages": CHAT, "max_tokens": max_tokens, "stream": True}).encode()
    sent: list[MutableMapping[str, Any]] = []
    requests = iter([{"type": "http.request", "body": body, "more_body": False}])

    async def receive() -> dict[str, Any]:
        message = next(requests, None)
        if message is not None:
            return message
        await asyncio.Event().wait()  # never disconnects
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = chat_scope()
    asyncio.run(asyncio.wait_for(app(scope, receive, send), timeout=30))
    return [m["body"] for m in sent if m["type"] == "http.response.body" and m.get("body")]


def content_tokens(write: bytes) -> int:
    return sum(
        1
        for event in write.split(b"\n\n")
        if event.startswith(b"data: {")
        and json.loads(event[6:])["choices"]
        and json.loads(event[6:])["choices"][0]["delta"].get("content")
    )


@pytest.mark.parametrize(
    ("ttft_ms", "tokens_per_s"),
    [
        (0, 1_000_000),  # every token due within microseconds: the loop is always behind
        (1, 200_000),
        (0, 2_000),  # on time, mostly
    ],
)
def test_a_paced_stream_writes_each_token_alone_even_when_behind(
    ttft_ms: float, tokens_per_s: float
) -> None:
    found = writes(EngineSettings(ttft_ms=ttft_ms, tokens_per_s=tokens_per_s), 64)
    assert [content_tokens(w) for w in found] == [1] * 64
    assert found[0].count(b"data: ") == 2  # the role rides with the first token
    assert found[-1].endswith(b"data: [DONE]\n\n")  # finish and [DONE] with the last token


def test_an_unpaced_stream_is_one_write() -> None:
    for settings in (EngineSettings(), EngineSettings(ttft_ms=5)):
        [whole] = writes(settings, 64)
        assert content_tokens(whole) == 64 and whole.endswith(b"data: [DONE]\n\n")
