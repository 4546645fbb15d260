"""Enclaves with real keys, real simulated evidence and the real enclave half of wire v2
(`accept`, `Session.open_request`, `Reply.chunk`, `receipt_frame`; a ONESHOT opened under a
throwaway session, as the agent does), and a gateway stand-in that opens client sessions and
routes sealed requests by session (a ONESHOT: by the key its HELLO names), for the client's
unit tests. Only the HTTP hop is in-process (httpx.MockTransport); every byte the client
checks is real crypto."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519
from cryptography.hazmat.primitives.serialization import Encoding

from teeroute.attestation import simulated
from teeroute.attestation.policy import bind
from teeroute.client.policy import ClientPolicy, policy_from_mapping
from teeroute.client.session import SealedClient
from teeroute.sealing import frames
from teeroute.sealing.receipt_mac import CLIENT_TAG, GATEWAY_TAG, iso_utc, receipt_frame
from teeroute.sealing.session import Reply, Session, accept, parse_hello

NOW = dt.datetime.now(dt.UTC)
MODEL = "sim-model"
CHAT = "/v1/chat/completions"
MEASUREMENT = bytes.fromhex("ab" * 48)
_RAW = (serialization.Encoding.Raw, serialization.PublicFormat.Raw)
GATEWAY_SESSION = bytes(16)
GATEWAY_RECEIPT_KEY = bytes(range(32))
"""The gateway session's id and receipt key the fake enclave tags receipts with (kind 1)."""


@dataclass(frozen=True)
class Chip:
    root_pem: bytes
    cert_pem: str
    key: ec.EllipticCurvePrivateKey


def make_chip(node: str = "node-a") -> Chip:
    root, root_key = simulated.new_root(NOW)
    chip, chip_key = simulated.issue_chip(root, root_key, node, NOW)
    return Chip(root.public_bytes(Encoding.PEM), chip.public_bytes(Encoding.PEM).decode(), chip_key)


def simulated_policy(chip: Chip, tmp: Path, **keys: Any) -> ClientPolicy:
    root = tmp / "sim-root.pem"
    root.write_bytes(chip.root_pem)
    raw = {"allowedTee": ["simulated"], "trust": {"simulatedRoot": str(root)}, **keys}
    return policy_from_mapping(raw, "test")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class FakeEnclave:
    chip: Chip
    name: str = "e0"
    pool: str = "ns/pool-a"
    measurement: bytes = MEASUREMENT
    hpke: x25519.X25519PrivateKey = field(default_factory=x25519.X25519PrivateKey.generate)
    signing: ed25519.Ed25519PrivateKey = field(default_factory=ed25519.Ed25519PrivateKey.generate)
    debug: bool = False
    bound_pool: str | None = "ns/pool-a"
    """The pool its evidence binds (None: none), as TEEROUTE_AGENT_POOL makes an agent's."""
    sessions: dict[bytes, Session] = field(default_factory=dict)
    """The client sessions it holds, by id (cleared: it restarted, or forgot them)."""

    @property
    def hpke_public(self) -> bytes:
        return self.hpke.public_key().public_bytes(*_RAW)

    @property
    def signing_public(self) -> bytes:
        return self.signing.public_key().public_bytes(*_RAW)

    @property
    def key_id(self) -> str:
        return hashlib.sha256(self.hpke_public).hexdigest()

    @property
    def endpoint_id(self) -> str:
        return f"{self.pool}/{self.name}"

    def document(self, nonce: bytes) -> dict[str, Any]:
        report = simulated.make_report(
            self.chip.key,
            measurement=self.measurement,
            report_data=bind(
                nonce, self.hpke_public, self.signing_public, pool=self.bound_pool or ""
            ),
            debug=self.debug,
        )
        document = {
            "tee": "simulated",
            "nonce": b64(nonce),
            "evidence": b64(report),
            "certificates": [self.chip.cert_pem],
            "enclave_keys": {"hpke": b64(self.hpke_public), "signing": b64(self.signing_public)},
            "produced_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        return document if self.bound_pool is None else {**document, "pool": self.bound_pool}

    def entry(self, nonce: bytes) -> dict[str, Any]:
        return {
            "pool": self.pool,
            "endpoint_id": self.endpoint_id,
            "tee": "simulated",
            "hpke_key_sha256": self.key_id,
            "signing_key_sha256": self.signing_key_sha256,
            "pricing": {"input_per_million": "1", "output_per_million": "2", "currency": "USD"},
            "evidence": self.document(nonce),
        }

    @property
    def signing_key_sha256(self) -> str:
        return hashlib.sha256(self.signing_public).hexdigest()

    def welcome(self, raw_hello: bytes, now: float | None = None) -> bytes:
        """The enclave's answer to a client HELLO: a WELCOME, and the session kept."""
        hello = parse_hello(frames.decode_one(raw_hello).payload)
        welcome, session = accept(
            hello, self.hpke, self.hpke_public, self.signing_key_sha256, now or time.time()
        )
        self.sessions[session.id] = session
        return welcome

    def open(self, raw: bytes) -> Opened:
        """A REQUEST of a session this enclave holds (KeyError: it does not) or a ONESHOT."""
        frame = frames.decode_one(raw)
        now = time.time()
        if frame.type == frames.FrameType.ONESHOT:  # as the agent: a throwaway session
            size = int.from_bytes(frame.payload[:2], "big")
            hello = parse_hello(frame.payload[2 : 2 + size])
            _, session = accept(hello, self.hpke, self.hpke_public, self.signing_key_sha256, now)
            meta, body, reply = session.open_request(frame.payload[2 + size :], now)
            return Opened(json.loads(meta), body, reply, session.receipt_key)
        session = self.sessions[frame.payload[:16]]
        meta, body, reply = session.open_request(frame.payload, now)
        return Opened(json.loads(meta), body, reply, session.receipt_key)

    def receipt(
        self,
        opened: Opened,
        request_id: str,
        status: int = 200,
        complete: bool = True,
        usage: tuple[int, int] = (7, 5),
        model: str | None = None,
        client_key: bytes | None = None,
    ) -> bytes:
        """The RECEIPT frame: tagged for the gateway (a key of its own) and for the client
        (its session's receipt key, or `client_key`)."""
        fields = {
            "session_id": GATEWAY_SESSION.hex(),
            "index": 0,
            "request_id": request_id,
            "model": model or str(opened.meta["model"]),
            "served_model": "upstream-" + str(opened.meta["model"]),
            "input_tokens": usage[0],
            "output_tokens": usage[1],
            "usage_source": "engine",
            "status": status,
            "complete": complete,
            "request_sha256": opened.reply.request_sha256,
            "response_sha256": opened.reply.response_sha256,
            "hpke_key_sha256": self.key_id,
            "signing_key_sha256": self.signing_key_sha256,
            "issued_at": iso_utc(time.time()),
        }
        keys = [(GATEWAY_TAG, GATEWAY_RECEIPT_KEY), (CLIENT_TAG, client_key or opened.key)]
        return receipt_frame(fields, keys)

    def answer(
        self, raw: bytes, request_id: str, pieces: list[bytes], status: int = 200, **receipt: Any
    ) -> list[bytes]:
        """The sealed answer, one element per CHUNK frame, then the RECEIPT frame."""
        opened = self.open(raw)
        last = len(pieces) - 1
        chunks = [opened.reply.chunk(p, final=i == last) for i, p in enumerate(pieces)]
        return [*chunks, self.receipt(opened, request_id, status, **receipt)]


@dataclass(frozen=True)
class Opened:
    """A request as the enclave opened it, and what answers it."""

    meta: dict[str, Any]
    body: bytes
    reply: Reply
    key: bytes
    """The receipt key of the request's client session (a one-shot's own)."""


def engine_answer(body: bytes) -> list[bytes]:
    """What an engine would send for `body`, in the pieces it would send it in."""
    request = json.loads(body)
    words = ["Sealed", " hello", " from", " the", " enclave"]
    if not request.get("stream"):
        answer = {
            "id": "cmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": request["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(words)},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12},
        }
        return [json.dumps(answer).encode()]
    head = {"id": "cmpl-1", "object": "chat.completion.chunk", "created": 0}
    head["model"] = request["model"]

    def event(payload: dict[str, Any]) -> bytes:
        return b"data: " + json.dumps(payload).encode() + b"\n\n"

    pieces = [
        event({**head, "choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}]})
        for w in words
    ]
    pieces.append(event({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    usage = {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}
    pieces.append(event({**head, "choices": [], "usage": usage}))
    pieces.append(b"data: [DONE]\n\n")
    return pieces


Tamper = Callable[[list[bytes]], list[bytes]]


@dataclass
class FakeGateway:
    """Answers /v1/attestations with each enclave's evidence for the caller's nonce, passes
    client HELLOs to the enclave the `x-teeroute-enclave-key` header names, and routes sealed
    requests by the key id in their meta (a ONESHOT: in its HELLO), as the gateway does."""

    enclaves: list[FakeEnclave]
    gone: set[str] = field(default_factory=set)
    tamper: Tamper | None = None
    clear_answer: bool = False
    inference: list[str] = field(default_factory=list)
    """The key id of each sealed request that reached the gateway."""
    kinds: list[str] = field(default_factory=list)
    """The frame type of each (REQUEST or ONESHOT)."""
    hellos: list[str] = field(default_factory=list)
    """The key id of each client HELLO (session open) that reached the gateway."""
    attestations: int = 0
    status: int = 200
    unavailable: list[str] = field(default_factory=list)
    """Endpoint ids the gateway reports as giving no evidence in time."""
    welcome_tamper: Callable[[bytes], bytes] | None = None
    routes: dict[bytes, str] = field(default_factory=dict)
    """Client session id -> the enclave key it was opened with (learned from WELCOMEs)."""

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/attestations":
            self.attestations += 1
            ask = json.loads(request.content)
            nonce = base64.b64decode(ask["nonce"])
            data = [e.entry(nonce) for e in self.enclaves]
            listing = {"object": "list", "data": data, "unavailable": self.unavailable}
            return httpx.Response(200, json=listing)
        if path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": [{"id": MODEL}]})
        if request.headers.get("authorization") != "Bearer sk-test":
            return _error(401, "authentication_error", "unknown key", "invalid_api_key")
        if path == "/v1/sessions":
            return self._session(request)
        return self._sealed(request)

    def _enclave(self, key_id: str) -> FakeEnclave | httpx.Response:
        if key_id in self.gone:
            return _error(503, "service_unavailable", "enclave left", "sealed_key_unavailable")
        return next(e for e in self.enclaves if e.key_id == key_id)

    def _route(self, frame: frames.Frame) -> str:
        """What the gateway routes a sealed request by, read without any key: the session
        a REQUEST belongs to, or the enclave key a ONESHOT's HELLO names."""
        if frame.type == frames.FrameType.ONESHOT:
            size = int.from_bytes(frame.payload[:2], "big")
            return parse_hello(frame.payload[2 : 2 + size]).params.enclave_hpke_sha256
        return self.routes[frame.payload[:16]]

    def _session(self, request: httpx.Request) -> httpx.Response:
        key_id = request.headers["x-teeroute-enclave-key"]
        self.hellos.append(key_id)
        enclave = self._enclave(key_id)
        if isinstance(enclave, httpx.Response):
            return enclave
        welcome = enclave.welcome(request.content)
        self.routes[frames.decode_one(welcome).payload[:16]] = key_id
        if self.welcome_tamper is not None:
            welcome = self.welcome_tamper(welcome)
        return httpx.Response(200, headers={"content-type": frames.CONTENT_TYPE}, content=welcome)

    def _sealed(self, request: httpx.Request) -> httpx.Response:
        frame = frames.decode_one(request.content)
        key_id = self._route(frame)
        self.inference.append(key_id)
        self.kinds.append(frame.type.name)
        enclave = self._enclave(key_id)
        if isinstance(enclave, httpx.Response):
            return enclave
        request_id = f"req-{len(self.inference)}"
        try:
            opened = enclave.open(request.content)
        except KeyError:  # as the agent: a session it does not hold
            body = {"error": {"message": "no such session", "type": "session_unknown"}}
            return httpx.Response(409, json=body)
        pieces = engine_answer(opened.body)
        if self.clear_answer:
            return httpx.Response(200, content=b"".join(pieces))
        last = len(pieces) - 1
        chunks = [opened.reply.chunk(p, final=i == last) for i, p in enumerate(pieces)]
        parts = [*chunks, enclave.receipt(opened, request_id, self.status)]
        if self.tamper is not None:
            parts = self.tamper(parts)
        return httpx.Response(
            self.status,
            headers={
                "content-type": frames.CONTENT_TYPE,
                "x-request-id": request_id,
                "x-teeroute-pool": enclave.pool,
            },
            content=_pieces(parts),
        )


def _pieces(parts: list[bytes]) -> Iterator[bytes]:
    yield from parts


def _error(status: int, kind: str, message: str, code: str) -> httpx.Response:
    body = {"error": {"message": message, "type": kind, "code": code, "param": None}}
    return httpx.Response(status, json=body)


def body(stream: bool = False, **extra: object) -> bytes:
    """A chat request for MODEL."""
    request = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    return json.dumps({**request, **extra}).encode()


def client_for(
    gateway: FakeGateway, policy: ClientPolicy, seed: int = 1, **options: Any
) -> SealedClient:
    """A SealedClient whose HTTP goes to `gateway` in-process."""
    http = httpx.Client(transport=gateway.transport())
    return SealedClient(
        "http://gw/v1/", "sk-test", policy, http=http, rng=random.Random(seed), **options
    )
