"""The sealed answer to an inference request, wire v2 (docs/sealed-mode.md).

    sealed_body(answer, opened, keys)   -> the response body, piece by piece (one write each)

Each piece the engine's connection yields (whatever one read returned, so what arrived
together leaves together) becomes one CHUNK frame under the innermost session, sealed and
passed on at once: the engine's bytes go into the AEAD as they are, with no JSON or base64 per
chunk. A stream holds back only an unfinished SSE event, until the read that completes it
(`usage.meter_for`), so frames split only between events. Then, in one write: the final CHUNK
(carrying what was held back, if anything), the RECEIPT frame (tag kind 1 with the gateway
session's receipt key, kind 2 with the client session's for a client-sealed request), and a
ROOT frame when the gateway session's batch is due (`RootBatcher`: every K receipts, or once
the oldest uncovered one waited S seconds).

If the engine breaks off, an OpenAI-style SSE error event is sealed into the final chunk and
the receipt says `complete: false`, so the reader still sees an authenticated end. The
receipt's `request_sha256` and `response_sha256` are the innermost session's: the request
and the CHUNKs the client itself opens (the gateway, relaying a client's frames, hashes the
same bytes).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator
from typing import Any

from teeroute.sealing.receipt_body import iso_utc
from teeroute.sealing.receipt_mac import CLIENT_TAG, GATEWAY_TAG
from teeroute_enclave import proxy, usage
from teeroute_enclave.keys import EnclaveKeys
from teeroute_enclave.sealed import MAX_TEXT, Opened
from teeroute_enclave.timing import StreamTimer


def sealed_body(
    answer: proxy.EngineResponse,
    opened: Opened,
    keys: EnclaveKeys,
    clock: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.perf_counter,
) -> Generator[bytes, None, None]:
    """The sealed response body: a CHUNK per engine read as it arrives, then the final
    CHUNK, the RECEIPT and any ROOT frame together."""
    meter = usage.meter_for(_content_type(answer.headers))
    timer = StreamTimer(opened.received_at)
    timed = opened.timings and isinstance(meter, usage.StreamMeter)
    reply = opened.reply
    complete = True
    try:
        for piece in answer.chunks():
            ready = meter.feed(piece)
            if ready:
                if timed:
                    timer.feed(ready, monotonic())
                yield reply.chunk(ready, now=clock())
        rest = meter.tail()
    except proxy.EngineError as exc:
        complete = False
        rest = error_event(exc)  # an unfinished event the engine left is dropped
    now = clock()
    end = reply.chunk(rest, final=True, now=now)
    counted = usage.account(meter, opened.input_estimate, answer.status)
    fields = {
        "request_id": opened.request_id,
        "model": opened.model,
        "served_model": _served_model(meter.model, opened),
        "input_tokens": counted.input_tokens,
        "output_tokens": counted.output_tokens,
        "usage_source": counted.source,
        "status": answer.status,
        "complete": complete,
        "request_sha256": reply.request_sha256,
        "response_sha256": reply.response_sha256,
        "hpke_key_sha256": keys.hpke_key_id,
        "signing_key_sha256": keys.signing_key_id,
        "issued_at": iso_utc(now),
        **(timer.fields(counted.output_tokens) if timed else {}),
    }
    receipt, root = opened.gateway.issue(fields, receipt_keys(opened), now)
    yield end + receipt + (root or b"")  # the end of the answer leaves in one write


def receipt_keys(opened: Opened) -> list[tuple[int, bytes]]:
    """(tag kind, session receipt key) for each session the request came through."""
    keys = [(GATEWAY_TAG, opened.gateway.session.receipt_key)]
    if opened.client_receipt_key is not None:
        keys.append((CLIENT_TAG, opened.client_receipt_key))
    return keys


def error_event(error: proxy.EngineError) -> bytes:
    """The OpenAI-style SSE error event that ends a stream the engine broke off."""
    body: dict[str, Any] = {
        "error": {"message": str(error), "type": error.kind, "code": error.status}
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def _content_type(headers: list[tuple[str, str]]) -> str:
    return next((value for name, value in headers if name.lower() == "content-type"), "")


def _served_model(engine_model: str | None, opened: Opened) -> str:
    for name in (engine_model, opened.upstream_model):
        if name and len(name) <= MAX_TEXT:
            return name
    return opened.model
