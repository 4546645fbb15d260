"""A sealing client for the gateway's tests, built from the wire v2 primitives
(`teeroute.sealing.session`, `frames`, `receipt_mac`) as a client does it: a client session
opened through the gateway's POST /v1/sessions, requests sealed in it (or one-shot), answers
read frame by frame (CHUNKs opened in order, the RECEIPT's kind 2 tag checked)."""

from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from teeroute.sealing import frames
from teeroute.sealing.errors import SealingError
from teeroute.sealing.frames import FrameDecoder, FrameType
from teeroute.sealing.receipt_mac import CLIENT_TAG, ReceiptV2, check_tag, parse_receipt
from teeroute.sealing.session import Exchange, Session, SessionParams, initiate

V2 = frames.CONTENT_TYPE
CHAT = "/v1/chat/completions"


def client_params(lease: dict[str, Any], lifetime_s: int = 300) -> SessionParams:
    now = int(time.time())
    return SessionParams(
        session_id=os.urandom(16),
        enclave_hpke_sha256=lease["hpkeKeySha256"],
        enclave_signing_sha256=lease["signingKeySha256"],
        attested={"tee": lease["tee"], "measurement": lease["measurement"]},
        initiator="client",
        created_at=now,
        expires_at=now + lifetime_s,
    )


def hello(lease: dict[str, Any]) -> tuple[bytes, Session]:
    return initiate(base64.b64decode(lease["hpkePublicKey"]), client_params(lease))


def open_session(gw: str, key: str, lease: dict[str, Any]) -> Session:
    """A client session with the lease's enclave, opened through the gateway."""
    frame, session = hello(lease)
    answer = post_hello(gw, key, frame, lease["hpkeKeySha256"])
    assert answer.status_code == 200, answer.text
    session.confirm(frames.decode_one(answer.content).payload)
    return session


def post_hello(gw: str, key: str, frame: bytes, key_id: str) -> httpx.Response:
    return httpx.post(
        f"{gw}/v1/sessions",
        content=frame,
        headers={
            "Authorization": f"Bearer {key}",
            "Content-Type": V2,
            "x-teeroute-enclave-key": key_id,
        },
        timeout=30,
    )


def meta(
    body: dict[str, Any], path: str = CHAT, bound: bool = True, timings: bool = False
) -> bytes:
    """The client's meta: path, model, stream, the output bound (unless `bound` is False:
    what a client leaving it out sends), when it was sealed; with `timings`, that the client
    reads the agent's timings in receipts (else it is a client from before them)."""
    fields = {
        "path": path,
        "model": body["model"],
        "stream": bool(body.get("stream")),
        "sealed_at": int(time.time()),
    }
    if bound:
        fields["max_tokens"] = body["max_tokens"]
    if timings:
        fields["receipt_timings"] = True
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def seal(
    session: Session, body: dict[str, Any], path: str = CHAT, timings: bool = False
) -> tuple[bytes, Exchange]:
    request_meta = meta(body, path, timings=timings)
    return session.seal_request(request_meta, json.dumps(body).encode(), time.time())


def oneshot(
    lease: dict[str, Any], body: dict[str, Any], path: str = CHAT, bound: bool = True
) -> tuple[bytes, Exchange, bytes]:
    """A ONESHOT frame, its Exchange and its throwaway session's receipt key."""
    frame, session = hello(lease)
    request, exchange = session.seal_request(
        meta(body, path, bound), json.dumps(body).encode(), session.params.created_at
    )
    hello_payload = frame[frames.HEADER_LEN :]
    payload = len(hello_payload).to_bytes(2, "big") + hello_payload + request[frames.HEADER_LEN :]
    return frames.encode(FrameType.ONESHOT, payload), exchange, session.receipt_key


def post_sealed(gw: str, key: str, content: bytes, path: str = CHAT, **kw: Any) -> httpx.Response:
    return httpx.post(
        gw + path,
        content=content,
        headers={"Authorization": f"Bearer {key}", "Content-Type": V2},
        timeout=60,
        **kw,
    )


@dataclass
class Answer:
    plaintext: bytes = b""
    receipt: ReceiptV2 | None = None
    tags: dict[int, bytes] = field(default_factory=dict)
    after_receipt: list[FrameType] = field(default_factory=list)


def whole_answer(content: bytes, exchange: Exchange, receipt_key: bytes) -> Answer | None:
    """The answer if `content` is all of it, as a client takes one (every CHUNK through the
    final one, and a RECEIPT with this session's tag); None when any part is missing."""
    try:
        return read_answer(content, exchange, receipt_key)
    except (AssertionError, SealingError):
        return None


def read_answer(content: bytes, exchange: Exchange, receipt_key: bytes) -> Answer:
    """Opens a sealed answer as a client does; its receipt's kind 2 tag checked."""
    found = Answer()
    decoder = FrameDecoder()
    for frame in decoder.feed(content):
        if found.receipt is not None:
            found.after_receipt.append(frame.type)
        elif frame.type == FrameType.CHUNK:
            found.plaintext += exchange.open(frame.payload)
        elif frame.type == FrameType.RECEIPT:
            found.receipt, found.tags = parse_receipt(frame.payload)
    assert decoder.pending == 0 and exchange.finished
    assert found.receipt is not None
    check_tag(found.receipt, found.tags, CLIENT_TAG, receipt_key)
    return found
