"""The client's side of the benchmark (wire v2: client sessions, binary frames).

- `Enclave`: what a client knows of the enclave (its attested keys, from the lease) and its
  client session with it, opened through the gateway (`POST /v1/sessions`) by the SDK's own
  `SessionPool`: one handshake, then each request is one AEAD.
- `sealed_pool`: distinct REQUEST frames of one new session, in counter order, for wrk to send
  in turn, sealed just before the run they are for (`pool_size` of them): the agent takes
  each counter once (its replay window), so wrk sends each body once without sealing in it.
- `probe`: one real request per mode and kind, checked end to end (HTTP 200; the answer's
  text, at most max_tokens long; for a client-sealed request every chunk opened in order and
  the receipt checked by the SDK's reader: our session's MAC tag, this request's and these
  chunks' digests, the attested keys; for both sealed modes the gateway's ledger record of it
  has `receipt_status: valid`). Also returns the plaintext of each chunk, the real shape the
  micro-benchmark replays.
- `client_cost`: what sealing costs the client per request, in this process: seal the body,
  open the answer's chunks, check the receipt (the enclave's side is prepared untimed); and
  the one handshake a session costs, apart.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import secrets
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from gatewaybench.procs import BenchError

from sealedbench.kinds import Kind
from sealedbench.modes import CHAT, POOL, Mode, body, sealed_meta
from teeroute.client.answer import SealedReader
from teeroute.client.attest import VerifiedEnclave, utc_now
from teeroute.client.session import sealed_meta as meta_bytes
from teeroute.client.sessions import SessionPool, session_params
from teeroute.sealing import frames, hpke
from teeroute.sealing.errors import SealingError
from teeroute.sealing.receipt_mac import CLIENT_TAG, GATEWAY_TAG, ReceiptV2, iso_utc, receipt_frame
from teeroute.sealing.session import Exchange, Session, accept, initiate, parse_hello

LEASE_TIME = "%Y-%m-%dT%H:%M:%SZ"
HTTP_TIMEOUT_S = 60.0


def _lease_time(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, LEASE_TIME).replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class Enclave:
    """What a client knows of the enclave (its attested keys, from the lease; the lease's
    verification stands for the client's own) and, given the gateway, its client session."""

    verified: VerifiedEnclave
    lease_ends: dt.datetime
    api_key: str = field(default="", repr=False)
    sessions: SessionPool | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_lease(
        cls,
        lease: dict[str, Any],
        gateway_url: str = "",
        api_key: str = "",
        http: httpx.Client | None = None,
    ) -> Enclave:
        """`gateway_url`: where client sessions are opened (none: only the enclave's keys)."""
        verified = VerifiedEnclave(
            pool=POOL,
            endpoint_id=str(lease.get("name", "")),
            tee=str(lease["tee"]),
            measurement=str(lease.get("measurement", "")),
            chip_id=str(lease.get("chipId", "")),
            hpke_public=base64.b64decode(lease["hpkePublicKey"]),
            signing_public=base64.b64decode(lease.get("signingPublicKey", "")),
            hpke_key_sha256=lease["hpkeKeySha256"],
            signing_key_sha256=lease["signingKeySha256"],
            verified_at=_lease_time(lease["attestedAt"]),
        )
        ends = _lease_time(lease["expiresAt"])
        sessions = None
        if gateway_url:
            client = http or httpx.Client(timeout=HTTP_TIMEOUT_S)
            sessions = SessionPool(client, gateway_url, ends - verified.verified_at, utc_now)
        return cls(verified, ends, api_key, sessions)

    @property
    def hpke_public(self) -> bytes:
        return self.verified.hpke_public

    @property
    def hpke_key_sha256(self) -> str:
        return self.verified.hpke_key_sha256

    @property
    def signing_key_sha256(self) -> str:
        return self.verified.signing_key_sha256

    def session(self, fresh: bool = False) -> Session:
        """The client session with this enclave (`fresh`: a new one, its whole life ahead)."""
        if self.sessions is None:
            raise BenchError("no gateway given to open a client session through")
        if fresh:
            self.sessions.drop(self.verified)
        return self.sessions.get(self.verified, self.api_key)


def seal(session: Session, enclave: Enclave, model: str, kind: Kind) -> tuple[bytes, Exchange]:
    """One REQUEST frame of `kind` in `session`, and the Exchange that opens its answer."""
    meta = meta_bytes(
        sealed_meta(model, kind.stream, kind.max_tokens), enclave.hpke_key_sha256, int(time.time())
    )
    return session.seal_request(meta, body(model, kind.stream, kind.max_tokens), time.time())


POOL_RATE = 2000
"""Sealed bodies per second of a run: above any rate a sealed mode reached here (about 800
requests/s; plain, 1,300), so wrk never comes back to the first."""


def pool_size(seconds: int) -> int:
    return seconds * POOL_RATE


def sealed_pool(enclave: Enclave, model: str, kind: Kind, count: int) -> list[bytes]:
    """`count` REQUEST frames of the same request, in a new session (so it lives the whole
    run), counters in order: the agent takes each once."""
    session = enclave.session(fresh=True)
    return [seal(session, enclave, model, kind)[0] for _ in range(count)]


@dataclass(frozen=True)
class Opened:
    """A client-sealed answer, opened and verified."""

    plaintext: bytes
    frames: list[bytes]
    receipt: ReceiptV2


def open_answer(
    raw: bytes,
    exchange: Exchange,
    receipt_key: bytes,
    enclave: Enclave,
    model: str,
    request_id: str | None = None,
) -> Opened:
    """Every chunk in order, the final one present, and a receipt tagged with our session's
    key for this request and these chunks (the SDK's reader); SealingError names the check
    that failed."""
    reader = SealedReader(exchange, receipt_key, enclave.verified, model, 200, request_id)
    pieces = reader.feed(raw)
    return Opened(b"".join(pieces), pieces, reader.finish())


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
    failed). A client-sealed one goes in the enclave's client session."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    content = body(mode.model, kind.stream, kind.max_tokens)
    where = f"{mode.name}/{kind.name}"
    sealed: tuple[Exchange, bytes] | None = None
    if mode.client_sealed:
        session = enclave.session()
        content, exchange = seal(session, enclave, mode.model, kind)
        sealed = exchange, session.receipt_key
        headers["Content-Type"] = frames.CONTENT_TYPE
    try:
        answer = httpx.post(url + CHAT, content=content, headers=headers, timeout=HTTP_TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise BenchError(f"{where}: probe failed: {exc!r}") from exc
    if answer.status_code != 200:
        raise BenchError(f"{where}: probe answered {answer.status_code}: {answer.text[:300]}")
    request_id = answer.headers.get("x-request-id", "")
    found: dict[str, Any] = {"request_id": request_id}
    raw = answer.content
    if sealed is not None:
        if b'"choices"' in raw or b"[DONE]" in raw:
            raise BenchError(f"{where}: the sealed answer holds plaintext")
        try:
            opened = open_answer(raw, *sealed, enclave, mode.model, request_id or None)
        except SealingError as exc:
            raise BenchError(f"{where}: the sealed answer failed {exc.check}: {exc}") from exc
        raw = opened.plaintext
        found |= {
            "frames": opened.frames,  # the plaintext of each chunk (not for the report)
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


@dataclass
class _Bench:
    """Both ends of one session, in this process: the client's, and the enclave's (the
    SDK's enclave half, as the agent runs it) that answers untimed."""

    enclave: Enclave
    client: Session
    server: Session
    pieces: list[bytes]
    output_tokens: int

    @classmethod
    def start(cls, pieces: list[bytes], output_tokens: int) -> _Bench:
        private, public = hpke.generate_key_pair()
        enclave = _local_enclave(public)
        now = time.time()
        params = session_params(enclave.verified, utc_now(), dt.timedelta(hours=1), _random_id())
        hello, client = initiate(public, params)
        hello_payload = frames.decode_one(hello).payload
        welcome, server = accept(
            parse_hello(hello_payload), private, public, enclave.signing_key_sha256, now
        )
        client.confirm(frames.decode_one(welcome).payload)
        return cls(enclave, client, server, pieces, output_tokens)

    def answer(self, request: bytes) -> bytes:
        """What the agent sends back: the pieces as chunks, then a tagged receipt."""
        meta, _, reply = self.server.open_request(frames.decode_one(request).payload, time.time())
        last = len(self.pieces) - 1
        chunks = [reply.chunk(p, final=i == last) for i, p in enumerate(self.pieces)]
        fields = {
            "session_id": self.server.id.hex(),
            "index": 0,
            "request_id": "bench",
            "model": _meta_model(meta),
            "served_model": "sim-model",
            "input_tokens": 20,
            "output_tokens": self.output_tokens,
            "usage_source": "engine",
            "status": 200,
            "complete": True,
            "request_sha256": reply.request_sha256,
            "response_sha256": reply.response_sha256,
            "hpke_key_sha256": self.enclave.hpke_key_sha256,
            "signing_key_sha256": self.enclave.signing_key_sha256,
            "issued_at": iso_utc(time.time()),
        }
        keys = [(GATEWAY_TAG, bytes(32)), (CLIENT_TAG, self.server.receipt_key)]
        return b"".join(chunks) + receipt_frame(fields, keys)


def _local_enclave(public: bytes) -> Enclave:
    signing = b"\x01" * 32  # stands for the attested signing key: only its digest is checked
    lease = {
        "tee": "simulated",
        "hpkePublicKey": base64.b64encode(public).decode(),
        "signingPublicKey": base64.b64encode(signing).decode(),
        "hpkeKeySha256": hashlib.sha256(public).hexdigest(),
        "signingKeySha256": hashlib.sha256(signing).hexdigest(),
        "attestedAt": dt.datetime.now(dt.UTC).strftime(LEASE_TIME),
        "expiresAt": (dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)).strftime(LEASE_TIME),
    }
    return Enclave.from_lease(lease)


def _meta_model(meta: bytes) -> str:
    return str(json.loads(meta)["model"])


def _random_id() -> bytes:
    return secrets.token_bytes(16)


def _summary(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {
        "median_us": round(statistics.median(ordered) / 1000, 1),
        "mean_us": round(statistics.fmean(ordered) / 1000, 1),
        "p99_us": round(p99 / 1000, 1),
    }


def _handshakes(iterations: int) -> list[int]:
    """The client's side of opening a session: HELLO (X25519 + HKDF), WELCOME checked."""
    private, public = hpke.generate_key_pair()
    enclave = _local_enclave(public)
    samples = []
    for _ in range(iterations):
        params = session_params(enclave.verified, utc_now(), dt.timedelta(hours=1), _random_id())
        t0 = time.perf_counter_ns()
        hello, client = initiate(public, params)
        t1 = time.perf_counter_ns()
        payload = frames.decode_one(hello).payload
        welcome = accept(parse_hello(payload), private, public, enclave.signing_key_sha256,
                         time.time())[0]  # fmt: skip
        t2 = time.perf_counter_ns()
        client.confirm(frames.decode_one(welcome).payload)
        samples.append(t1 - t0 + time.perf_counter_ns() - t2)
    return samples


def client_cost(
    model: str, kind: Kind, pieces: list[bytes], iterations: int, output_tokens: int
) -> dict[str, Any]:
    """Per request of `kind` in a session: seal (meta + AEAD), open every chunk of an answer
    shaped like the real one (`pieces`: the plaintext of each chunk; `output_tokens`: its
    length, as the receipt says), check the receipt (MAC tag + digests). The enclave's work in
    between is not timed; the session's one handshake is timed apart (`handshake`)."""
    if not pieces:
        raise BenchError("no chunks to replay: the client-sealed probe found none")
    bench = _Bench.start(pieces, output_tokens)
    phases: dict[str, list[int]] = {"seal": [], "open": [], "verify": [], "total": []}
    for _ in range(iterations):
        t0 = time.perf_counter_ns()
        request, exchange = seal(bench.client, bench.enclave, model, kind)
        t1 = time.perf_counter_ns()
        raw = bench.answer(request)
        t2 = time.perf_counter_ns()
        reader = SealedReader(
            exchange, bench.client.receipt_key, bench.enclave.verified, model, 200, "bench"
        )
        reader.feed(raw)
        t3 = time.perf_counter_ns()
        reader.finish()
        t4 = time.perf_counter_ns()
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
        "handshake": _summary(_handshakes(max(1, iterations // 10))),
        "requests_per_core_s": round(1e6 / total["mean_us"], 0) if total["mean_us"] else None,
    }
