"""What goes out on a sealed hop (wire v2): one REQUEST frame of the gateway's session.

    sealed_plain(pooled, ...)     gateway mode: the plain OpenAI body the miner should get,
                                  sealed in the session (meta inner "none")
    wrapped_client(pooled, ...)   client mode: the client's own REQUEST or ONESHOT frame,
                                  unopened, as the body of a gateway REQUEST (inner "client"
                                  or "oneshot")
    session_request(pooled, ...)  any other gateway REQUEST (a client HELLO, a roots flush)

The meta is canonical JSON the enclave authenticates: path, public model, stream, the output
bound the gateway holds credit for, what is inside, and when it was sealed. The request id and
the pool's upstream model go as headers, as on a plain hop (the receipt names the request id,
so a host changing it only gets the receipt refused).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from teeroute.sealing.receipt_body import TIMINGS_META
from teeroute_gateway.catalog import Endpoint
from teeroute_gateway.client_sealed import ClientSealed
from teeroute_gateway.requests import PATHS, InferenceRequest, upstream_body
from teeroute_gateway.sealed import SEALED_TYPE, Hop
from teeroute_gateway.selection import Candidate
from teeroute_gateway.sessions import Pooled, SessionGone, SessionPool

Inner = str  # "none" | "client" | "oneshot"


def meta_bytes(path: str, inner: Inner, now: float, **fields: Any) -> bytes:
    """Canonical JSON (sorted keys, no spaces) of the gateway's meta."""
    # receipt_timings: this gateway reads the agent's optional timing fields in receipts
    meta = {"path": path, "inner": inner, "sealed_at": int(now), TIMINGS_META: True, **fields}
    return orjson.dumps(meta, option=orjson.OPT_SORT_KEYS)


def headers(request_id: str, upstream_model: str, stream: bool) -> bytes:
    accept = b"Accept: text/event-stream\r\n" if stream else b""
    return b"Content-Type: %s\r\nX-Teeroute-Upstream-Model: %s\r\nX-Request-Id: %s\r\n%s" % (
        SEALED_TYPE,
        upstream_model.encode(),
        request_id.encode(),
        accept,
    )


def sealed_plain(
    pooled: Pooled, path: str, model: str, stream: bool, bound: int, body: bytes, rid: str
) -> tuple[Hop, bytes]:
    """Gateway mode: (the hop that opens the answer, the REQUEST frame)."""
    now = time.time()
    meta = meta_bytes(path, "none", now, model=model, stream=stream, max_tokens=bound)
    frame, exchange = pooled.session.seal_request(meta, body, now)
    hop = Hop(
        "gateway",
        pooled,
        exchange,
        request_id=rid,
        request_sha256=exchange.request_sha256,
        request_bytes=len(body),
    )
    return hop, frame


def wrapped_client(
    pooled: Pooled,
    path: str,
    model: str,
    sealed: ClientSealed,
    stream: bool,
    bound: int,
    rid: str,
) -> tuple[Hop, bytes]:
    """Client mode: (the hop that counts the answer's frames, the REQUEST frame)."""
    now = time.time()
    meta = meta_bytes(path, sealed.inner, now, model=model, stream=stream, max_tokens=bound)
    frame, exchange = pooled.session.seal_request(meta, sealed.raw, now)
    hop = Hop(
        "client",
        pooled,
        exchange,
        request_id=rid,
        request_sha256=sealed.request_sha256,
        request_bytes=len(sealed.raw),
    )
    return hop, frame


def session_request(pooled: Pooled, path: str, inner: Inner, body: bytes) -> bytes:
    """A gateway REQUEST to `path` whose answer is not sealed chunks (a WELCOME, ROOTs)."""
    now = time.time()
    return pooled.session.seal_request(meta_bytes(path, inner, now), body, now)[0]


Post = Callable[[Endpoint, bytes, bytes], Awaitable[bytes]]
"""POSTs wire-v2 bytes to an endpoint's path; its v2 answer (sessions.post_frames)."""


async def post_in_session(
    pool: SessionPool, post: Post, endpoint: Endpoint, path: str, inner: Inner, body: bytes
) -> bytes:
    """A gateway REQUEST to `path` in the endpoint's session; a session the enclave no
    longer knows is opened again once."""
    for again in (False, True):
        pooled = await pool.get(endpoint)
        try:
            return await post(endpoint, path.encode(), session_request(pooled, path, inner, body))
        except SessionGone:
            if again:
                raise
            pool.forget(pooled)
    raise AssertionError("unreachable")


def sealed_outgoing(
    pooled: Pooled,
    mode: str,
    candidate: Candidate,
    request: InferenceRequest,
    per_choice: int,
    rid: str,
) -> tuple[Hop, bytes]:
    """The hop and REQUEST frame of one sealed attempt (`per_choice`: the limit held for)."""
    path = PATHS[request.kind]
    bound = per_choice * request.choices  # the whole bound held for
    model = candidate.model.name
    if mode == "client" and request.sealed is not None:
        return wrapped_client(pooled, path, model, request.sealed, request.stream, bound, rid)
    body = upstream_body(request, candidate.backend.upstream_model, per_choice)
    return sealed_plain(pooled, path, model, request.stream, bound, body, rid)
