"""A miner that fails in one way, as a real process, for the gateway's fault tests. Run as
`python -m tests.gateway.faulty_miner --port P --mode MODE`:

    hang     a stream sends three tokens, then nothing more (the connection stays open)
    die      a stream sends three tokens, then the process exits (connection reset)
    garbage  every answer is 200 with a body that is not JSON
    babble   a stream sends three tokens, an HTML page as an event, more tokens and [DONE]

Non-streamed requests in `hang` and `die` modes get the same fault before any byte.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import AsyncIterator

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

TOKENS_BEFORE_FAULT = 3


def _chunk(content: str) -> bytes:
    event = {
        "id": "chatcmpl-faulty",
        "object": "chat.completion.chunk",
        "model": "sim-model",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}],
    }
    return b"data: " + orjson.dumps(event) + b"\n\n"


async def _fault(mode: str) -> AsyncIterator[bytes]:
    if mode == "babble":
        yield b"<html><body>internal oops</body></html>\n\n"
        for n in range(3):
            yield _chunk(f"after{n} ")
        yield b"data: [DONE]\n\n"
        return
    if mode == "die":
        await asyncio.sleep(0.2)  # let the tokens already written reach the gateway
        os._exit(1)
    await asyncio.sleep(3600)  # hang


def create_app(mode: str) -> Starlette:
    async def health(_: Request) -> Response:
        return Response(b"ok")

    async def completions(request: Request) -> Response:
        body = orjson.loads(await request.body())
        if mode == "garbage":
            return Response(b"<html>internal oops</html>", media_type="application/json")
        if not body.get("stream") and mode != "babble":
            async for _ in _fault(mode):
                pass

        async def tokens() -> AsyncIterator[bytes]:
            for n in range(TOKENS_BEFORE_FAULT):
                yield _chunk(f"t{n} ")
            async for piece in _fault(mode):
                yield piece

        return StreamingResponse(tokens(), media_type="text/event-stream")

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/v1/chat/completions", completions, methods=["POST"]),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=["hang", "die", "garbage", "babble"], required=True)
    args = parser.parse_args()
    uvicorn.run(
        create_app(args.mode), host="127.0.0.1", port=args.port, log_level="warning",
        access_log=False,
    )  # fmt: skip


if __name__ == "__main__":
    main()
