"""The sealed client (wire v2, docs/sealed-mode.md): every request sealed to an enclave we
verified ourselves, every answer opened chunk by chunk and closed by a receipt we check.

    client = SealedClient(gateway_url, api_key, load_policy(path))
    with client.request("/v1/chat/completions", body) as answer:
        for piece in answer:           # plaintext as it arrives, authenticated chunk by chunk
            ...
        answer.receipt                 # verified once the stream ended (else an error)

Nothing is sent to the inference endpoint unless an enclave of the model passed attestation
(`AttestationRefused` otherwise). Requests travel in a session with the chosen enclave
(`sessions.SessionPool`: one HPKE handshake per enclave, then one AEAD per request); with
`one_shot=True` each request carries its own handshake (a ONESHOT frame) and nothing is kept.
An answer that is not sealed, is cut short, has a chunk that fails to open or a receipt that
does not cover exactly this request and answer raises a `SealingError` naming the check
(`answer.py`). A gateway error (in clear) is raised as `GatewayError`; 503
`sealed_key_unavailable` (the enclave left) seals the request again to another verified
enclave, once; 409 `session_unknown` (the enclave forgot our session: it restarted, or the
session died there first) opens a new session and sends once more. Both happen before anything
was returned.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import secrets
from collections.abc import Mapping
from typing import Any

import httpx

from teeroute.client.answer import SealedReader, SealedResponse
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
from teeroute.client.sessions import RENEW_MARGIN_S, SessionPool, oneshot, session_params
from teeroute.sealing import bounds, frames
from teeroute.sealing.receipt_body import TIMINGS_META
from teeroute.sealing.session import Exchange, Session

__all__ = ["SealedClient", "SealedReader", "SealedResponse", "normalize_gateway", "request_meta"]

SEALED_PATHS = ("/v1/chat/completions", "/v1/completions")
KEY_UNAVAILABLE = "sealed_key_unavailable"
SESSION_UNKNOWN = "session_unknown"
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=600.0, write=60.0, pool=30.0)
"""Reads may wait long: an engine thinking before its first token sends nothing meanwhile."""
MAX_CLEAR = 8 << 20
"""Bytes read of an answer in clear: the gateway's own error, or its model list."""
RENEW_MARGIN = dt.timedelta(seconds=RENEW_MARGIN_S)


def normalize_gateway(url: str) -> str:
    """The gateway's base URL, accepting it with or without the /v1 suffix."""
    url = url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def request_meta(path: str, body: bytes) -> dict[str, Any]:
    """What the gateway may read of a request: path, model, stream flag, the output bound
    (teeroute.sealing.bounds) and that this SDK reads timed receipts. The bound is always
    set: the gateway holds credit for it and the enclave refuses a body asking for more (the
    SDK default per choice when the body sets none)."""
    if path not in SEALED_PATHS:
        raise InvalidRequest("path", f"sealed mode serves {', '.join(SEALED_PATHS)}")
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
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
        TIMINGS_META: True,  # this SDK reads the agent's timings in receipts
    }


def sealed_meta(meta: Mapping[str, Any], key_id: str, sealed_at: int) -> bytes:
    """The REQUEST's readable meta, canonical JSON: what the gateway routes and meters on
    (authenticated, so nobody on the way can change it), the enclave key it is for, and when
    it was sealed."""
    doc = {**meta, "key_id": key_id, "sealed_at": sealed_at}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _error_code(error: GatewayError) -> str | None:
    """The error's machine name: OpenAI's `code`, else its `type` (session_unknown is sent
    as a type)."""
    kind = error.error.get("type") if error.error else None
    return error.code or (kind if isinstance(kind, str) else None)


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
        one_shot: bool = False,
    ) -> None:
        self.gateway_url = normalize_gateway(gateway_url)
        self.api_key = api_key
        self.policy = policy
        self.one_shot = one_shot
        """Each request with its own handshake (ONESHOT), no session kept."""
        self._http = http or httpx.Client(timeout=DEFAULT_TIMEOUT)
        self._rng = rng or random.SystemRandom()
        self._clock = clock
        self.attestor = Attestor(self._http, self.gateway_url, policy, clock)
        self.sessions = SessionPool(self._http, self.gateway_url, policy.cache_ttl, clock)

    def close(self) -> None:
        self.sessions.close()
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
            try:
                return self._to(enclave, path, meta, body, key)
            except GatewayError as error:
                if error.status != 503 or error.code != KEY_UNAVAILABLE or tried:
                    raise
                self.attestor.forget(model, enclave.hpke_key_sha256)
                self.sessions.drop(enclave)
                tried.add(enclave.hpke_key_sha256)
                last = error

    def _to(
        self,
        enclave: VerifiedEnclave,
        path: str,
        meta: Mapping[str, Any],
        body: bytes,
        key: str | None,
    ) -> SealedResponse:
        """The request sealed to `enclave` and sent; once more in a new session if the
        enclave no longer knows ours."""
        renewed = False
        while True:
            now = self._clock()
            raw = sealed_meta(meta, enclave.hpke_key_sha256, int(now.timestamp()))
            session, frame, exchange, receipt_key = self._seal(enclave, raw, body, key, now)
            answer = self._send(path, frame, key)
            if frames.looks_v2(answer.headers.get("content-type", "")):
                reader = SealedReader(
                    exchange,
                    receipt_key,
                    enclave,
                    str(meta["model"]),
                    answer.status_code,
                    answer.headers.get("x-request-id"),
                )
                return SealedResponse(
                    answer, reader, enclave, meta, session.id if session else None
                )
            error = self._clear_error(answer)
            if renewed or session is None or _error_code(error) != SESSION_UNKNOWN:
                raise error
            self.sessions.drop(enclave, session)
            renewed = True

    def _seal(
        self,
        enclave: VerifiedEnclave,
        meta: bytes,
        body: bytes,
        key: str | None,
        now: dt.datetime,
    ) -> tuple[Session | None, bytes, Exchange, bytes]:
        """(the session or None for a one-shot, the frame to send, its Exchange, the key of
        the receipt's client tag)."""
        if self.one_shot:
            params = session_params(enclave, now, self.policy.cache_ttl, _session_id())
            frame, exchange, receipt_key = oneshot(enclave, params, meta, body)
            return None, frame, exchange, receipt_key
        session = self.sessions.get(enclave, key)
        frame, exchange = session.seal_request(meta, body, now.timestamp())
        return session, frame, exchange, session.receipt_key

    def _clear_error(self, answer: httpx.Response) -> GatewayError:
        """An answer that is not sealed: the gateway's own error (or a refused clear one)."""
        content = self._read_clear(answer)
        if answer.status_code < 400:
            raise ResponseInvalid(
                "response.sealed", "the gateway answered in clear; only sealed answers count"
            )
        return GatewayError(answer.status_code, content, passed_headers(answer.headers))

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
        if attestation.at + self.policy.cache_ttl <= self._clock() + RENEW_MARGIN:
            # too little of the verification left for a session to stand on: verify again
            attestation = self.attestor.attest(model, api_key, fresh=True)
        offered = [v for v in attestation.verified if v.hpke_key_sha256 not in tried]
        if not offered:
            raise AttestationRefused(model, attestation.refused)
        return self._rng.choice(offered)

    def _send(self, path: str, frame: bytes, api_key: str | None) -> httpx.Response:
        request = self._http.build_request(
            "POST",
            self.gateway_url + path,
            content=frame,
            headers={
                "Content-Type": frames.CONTENT_TYPE,
                "Accept": frames.CONTENT_TYPE,
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


def _session_id() -> bytes:
    return secrets.token_bytes(16)
