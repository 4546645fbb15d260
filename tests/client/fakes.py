"""Enclaves with real keys, real simulated evidence and the real enclave half of the envelope
API (`open_request`, `ResponseSealer`, `sign_receipt`), and a gateway stand-in that routes
sealed requests to them by key id, for the client's unit tests. Only the HTTP hop is
in-process (httpx.MockTransport); every byte the client checks is real crypto."""

from __future__ import annotations

import base64
import datetime as dt
import json
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
from teeroute.sealing import envelope, receipts

NOW = dt.datetime.now(dt.UTC)
MODEL = "sim-model"
MEASUREMENT = bytes.fromhex("ab" * 48)
_RAW = (serialization.Encoding.Raw, serialization.PublicFormat.Raw)


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

    @property
    def hpke_public(self) -> bytes:
        return self.hpke.public_key().public_bytes(*_RAW)

    @property
    def signing_public(self) -> bytes:
        return self.signing.public_key().public_bytes(*_RAW)

    @property
    def key_id(self) -> str:
        return envelope.key_id(self.hpke_public)

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
            "signing_key_sha256": envelope.key_id(self.signing_public),
            "pricing": {"input_per_million": "1", "output_per_million": "2", "currency": "USD"},
            "evidence": self.document(nonce),
        }

    def open(self, raw: bytes) -> tuple[envelope.SealedRequest, bytes, envelope.ResponseSealer]:
        sealed = envelope.SealedRequest.parse(raw)
        body, sealer = envelope.open_request(sealed, self.hpke, self.hpke_public)
        return sealed, body, sealer

    def receipt(
        self,
        sealed: envelope.SealedRequest,
        sealer: envelope.ResponseSealer,
        request_id: str,
        status: int = 200,
        complete: bool = True,
        usage: tuple[int, int] = (7, 5),
        model: str | None = None,
    ) -> bytes:
        signed = receipts.sign_receipt(
            sign=self.signing.sign,
            signing_public=self.signing_public,
            hpke_public=self.hpke_public,
            request_id=request_id,
            model=model or str(sealed.meta["model"]),
            served_model="upstream-" + str(sealed.meta["model"]),
            input_tokens=usage[0],
            output_tokens=usage[1],
            usage_source="engine",
            status=status,
            complete=complete,
            request_sha256=sealed.digest,
            response_sha256=sealer.digest.hexdigest(),
            now=dt.datetime.now(dt.UTC),
        )
        return envelope.sse_event(envelope.RECEIPT_EVENT, signed.text().encode())

    def answer(
        self, raw: bytes, request_id: str, pieces: list[bytes], status: int = 200, **receipt: Any
    ) -> list[bytes]:
        """The sealed response body, one element per frame then the receipt."""
        sealed, _, sealer = self.open(raw)
        frames = [sealer.frame(p, final=i == len(pieces) - 1) for i, p in enumerate(pieces)]
        return [*frames, self.receipt(sealed, sealer, request_id, status, **receipt)]


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
    """Answers /v1/attestations with each enclave's evidence for the caller's nonce and
    routes sealed requests by key id, as the gateway does (docs/sealed-mode.md, 1 and 5)."""

    enclaves: list[FakeEnclave]
    gone: set[str] = field(default_factory=set)
    tamper: Tamper | None = None
    clear_answer: bool = False
    inference: list[str] = field(default_factory=list)
    """The key id of each sealed request that reached the gateway."""
    attestations: int = 0
    status: int = 200
    unavailable: list[str] = field(default_factory=list)
    """Endpoint ids the gateway reports as giving no evidence in time."""

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
        return self._sealed(request)

    def _sealed(self, request: httpx.Request) -> httpx.Response:
        sealed = envelope.SealedRequest.parse(request.content)
        self.inference.append(sealed.key_id)
        if sealed.key_id in self.gone:
            return _error(503, "service_unavailable", "enclave left", "sealed_key_unavailable")
        enclave = next(e for e in self.enclaves if e.key_id == sealed.key_id)
        request_id = f"req-{len(self.inference)}"
        _, body, _ = enclave.open(request.content)
        if self.clear_answer:
            return httpx.Response(200, content=b"".join(engine_answer(body)))
        parts = enclave.answer(request.content, request_id, engine_answer(body), self.status)
        if self.tamper is not None:
            parts = self.tamper(parts)
        return httpx.Response(
            self.status,
            headers={
                "content-type": "text/event-stream",
                envelope.SEALED_HEADER: "v1",
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
