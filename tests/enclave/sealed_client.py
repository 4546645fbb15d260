"""The client half of sealed mode, for the agent's tests: the enclave's keys from its
evidence, a request sealed with `teeroute.sealing.envelope`, the answer opened frame by frame.
The agents started here pin the tests' gateway key, and requests are sent as the gateway
sends them, with its authorization (`tests.gateway_key`), unless a test gives its own."""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from teeroute.sealing import envelope, gateway_auth, hpke
from teeroute.sealing.receipts import Receipt, verify_receipt
from tests import gateway_key

from .test_agent_proxy import free_port, running

SEALED_HEADERS = {"Content-Type": envelope.SEALED_CONTENT_TYPE}


@dataclass(frozen=True)
class EnclaveKeys:
    """The public keys an enclave's evidence vouches for."""

    hpke: bytes
    signing: bytes

    @property
    def signing_sha256(self) -> str:
        return envelope.key_id(self.signing)


def enclave_keys(agent: str) -> EnclaveKeys:
    nonce = base64.b64encode(os.urandom(32)).decode()
    document = httpx.post(f"{agent}/v1/attestation", json={"nonce": nonce}, timeout=10).json()
    keys = document["enclave_keys"]
    return EnclaveKeys(base64.b64decode(keys["hpke"]), base64.b64decode(keys["signing"]))


def meta_for(path: str, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "path": path,
        "model": body["model"],
        "stream": bool(body.get("stream")),
        "max_tokens": body.get("max_tokens"),
    }


def seal(
    keys: EnclaveKeys,
    path: str,
    body: dict[str, Any],
    aead: hpke.Aead = hpke.Aead.AES_128_GCM,
    meta: dict[str, Any] | None = None,
) -> tuple[envelope.SealedRequest, envelope.ResponseOpener]:
    return envelope.seal_request(
        keys.hpke, meta or meta_for(path, body), json.dumps(body).encode(), aead
    )


@dataclass
class SealedAnswer:
    status: int
    headers: httpx.Headers
    pieces: list[bytes] = field(default_factory=list)
    """Each frame's plaintext, in order (the final frame's included)."""
    arrivals: list[float] = field(default_factory=list)
    """Seconds from sending to each frame's arrival."""
    receipt: bytes = b""
    finished: bool = False
    response_sha256: str = ""
    error: Any = None
    """The agent's own JSON error body, when it refused the request."""

    @property
    def plaintext(self) -> bytes:
        return b"".join(self.pieces)

    def verified_receipt(self, keys: EnclaveKeys, sealed: envelope.SealedRequest) -> Receipt:
        return verify_receipt(
            self.receipt,
            signing_key_sha256=keys.signing_sha256,
            request_sha256=sealed.digest,
            response_sha256=self.response_sha256,
            hpke_key_sha256=envelope.key_id(keys.hpke),
        )


def post_sealed(
    agent: str,
    path: str,
    sealed: envelope.SealedRequest,
    opener: envelope.ResponseOpener,
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
) -> SealedAnswer:
    with stream_sealed(agent, path, sealed, opener, headers, content) as (answer, frames):
        for _ in frames:
            pass
    return answer


@contextmanager
def stream_sealed(
    agent: str,
    path: str,
    sealed: envelope.SealedRequest,
    opener: envelope.ResponseOpener,
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
) -> Iterator[tuple[SealedAnswer, Iterator[bytes]]]:
    """The answer as it arrives: the iterator yields each frame's plaintext when it opens."""
    start = time.monotonic()
    body = sealed.to_bytes() if content is None else content
    headers = {**SEALED_HEADERS, **(headers or {})}
    if gateway_auth.HEADER not in headers:
        key_id = gateway_key.hpke_key_id(agent)
        headers.update(gateway_key.header("POST", path, body, key_id))
    with httpx.stream(
        "POST", f"{agent}{path}", content=body, headers=headers, timeout=60
    ) as response:
        answer = SealedAnswer(response.status_code, response.headers)
        if response.headers.get(envelope.SEALED_HEADER) != envelope.VERSION:
            answer.error = json.loads(response.read())
            yield answer, iter(())
            return
        yield answer, _frames(response, opener, answer, start)


def _frames(
    response: httpx.Response,
    opener: envelope.ResponseOpener,
    answer: SealedAnswer,
    start: float,
) -> Iterator[bytes]:
    reader = envelope.FrameReader()
    for data in response.iter_raw():
        for event in reader.feed(data):
            if event.name == envelope.RECEIPT_EVENT:
                answer.receipt = event.data
                continue
            assert not answer.receipt, "a frame after the receipt"
            piece = opener.open(envelope.frame_ciphertext(event))
            answer.pieces.append(piece)
            answer.arrivals.append(time.monotonic() - start)
            yield piece
    assert reader.pending == b""
    answer.finished = opener.finished
    answer.response_sha256 = opener.digest.hexdigest()


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
    settings (`require_sealed="true"`, `secrets_dir=...`)."""
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
