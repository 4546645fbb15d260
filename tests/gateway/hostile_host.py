"""A miner's host that tampers with the sealed answers it relays, as a real process: it stands
between the gateway and a real enclave agent, passes every request on unchanged (session
HELLOs included, so the gateway's session with the enclave is real) and rewrites the wire v2
frames of inference answers as its current mode says. Run as
`python -m tests.gateway.hostile_host --port P --agent URL`; `POST /_mode {"mode": M}` sets
the mode for the answers that follow:

    honest    unchanged
    flip      one bit of the second CHUNK's ciphertext flipped
    swap      the first two CHUNKs swapped (reordered)
    drop      the first CHUNK left out
    replay    the first CHUNK sent twice
    cut       everything after the first CHUNK left out (the body ends cleanly there)
    splice    the first CHUNK taken from the previous answer (another request's)
    noroots   the enclave's signed roots withheld: ROOT frames left out of answers, and
              POST /v1/sessions/roots answered with none

`GET /_sessions` lists the gateway session id (hex) of every inference request relayed.
`POST /_seen {"needle": S}` says whether S was in any byte the host relayed (requests and
answers, the last 8 MiB): what an eavesdropping host could read.
"""

from __future__ import annotations

import argparse
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from teeroute.sealing import frames
from teeroute.sealing.frames import Frame, FrameDecoder, FrameType

INFERENCE = ("/v1/chat/completions", "/v1/completions")
ROOTS = "/v1/sessions/roots"
SEEN_LIMIT = 8 << 20


def remember(seen: bytearray, data: bytes) -> None:
    """Keeps the last SEEN_LIMIT bytes relayed (a needle cut by the boundary is not sought)."""
    seen += data
    del seen[: max(0, len(seen) - SEEN_LIMIT)]


def tampered(mode: str, found: list[Frame], previous: list[Frame]) -> list[Frame]:
    chunks = [n for n, f in enumerate(found) if f.type == FrameType.CHUNK]
    out = list(found)
    first, second = chunks[0], chunks[1] if len(chunks) > 1 else chunks[0]
    if mode == "flip":
        payload = bytearray(out[second].payload)
        payload[-3] ^= 0x01
        out[second] = Frame(FrameType.CHUNK, bytes(payload))
    elif mode == "swap":
        out[first], out[second] = out[second], out[first]
    elif mode == "drop":
        del out[first]
    elif mode == "replay":
        out.insert(first, out[first])
    elif mode == "cut":
        out = out[: first + 1]
    elif mode == "splice" and previous:
        out[first] = next(f for f in previous if f.type == FrameType.CHUNK)
    elif mode == "noroots":
        out = [f for f in out if f.type != FrameType.ROOT]
    return out


def create_app(agent: str) -> Starlette:
    client = httpx.AsyncClient(base_url=agent, timeout=60)
    state: dict[str, Any] = {"mode": "honest", "previous": [], "sessions": []}
    seen = bytearray()

    async def mode(request: Request) -> Response:
        state["mode"] = (await request.json())["mode"]
        return JSONResponse({"mode": state["mode"]})

    async def sessions(request: Request) -> Response:
        return JSONResponse(state["sessions"])

    async def was_seen(request: Request) -> Response:
        needle = str((await request.json())["needle"]).encode()
        return JSONResponse({"found": needle in seen})

    async def relay(request: Request) -> Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host",)}
        content = await request.body()
        remember(seen, content)
        if request.url.path in INFERENCE:
            state["sessions"].append(content[8:24].hex())
        if request.url.path == ROOTS and state["mode"] == "noroots":
            return Response(b"", 200, {"content-type": frames.CONTENT_TYPE})
        answer = await client.request(
            request.method, request.url.path, content=content, headers=headers
        )
        remember(seen, answer.content)
        kind = answer.headers.get("content-type", "")
        passed = {"content-type": kind} if kind else {}
        if request.url.path not in INFERENCE or answer.status_code != 200:
            return Response(answer.content, answer.status_code, passed)
        found = FrameDecoder().feed(answer.content)
        out = tampered(state["mode"], found, state["previous"])
        state["previous"] = found

        async def body() -> Any:
            for frame in out:  # one write per frame: the gateway reads them as a stream
                yield frames.encode(frame.type, frame.payload)

        return StreamingResponse(body(), 200, passed)

    return Starlette(
        routes=[
            Route("/_mode", mode, methods=["POST"]),
            Route("/_sessions", sessions, methods=["GET"]),
            Route("/_seen", was_seen, methods=["POST"]),
            Route("/{path:path}", relay, methods=["GET", "POST"]),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--agent", required=True)
    args = parser.parse_args()
    uvicorn.run(
        create_app(args.agent), host="127.0.0.1", port=args.port, log_level="warning",
        access_log=False,
    )  # fmt: skip


if __name__ == "__main__":
    main()
