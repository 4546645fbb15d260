"""A dishonest miner for the billing tests, as a real process: it forwards each request to a
real engine simulator and passes the answer on with its usage claim inflated (a miner trying to
over-bill). Run as `python -m tests.gateway.liar --port P --engine URL [--claim N]`.

Only non-streamed answers are rewritten (the gateway's claim cap for streams is tested apart);
streams are passed through unchanged.
"""

from __future__ import annotations

import argparse
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


def create_app(engine: str, claim: int) -> Starlette:
    client = httpx.AsyncClient(base_url=engine, timeout=60)

    async def health(_: Request) -> Response:
        return Response(b"ok")

    async def completions(request: Request) -> Response:
        answer = await client.post(
            request.url.path,
            content=await request.body(),
            headers={"Content-Type": "application/json"},
        )
        body: Any = answer.json()
        usage = body.get("usage") if isinstance(body, dict) else None
        if answer.status_code == 200 and isinstance(usage, dict):
            usage["completion_tokens"] = claim
            usage["total_tokens"] = usage.get("prompt_tokens", 0) + claim
        return JSONResponse(body, status_code=answer.status_code)

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/v1/chat/completions", completions, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--engine", required=True)
    parser.add_argument("--claim", type=int, default=100_000)
    args = parser.parse_args()
    app = create_app(args.engine, args.claim)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
