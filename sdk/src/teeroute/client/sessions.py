"""The client's sessions (wire v2, docs/sealed-mode.md): one per enclave it verified itself.

A session is opened through the gateway (`POST /v1/sessions`, the HELLO sealed to the enclave's
attested HPKE key, header `x-teeroute-enclave-key` naming that key so the gateway can route it)
and confirmed by the enclave's WELCOME, which only the holder of that key can compute. It binds
what *this client* verified (tee, measurement, chip, when) and lives no longer than the client
trusts that verification (`ClientPolicy.cache_ttl`, at most `MAX_LIFETIME`): a session never
outlives the attestation it stands on. Requests are then one AEAD each, no public-key work.

    session_params(enclave, now, ttl)   what the session binds (pure)
    SessionPool.get(enclave, api_key)   the live session, opened on first use (thread-safe:
                                        concurrent requests to one enclave share one handshake)
    SessionPool.drop(enclave, session)  forget it (the enclave forgot it: 409 session_unknown;
                                        the enclave left)
    oneshot(enclave, params, meta, body)  a request with its own handshake, for clients that
                                        keep nothing (`one_shot=True`)
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from teeroute.client.attest import VerifiedEnclave, auth_headers, bounded_body, passed_headers
from teeroute.client.errors import GatewayError, GatewayUnreachable, ResponseInvalid
from teeroute.sealing import frames
from teeroute.sealing.session import Exchange, Session, SessionParams, initiate

SESSIONS_PATH = "/v1/sessions"
ENCLAVE_KEY_HEADER = "x-teeroute-enclave-key"
MAX_LIFETIME = dt.timedelta(hours=1)
RENEW_MARGIN_S = 5.0
"""A session this close to its end is replaced before use, so a request sealed in it does not
reach the enclave after it died."""
MAX_WELCOME = 4096
"""Bytes of the gateway's answer to a HELLO read: a WELCOME frame is 56, an error a few hundred."""
INITIATOR = "client"


def session_params(
    enclave: VerifiedEnclave, now: dt.datetime, ttl: dt.timedelta, session_id: bytes
) -> SessionParams:
    """A new session's transcript: the enclave's keys and what we verified of it; it ends when
    our verification stops counting (verified_at + ttl) or after MAX_LIFETIME."""
    ends = min(enclave.verified_at + ttl, now + MAX_LIFETIME)
    return SessionParams(
        session_id=session_id,
        enclave_hpke_sha256=enclave.hpke_key_sha256,
        enclave_signing_sha256=enclave.signing_key_sha256,
        attested={
            "tee": enclave.tee,
            "measurement": enclave.measurement,
            "chip_id": enclave.chip_id,
            "attested_at": enclave.verified_at.astimezone(dt.UTC).isoformat(timespec="seconds"),
        },
        initiator=INITIATOR,
        created_at=int(now.timestamp()),
        expires_at=int(ends.timestamp()),
    )


def oneshot(
    enclave: VerifiedEnclave, params: SessionParams, meta: bytes, body: bytes
) -> tuple[bytes, Exchange, bytes]:
    """A ONESHOT frame (u16 HELLO length | HELLO | REQUEST, as `sealing.session.oneshot`
    makes it), its Exchange, and the throwaway session's receipt key, which the enclave
    tags the receipt with (kind 2): only the holder of the enclave key can derive it."""
    hello, throwaway = initiate(enclave.hpke_public, params)
    request, exchange = throwaway.seal_request(meta, body, params.created_at)
    hello_payload = frames.decode_one(hello).payload
    payload = len(hello_payload).to_bytes(2, "big") + hello_payload
    payload += frames.decode_one(request).payload
    throwaway.close()  # it seals nothing more; its Exchange still opens the answer
    return frames.encode(frames.FrameType.ONESHOT, payload), exchange, throwaway.receipt_key


def _key(enclave: VerifiedEnclave) -> tuple[str, str]:
    return enclave.hpke_key_sha256, enclave.signing_key_sha256


@dataclass
class _Slot:
    lock: threading.Lock
    session: Session | None = None


class SessionPool:
    """Live client sessions by enclave (HPKE key, signing key)."""

    def __init__(
        self,
        http: httpx.Client,
        gateway_url: str,
        ttl: dt.timedelta,
        clock: Callable[[], dt.datetime],
    ) -> None:
        self._http = http
        self._url = gateway_url
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._slots: dict[tuple[str, str], _Slot] = {}
        self.opened = 0
        """Handshakes made (what tests and `--verbose` count)."""

    def get(self, enclave: VerifiedEnclave, api_key: str | None) -> Session:
        with self._lock:
            slot = self._slots.setdefault(_key(enclave), _Slot(threading.Lock()))
        with slot.lock:
            now = self._clock()
            if slot.session is None or not slot.session.alive(now.timestamp() + RENEW_MARGIN_S):
                slot.session = self._open(enclave, api_key, now)
            return slot.session

    def drop(self, enclave: VerifiedEnclave, session: Session | None = None) -> None:
        """Forgets the enclave's session (only `session`, when given: a concurrent request
        may already have replaced it)."""
        with self._lock:
            slot = self._slots.get(_key(enclave))
        if slot is None:
            return
        with slot.lock:
            if slot.session is not None and (session is None or slot.session is session):
                slot.session.close()
                slot.session = None

    def close(self) -> None:
        with self._lock:
            slots, self._slots = list(self._slots.values()), {}
        for slot in slots:
            if slot.session is not None:
                slot.session.close()

    def _open(self, enclave: VerifiedEnclave, api_key: str | None, now: dt.datetime) -> Session:
        params = session_params(enclave, now, self._ttl, secrets.token_bytes(16))
        if params.expires_at <= now.timestamp() + RENEW_MARGIN_S:
            raise ResponseInvalid("session.time", "our verification of the enclave is too old")
        hello, session = initiate(enclave.hpke_public, params)
        welcome = self._post_hello(enclave, hello, api_key)
        session.confirm(welcome.payload)  # OpenFailed("session.confirm"): not that enclave
        self.opened += 1
        return session

    def _post_hello(
        self, enclave: VerifiedEnclave, hello: bytes, api_key: str | None
    ) -> frames.Frame:
        headers = {
            "Content-Type": frames.CONTENT_TYPE,
            "Accept-Encoding": "identity",
            ENCLAVE_KEY_HEADER: enclave.hpke_key_sha256,
            **auth_headers(api_key),
        }
        try:
            with self._http.stream(
                "POST", self._url + SESSIONS_PATH, content=hello, headers=headers
            ) as answer:
                body = bounded_body(answer, MAX_WELCOME)
        except httpx.TransportError as exc:
            raise GatewayUnreachable.of(self._url, exc) from exc
        sealed = frames.looks_v2(answer.headers.get("content-type", ""))
        if answer.status_code != 200 or not sealed:
            if answer.status_code < 400:
                raise ResponseInvalid("session.welcome", "the gateway answered the HELLO in clear")
            raise GatewayError(answer.status_code, body, passed_headers(answer.headers))
        welcome = frames.decode_one(body)
        if welcome.type != frames.FrameType.WELCOME:
            raise ResponseInvalid("session.welcome", f"a {welcome.type.name} frame, not WELCOME")
        return welcome
