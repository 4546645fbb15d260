"""The client's side of the benchmark.

- `sealed_pool`: distinct sealed bodies (one HPKE context each) for wrk to send in turn,
  sealed just before the run they are for (`pool_size` of them): the agent takes each sealed
  request once, and only within its window of `sealed_at`, so the load generator sends each
  body once without sealing in it.
- `probe`: one real request per mode and kind, checked end to end (HTTP 200; the answer's
  text, at most max_tokens long; for a client-sealed request every frame opened in order and
  the receipt verified against the attested signing key, the request and the frames; for both
  sealed modes the gateway's ledger record of it has `receipt_status: valid`). Also returns
  the plaintext of each frame, the real shape the micro-benchmark replays.
- `client_cost`: what sealing costs the client per request, in this process: seal the body,
  open the answer's frames, verify the receipt (the enclave's side is prepared untimed).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import statistics
import time
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import ed25519
from gatewaybench.procs import BenchError

from sealedbench.kinds import Kind
from sealedbench.modes import CHAT, Mode, body, sealed_meta
from teeroute.sealing import envelope, hpke, receipts
from teeroute.sealing.envelope import FrameReader, ResponseOpener, SealedRequest
from teeroute.sealing.errors import SealingError


@dataclass(frozen=True)
class Enclave:
    """What a client knows of the enclave: its attested keys, from the lease."""

    hpke_public: bytes
    hpke_key_sha256: str
    signing_key_sha256: str

    @classmethod
    def from_lease(cls, lease: dict[str, Any]) -> Enclave:
        return cls(
            base64.b64decode(lease["hpkePublicKey"]),
            lease["hpkeKeySha256"],
            lease["signingKeySha256"],
        )


def seal(enclave: Enclave, model: str, kind: Kind) -> tuple[SealedRequest, ResponseOpener]:
    meta = sealed_meta(model, kind.stream, kind.max_tokens)
    return envelope.seal_request(
        enclave.hpke_public, meta, body(model, kind.stream, kind.max_tokens)
    )


POOL_RATE = 2000
"""Sealed bodies per second of a run: above any rate a sealed mode reached here (about 800
requests/s; plain, 1,300), so wrk never comes back to the first."""


def pool_size(seconds: int) -> int:
    return seconds * POOL_RATE


def sealed_pool(enclave: Enclave, model: str, kind: Kind, count: int) -> list[bytes]:
    """`count` distinct sealed bodies of the same request, one line each."""
    pool = [seal(enclave, model, kind)[0].to_bytes() for _ in range(count)]
    if any(b"\n" in item for item in pool):
        raise BenchError("a sealed body holds a newline: it cannot go in the pool file")
    return pool


@dataclass(frozen=True)
class Opened:
    """A client-sealed answer, opened and verified."""

    plaintext: bytes
    frames: list[bytes]
    receipt: receipts.Receipt


def open_answer(
    raw: bytes, sealed: SealedRequest, opener: ResponseOpener, enclave: Enclave
) -> Opened:
    """Every frame in order, the final one present, and a receipt signed by the attested key
    for this request and these frames; SealingError names the check that failed."""
    frames: list[bytes] = []
    receipt_text: bytes | None = None
    for event in FrameReader().feed(raw):
        if event.name == envelope.RECEIPT_EVENT:
            receipt_text = event.data
        else:
            frames.append(opener.open(envelope.frame_ciphertext(event)))
    if not opener.finished:
        raise SealingError("frame.final", "no final frame")
    receipt = receipts.verify_receipt(
        receipt_text or b"",
        signing_key_sha256=enclave.signing_key_sha256,
        request_sha256=sealed.digest,
        response_sha256=opener.digest.hexdigest(),
        hpke_key_sha256=enclave.hpke_key_sha256,
    )
    return Opened(b"".join(frames), frames, receipt)


def answer_text(raw: bytes, stream: bool) -> tuple[str, int | None, bool]:
    """(the completion's text, usage.completion_tokens, the stream ended with [DONE])."""
    if not stream:
        doc = json.loads(raw)
        return doc["choices"][0]["message"]["content"], doc["usage"]["completion_tokens"], True
    text, tokens, done = [], None, False
    for line in raw.decode().splitlines():
        if not line.startswith("data:"):
            continue
        data = line.removeprefix("data:").strip()
        if data == "[DONE]":
            done = True
            continue
        event = json.loads(data)
        if event.get("usage"):
            tokens = event["usage"]["completion_tokens"]
        for choice in event.get("choices", []):
            text.append(choice.get("delta", {}).get("content") or "")
    return "".join(text), tokens, done


def probe(url: str, key: str, mode: Mode, kind: Kind, enclave: Enclave) -> dict[str, Any]:
    """One request of `kind` through `mode`, checked end to end (BenchError says what
    failed)."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    sealed: tuple[SealedRequest, ResponseOpener] | None = None
    content = body(mode.model, kind.stream, kind.max_tokens)
    where = f"{mode.name}/{kind.name}"
    if mode.client_sealed:
        sealed = seal(enclave, mode.model, kind)
        content = sealed[0].to_bytes()
        headers["Content-Type"] = envelope.SEALED_CONTENT_TYPE
    try:
        answer = httpx.post(url + CHAT, content=content, headers=headers, timeout=60)
    except httpx.HTTPError as exc:
        raise BenchError(f"{where}: probe failed: {exc!r}") from exc
    if answer.status_code != 200:
        raise BenchError(f"{where}: probe answered {answer.status_code}: {answer.text[:300]}")
    found: dict[str, Any] = {"request_id": answer.headers.get("x-request-id", "")}
    raw = answer.content
    if sealed is not None:
        if b'"choices"' in raw or b"[DONE]" in raw:
            raise BenchError(f"{where}: the sealed answer holds plaintext")
        try:
            opened = open_answer(raw, sealed[0], sealed[1], enclave)
        except SealingError as exc:
            raise BenchError(f"{where}: the sealed answer failed {exc.check}") from exc
        raw = opened.plaintext
        found |= {
            "frames": opened.frames,  # the plaintext of each frame (not for the report)
            "frame_bytes": [len(f) for f in opened.frames],
            "receipt_output_tokens": opened.receipt.output_tokens,
        }
    try:
        text, tokens, done = answer_text(raw, kind.stream)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise BenchError(f"{where}: the answer is not a completion: {exc!r}") from exc
    if not done:
        raise BenchError(f"{where}: the stream did not end with [DONE]")
    if tokens is not None and tokens > kind.max_tokens:
        raise BenchError(f"{where}: {tokens} completion tokens, above max_tokens")
    return found | {"text": text, "completion_tokens": tokens}


def receipt_status(url: str, key: str, request_id: str) -> str:
    """The gateway's ledger verdict on one request's receipt (`GET /v1/generation`)."""
    answer = httpx.get(
        url + "/v1/generation",
        params={"id": request_id},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    if answer.status_code != 200:
        raise BenchError(f"/v1/generation answered {answer.status_code}: {answer.text[:300]}")
    return str(answer.json()["data"].get("receipt_status", ""))


# --- the client's own cost ---------------------------------------------------------------


def _enclave_answer(
    raw_request: bytes,
    private: Any,
    public: bytes,
    signer: ed25519.Ed25519PrivateKey,
    pieces: list[bytes],
    output_tokens: int,
) -> bytes:
    """What the agent sends back for this request: `pieces` as frames, then a signed receipt
    that counts `output_tokens`."""
    sealed = SealedRequest.parse(raw_request)
    _, sealer = envelope.open_request(sealed, private, public)
    last = len(pieces) - 1
    frames = [sealer.frame(piece, final=i == last) for i, piece in enumerate(pieces)]
    receipt = receipts.sign_receipt(
        sign=signer.sign,
        signing_public=signer.public_key().public_bytes_raw(),
        hpke_public=public,
        request_id="bench",
        model=str(sealed.meta.get("model", "")),
        served_model="sim-model",
        input_tokens=20,
        output_tokens=output_tokens,
        usage_source="engine",
        status=200,
        complete=True,
        request_sha256=sealed.digest,
        response_sha256=sealer.digest.hexdigest(),
        now=dt.datetime.now(dt.UTC),
    )
    return b"".join(frames) + envelope.sse_event(envelope.RECEIPT_EVENT, receipt.text().encode())


def _summary(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {
        "median_us": round(statistics.median(ordered) / 1000, 1),
        "mean_us": round(statistics.fmean(ordered) / 1000, 1),
        "p99_us": round(p99 / 1000, 1),
    }


def client_cost(
    model: str, kind: Kind, pieces: list[bytes], iterations: int, output_tokens: int
) -> dict[str, Any]:
    """Per request of `kind`: seal (HPKE setup + AEAD + the envelope's JSON), open every frame
    of an answer shaped like the real one (`pieces`: the plaintext of each frame;
    `output_tokens`: its length, as the receipt says), verify the receipt (Ed25519 +
    canonical JSON). The enclave's work in between is not timed."""
    if not pieces:
        raise BenchError("no frames to replay: the client-sealed probe found none")
    private, public = hpke.generate_key_pair()
    signer = ed25519.Ed25519PrivateKey.generate()
    enclave = Enclave(
        public,
        envelope.key_id(public),
        envelope.key_id(signer.public_key().public_bytes_raw()),
    )
    phases: dict[str, list[int]] = {"seal": [], "open": [], "verify": [], "total": []}
    for _ in range(iterations):
        t0 = time.perf_counter_ns()
        sealed, opener = seal(enclave, model, kind)
        raw_request = sealed.to_bytes()
        t1 = time.perf_counter_ns()
        raw = _enclave_answer(raw_request, private, public, signer, pieces, output_tokens)
        t2 = time.perf_counter_ns()
        receipt_text = b""
        for event in FrameReader().feed(raw):
            if event.name == envelope.RECEIPT_EVENT:
                receipt_text = event.data
            else:
                opener.open(envelope.frame_ciphertext(event))
        t3 = time.perf_counter_ns()
        receipts.verify_receipt(
            receipt_text,
            signing_key_sha256=enclave.signing_key_sha256,
            request_sha256=sealed.digest,
            response_sha256=opener.digest.hexdigest(),
            hpke_key_sha256=enclave.hpke_key_sha256,
        )
        t4 = time.perf_counter_ns()
        if not opener.finished:
            raise BenchError("the replayed answer did not end with its final frame")
        phases["seal"].append(t1 - t0)
        phases["open"].append(t3 - t2)
        phases["verify"].append(t4 - t3)
        phases["total"].append(t1 - t0 + t4 - t2)
    total = _summary(phases["total"])
    return {
        "iterations": iterations,
        "frames": len(pieces),
        "answer_bytes": sum(len(p) for p in pieces),
        "output_tokens": output_tokens,
        **{name: _summary(samples) for name, samples in phases.items()},
        "requests_per_core_s": round(1e6 / total["mean_us"], 0) if total["mean_us"] else None,
    }
