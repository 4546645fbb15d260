"""The initiating ends of wire v2 for the agent's tests: what the gateway does (a session to
the enclave, HELLO signed with the tests' gateway key, `tests.gateway_key`), and what a client
does through it (a client session wrapped in the gateway's, or a one-shot request). Answers
are read frame by frame: CHUNKs opened in order, the RECEIPT parsed, ROOT frames kept."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from teeroute.sealing import frames
from teeroute.sealing.frames import FrameType
from teeroute.sealing.receipt_mac import ReceiptV2, check_tag, parse_receipt
from teeroute.sealing.session import Exchange, Session, SessionParams, initiate
from tests import gateway_key

from .test_agent_proxy import free_port, running

V2 = {"Content-Type": frames.CONTENT_TYPE}
GATEWAY = "gateway:" + hashlib.sha256(gateway_key.PUBLIC).hexdigest()
Sign = Callable[[bytes], bytes]


@dataclass(frozen=True)
class EnclaveKeys:
    """The public keys an enclave's evidence vouches for."""

    hpke: bytes
    signing: bytes

    @property
    def hpke_sha256(self) -> str:
        return hashlib.sha256(self.hpke).hexdigest()

    @property
    def signing_sha256(self) -> str:
        return hashlib.sha256(self.signing).hexdigest()


def enclave_keys(agent: str) -> EnclaveKeys:
    nonce = base64.b64encode(os.urandom(32)).decode()
    document = httpx.post(f"{agent}/v1/attestation", json={"nonce": nonce}, timeout=10).json()
    keys = document["enclave_keys"]
    return EnclaveKeys(base64.b64decode(keys["hpke"]), base64.b64decode(keys["signing"]))


def params(
    keys: EnclaveKeys,
    initiator: str = GATEWAY,
    *,
    lifetime_s: int = 600,
    created_at: int | None = None,
    rekey_messages: int = 1 << 20,
) -> SessionParams:
    created = int(time.time()) if created_at is None else created_at
    return SessionParams(
        session_id=os.urandom(16),
        enclave_hpke_sha256=keys.hpke_sha256,
        enclave_signing_sha256=keys.signing_sha256,
        attested={"tee": "simulated"},
        initiator=initiator,
        created_at=created,
        expires_at=created + lifetime_s,
        rekey_messages=rekey_messages,
    )


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def post_frame(agent: str, path: str, content: bytes, headers: dict[str, str] | None = None) -> Any:
    return httpx.post(f"{agent}{path}", content=content, headers=headers or V2, timeout=30)


def welcome(answer: httpx.Response, session: Session) -> Session:
    """The session, confirmed by the WELCOME the agent answered."""
    assert answer.status_code == 200, answer.text
    session.confirm(frames.decode_one(answer.content).payload)
    return session


def gateway_session(
    agent: str,
    keys: EnclaveKeys,
    *,
    lifetime_s: int = 600,
    sign: Sign | None = None,
    rekey_messages: int = 1 << 20,
) -> Session:
    """The gateway's session to `agent` (HELLO signed with the tests' gateway key)."""
    opened = params(keys, lifetime_s=lifetime_s, rekey_messages=rekey_messages)
    hello, session = initiate(keys.hpke, opened, sign or gateway_key.PRIVATE.sign)
    return welcome(post_frame(agent, "/v1/sessions", hello), session)


def wrap(gateway: Session, path: str, inner: str, frame: bytes, **meta: Any) -> bytes:
    """A client's frame inside a REQUEST of the gateway's session, as the gateway sends it."""
    fields = {"path": path, "inner": inner, "sealed_at": int(time.time()), **meta}
    return gateway.seal_request(canonical(fields), frame, time.time())[0]


def client_session(agent: str, keys: EnclaveKeys, gateway: Session) -> Session:
    """A client's session to `agent`, its HELLO forwarded in the gateway's session."""
    hello, session = initiate(keys.hpke, params(keys, "client"))
    return welcome(
        post_frame(agent, "/v1/sessions", wrap(gateway, "/v1/sessions", "client", hello)), session
    )


def meta_for(path: str, body: dict[str, Any], inner: str = "none") -> dict[str, Any]:
    return {
        "path": path,
        "model": body["model"],
        "stream": bool(body.get("stream")),
        "max_tokens": body.get("max_tokens"),
        "inner": inner,
        "sealed_at": int(time.time()),
    }


@dataclass
class Sealer:
    """Seals requests to one agent as one of the three modes: `inner` "none" (the gateway
    seals the hop), "client" (a client session inside the gateway's), "oneshot"."""

    keys: EnclaveKeys
    gateway: Session
    inner: str = "none"
    client: Session | None = None
    last_client_key: bytes = b""
    """The receipt key of the innermost client session of the last request sealed."""

    def seal(
        self, path: str, body: dict[str, Any], meta: dict[str, Any] | None = None
    ) -> tuple[bytes, Exchange]:
        meta = meta or meta_for(path, body, self.inner)
        plain = json.dumps(body).encode()
        now = time.time()
        if self.inner == "none":
            return self.gateway.seal_request(canonical(meta), plain, now)
        client_meta = canonical({k: v for k, v in meta.items() if k != "inner"})
        if self.inner == "client":
            assert self.client is not None
            frame, exchange = self.client.seal_request(client_meta, plain, now)
            self.last_client_key = self.client.receipt_key
        else:
            frame, exchange, self.last_client_key = oneshot(self.keys, client_meta, plain)
        return self.gateway.seal_request(canonical(meta), frame, now)[0], exchange


def oneshot(keys: EnclaveKeys, meta: bytes, body: bytes) -> tuple[bytes, Exchange, bytes]:
    """A ONESHOT frame as `teeroute.sealing.session.oneshot` builds it, keeping the throwaway
    session's receipt key (the client checks the receipt's kind 2 tag with it)."""
    hello, session = initiate(keys.hpke, params(keys, "client"))
    request, exchange = session.seal_request(meta, body, session.params.created_at)
    hello_payload = hello[frames.HEADER_LEN :]
    payload = len(hello_payload).to_bytes(2, "big") + hello_payload + request[frames.HEADER_LEN :]
    return frames.encode(FrameType.ONESHOT, payload), exchange, session.receipt_key


@dataclass
class SealedAnswer:
    status: int
    headers: httpx.Headers
    pieces: list[bytes] = field(default_factory=list)
    """Each CHUNK's plaintext, in order (the final one's included)."""
    arrivals: list[float] = field(default_factory=list)
    """Seconds from sending to each CHUNK's arrival."""
    receipt: ReceiptV2 | None = None
    tags: dict[int, bytes] = field(default_factory=dict)
    roots: list[bytes] = field(default_factory=list)
    """The ROOT frames' payloads."""
    finished: bool = False
    request_sha256: str = ""
    response_sha256: str = ""
    error: Any = None
    """The agent's own JSON error body, when it refused the request."""

    @property
    def plaintext(self) -> bytes:
        return b"".join(self.pieces)

    def checked_receipt(self, sealer: Sealer) -> ReceiptV2:
        """The receipt, its tags checked (kind 1: the gateway session's key; kind 2: the
        client's) and its hashes those of this request and answer."""
        receipt = self.receipt
        assert receipt is not None
        check_tag(receipt, self.tags, 1, sealer.gateway.receipt_key)
        if sealer.inner == "none":
            assert set(self.tags) == {1}
        else:
            assert set(self.tags) == {1, 2}
            check_tag(receipt, self.tags, 2, sealer.last_client_key)
        assert receipt.session_id == sealer.gateway.id.hex()
        assert (receipt.request_sha256, receipt.response_sha256) == (
            self.request_sha256,
            self.response_sha256,
        )
        return receipt


def post_sealed(
    agent: str, path: str, raw: bytes, exchange: Exchange, headers: dict[str, str] | None = None
) -> SealedAnswer:
    with stream_sealed(agent, path, raw, exchange, headers) as (answer, pieces):
        for _ in pieces:
            pass
    return answer


@contextmanager
def stream_sealed(
    agent: str, path: str, raw: bytes, exchange: Exchange, headers: dict[str, str] | None = None
) -> Iterator[tuple[SealedAnswer, Iterator[bytes]]]:
    """The answer as it arrives: the iterator yields each CHUNK's plaintext when it opens."""
    start = time.monotonic()
    headers = {**V2, "X-Request-Id": uuid.uuid4().hex, **(headers or {})}
    with httpx.stream("POST", f"{agent}{path}", content=raw, headers=headers, timeout=60) as got:
        answer = SealedAnswer(got.status_code, got.headers)
        if got.headers.get("content-type") != frames.CONTENT_TYPE:
            answer.error = json.loads(got.read())
            yield answer, iter(())
            return
        yield answer, _frames(got, exchange, answer, start)


def _frames(
    response: httpx.Response, exchange: Exchange, answer: SealedAnswer, start: float
) -> Iterator[bytes]:
    decoder = frames.FrameDecoder()
    for data in response.iter_raw():
        for frame in decoder.feed(data):
            if frame.type is FrameType.CHUNK:
                assert answer.receipt is None, "a chunk after the receipt"
                piece = exchange.open(frame.payload)
                answer.pieces.append(piece)
                answer.arrivals.append(time.monotonic() - start)
                yield piece
            elif frame.type is FrameType.RECEIPT:
                answer.receipt, answer.tags = parse_receipt(frame.payload)
            else:
                assert frame.type is FrameType.ROOT, frame.type
                answer.roots.append(frame.payload)
    assert decoder.pending == 0
    answer.finished = exchange.finished
    answer.request_sha256 = exchange.request_sha256
    answer.response_sha256 = exchange.response_sha256


def sse_json(stream: bytes) -> list[Any]:
    """The JSON of each `data:` event of an SSE stream ([DONE] left out)."""
    events = []
    for event in stream.split(b"\n\n"):
        data = event.removeprefix(b"data: ")
        if event.strip() and data != b"[DONE]":
            events.append(json.loads(data))
    return events


def without_ids(value: Any) -> Any:
    """An OpenAI answer without what differs between two identical requests."""
    if isinstance(value, list):
        return [without_ids(item) for item in value]
    return {k: v for k, v in value.items() if k not in ("id", "created")}


@contextmanager
def agent_process(chips: Path, engine_url: str, log: Path, **settings: str) -> Iterator[str]:
    """The agent as in production (`python -m teeroute_enclave`), with extra TEEROUTE_AGENT_
    settings (`require_sealed="true"`, `root_receipts="4"`)."""
    port = free_port()
    env = {
        "TEEROUTE_TEE": "simulated",
        "NODE_NAME": "node-a",
        "TEEROUTE_SIMULATED_DIR": str(chips),
        "TEEROUTE_AGENT_PORT": str(port),
        "TEEROUTE_ENGINE_URL": engine_url,
        **gateway_key.PINNED,
        **{f"TEEROUTE_AGENT_{name.upper()}": value for name, value in settings.items()},
    }
    url = f"http://127.0.0.1:{port}"
    with running([sys.executable, "-m", "teeroute_enclave"], env, f"{url}/healthz", log):
        yield url
