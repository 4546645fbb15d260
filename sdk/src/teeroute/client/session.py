"""The sealed client: every request sealed to an enclave we verified ourselves, every answer
opened frame by frame and closed by a receipt we check (docs/sealed-mode.md, sections 1-3).

    client = SealedClient(gateway_url, api_key, load_policy(path))
    with client.request("/v1/chat/completions", body) as answer:
        for piece in answer:           # plaintext as it arrives, authenticated frame by frame
            ...
        answer.receipt                 # verified once the stream ended (else an error)

Nothing is sent to the inference endpoint unless an enclave of the model passed attestation
(`AttestationRefused` otherwise). An answer that is not sealed, is cut short, has a frame that
fails to open or a receipt that does not cover exactly this request and answer raises a
`SealingError` naming the check. A gateway error (in clear) is raised as `GatewayError`; if it
is 503 `sealed_key_unavailable` (the enclave left), the request is sealed again to another
verified enclave, once, before anything was returned.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any

import httpx

from teeroute.client.attest import (
    Attestation,
    Attestor,
    Clock,
    VerifiedEnclave,
    auth_headers,
    bounded_body,
    passed_headers,
    utc_now,
)
from teeroute.client.errors import (
    AttestationRefused,
    GatewayError,
    GatewayUnreachable,
    InvalidRequest,
    ResponseInvalid,
)
from teeroute.client.policy import ClientPolicy
from teeroute.sealing import bounds, envelope, receipts
from teeroute.wire import raw_pieces

SEALED_PATHS = ("/v1/chat/completions", "/v1/completions")
KEY_UNAVAILABLE = "sealed_key_unavailable"
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=600.0, write=60.0, pool=30.0)
MAX_CLEAR = 8 << 20
"""Bytes read of an answer in clear: the gateway's own error, or its model list."""
"""Reads may wait long: an engine thinking before its first token sends nothing meanwhile."""


def normalize_gateway(url: str) -> str:
    """The gateway's base URL, accepting it with or without the /v1 suffix."""
    url = url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def request_meta(path: str, body: bytes) -> dict[str, Any]:
    """What the gateway may read of a request: path, model, stream flag and the output bound
    (teeroute.sealing.bounds), always set: the gateway holds credit for it and the enclave
    refuses a body asking for more (the SDK default per choice when the body sets none)."""
    if path not in SEALED_PATHS:
        raise InvalidRequest("path", f"sealed mode serves {', '.join(SEALED_PATHS)}")
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("body", "not valid JSON") from None
    if not isinstance(doc, dict):
        raise InvalidRequest("body", "expected a JSON object")
    model = doc.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model", "a request names its model")
    try:
        per_choice = bounds.asked_max_tokens(doc) or bounds.DEFAULT_MAX_TOKENS
        count = bounds.choices(doc, path)
    except bounds.BoundInvalid as exc:
        raise InvalidRequest(exc.param, str(exc)) from None
    return {
        "path": path,
        "model": model,
        "stream": doc.get("stream") is True,
        "max_tokens": bounds.output_bound(per_choice, count),
    }


class SealedReader:
    """Reads one sealed response body, fed in arbitrary pieces: the plaintext of each frame
    in order, then the receipt, checked against this request and this answer."""

    def __init__(
        self,
        opener: envelope.ResponseOpener,
        sealed: envelope.SealedRequest,
        enclave: VerifiedEnclave,
        status: int,
        request_id: str | None = None,
    ) -> None:
        self._frames = envelope.FrameReader()
        self._opener = opener
        self._sealed = sealed
        self._enclave = enclave
        self._status = status
        self._request_id = request_id
        self._receipt: bytes | None = None

    def feed(self, data: bytes) -> list[bytes]:
        plain: list[bytes] = []
        for event in self._frames.feed(data):
            if event.name == envelope.RECEIPT_EVENT:
                self._take_receipt(event.data)
            elif self._receipt is not None:
                raise ResponseInvalid("frame.order", "a frame after the receipt")
            else:
                plain.append(self._opener.open(envelope.frame_ciphertext(event)))
        return plain

    def _take_receipt(self, data: bytes) -> None:
        if self._receipt is not None:
            raise ResponseInvalid("receipt.format", "a second receipt")
        if not self._opener.finished:
            raise ResponseInvalid("response.truncated", "the receipt came before the final frame")
        self._receipt = data

    def finish(self) -> receipts.Receipt:
        """At the end of the body: the verified receipt, or why the answer is not whole."""
        if self._frames.pending.strip():
            raise ResponseInvalid("response.truncated", "the answer ends inside a frame")
        if not self._opener.finished:
            raise ResponseInvalid("response.truncated", "the answer ends before its final frame")
        if self._receipt is None:
            raise ResponseInvalid("receipt.missing", "the answer carries no usage receipt")
        receipt = receipts.verify_receipt(
            self._receipt,
            signing_key_sha256=self._enclave.signing_key_sha256,
            request_id=self._request_id,
            request_sha256=self._sealed.digest,
            response_sha256=self._opener.digest.hexdigest(),
            hpke_key_sha256=self._enclave.hpke_key_sha256,
        )
        if receipt.model != self._sealed.meta.get("model"):
            raise ResponseInvalid("receipt.model", "the receipt names another model")
        if receipt.status != self._status:
            raise ResponseInvalid("receipt.status", "the receipt names another HTTP status")
        return receipt


class SealedResponse:
    """A sealed answer being read. Iterate for the plaintext (or `read()`); `receipt` is set
    once the body ended and the receipt verified. Close it (or use `with`) when done early:
    that closes the connection, so the enclave stops generating."""

    def __init__(
        self,
        http: httpx.Response,
        sealed: envelope.SealedRequest,
        opener: envelope.ResponseOpener,
        enclave: VerifiedEnclave,
    ) -> None:
        self._http = http
        self.status = http.status_code
        self.headers = http.headers
        self.request_id: str | None = http.headers.get("x-request-id")
        self.sealed = sealed
        self.enclave = enclave
        self.meta: Mapping[str, Any] = sealed.meta
        self.receipt: receipts.Receipt | None = None
        self._reader = SealedReader(opener, sealed, enclave, self.status, self.request_id)
        self._consumed = False

    @property
    def stream(self) -> bool:
        return self.meta.get("stream") is True

    def __iter__(self) -> Iterator[bytes]:
        if self._consumed:
            raise RuntimeError("a sealed response can be read once")
        self._consumed = True
        try:
            if self._http.headers.get("content-encoding", "identity") != "identity":
                raise ResponseInvalid("response.encoding", "a compressed sealed answer")
            for piece in raw_pieces(self._http):  # network pieces, never inflated
                for plain in self._reader.feed(piece):
                    if plain:
                        yield plain
        except httpx.TransportError as exc:
            raise ResponseInvalid(
                "response.truncated", f"the connection broke off ({type(exc).__name__})"
            ) from exc
        finally:
            self._http.close()
        self.receipt = self._reader.finish()

    def read(self) -> bytes:
        return b"".join(self)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SealedResponse:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class SealedClient:
    def __init__(
        self,
        gateway_url: str,
        api_key: str | None,
        policy: ClientPolicy,
        *,
        http: httpx.Client | None = None,
        rng: random.Random | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.gateway_url = normalize_gateway(gateway_url)
        self.api_key = api_key
        self.policy = policy
        self._http = http or httpx.Client(timeout=DEFAULT_TIMEOUT)
        self._rng = rng or random.SystemRandom()
        self.attestor = Attestor(self._http, self.gateway_url, policy, clock)

    def close(self) -> None:
        self._http.close()

    def attest(self, model: str, api_key: str | None = None) -> Attestation:
        """A fresh round of challenges (uncached): what `teeroute attest` shows."""
        return self.attestor.fetch(model, api_key or self.api_key)

    def request(self, path: str, body: bytes, api_key: str | None = None) -> SealedResponse:
        meta = request_meta(path, body)
        key = api_key or self.api_key
        model: str = meta["model"]
        tried: set[str] = set()
        last: GatewayError | None = None
        while True:
            try:
                enclave = self._pick(model, key, tried)
            except AttestationRefused:
                if last is not None:  # the enclave left and no other is there: say that
                    raise last from None
                raise
            sealed, opener = envelope.seal_request(enclave.hpke_public, meta, body)
            answer = self._send(path, sealed, key)
            if answer.headers.get(envelope.SEALED_HEADER, "").strip() == envelope.VERSION:
                return SealedResponse(answer, sealed, opener, enclave)
            content = self._read_clear(answer)
            if answer.status_code < 400:
                raise ResponseInvalid(
                    "response.sealed", "the gateway answered in clear; only sealed answers count"
                )
            error = GatewayError(answer.status_code, content, passed_headers(answer.headers))
            if error.status != 503 or error.code != KEY_UNAVAILABLE or tried:
                raise error
            self.attestor.forget(model, enclave.hpke_key_sha256)
            tried.add(enclave.hpke_key_sha256)
            last = error

    def _read_clear(self, answer: httpx.Response) -> bytes:
        """An answer that is not sealed: the gateway's own error (or a refused clear one)."""
        try:
            return bounded_body(answer, MAX_CLEAR)
        except httpx.TransportError as exc:
            raise GatewayUnreachable.of(self.gateway_url, exc) from exc
        finally:
            answer.close()

    def _pick(self, model: str, api_key: str | None, tried: set[str]) -> VerifiedEnclave:
        # After a 503 the enclave was forgotten: the others cached are used, or, if it was
        # the last, a fresh round asks which enclaves serve the model now.
        attestation = self.attestor.attest(model, api_key)
        offered = [v for v in attestation.verified if v.hpke_key_sha256 not in tried]
        if not offered:
            raise AttestationRefused(model, attestation.refused)
        return self._rng.choice(offered)

    def _send(
        self, path: str, sealed: envelope.SealedRequest, api_key: str | None
    ) -> httpx.Response:
        request = self._http.build_request(
            "POST",
            self.gateway_url + path,
            content=sealed.to_bytes(),
            headers={
                "Content-Type": envelope.SEALED_CONTENT_TYPE,
                "Accept": "text/event-stream",
                "Accept-Encoding": "identity",
                **auth_headers(api_key),
            },
        )
        try:
            return self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise GatewayUnreachable.of(self.gateway_url, exc) from exc

    def get(self, path: str, api_key: str | None = None) -> httpx.Response:
        """A plain (unsealed) GET to the gateway, e.g. /v1/models: no content is involved. Its
        body is read up to MAX_CLEAR bytes (a longer or compressed one reads as empty)."""
        headers = {**auth_headers(api_key or self.api_key), "Accept-Encoding": "identity"}
        try:
            with self._http.stream("GET", self.gateway_url + path, headers=headers) as answer:
                body = bounded_body(answer, MAX_CLEAR)
        except httpx.TransportError as exc:
            raise GatewayUnreachable.of(self.gateway_url, exc) from exc
        return httpx.Response(
            answer.status_code, headers=answer.headers, content=body, request=answer.request
        )
