"""Attested sessions on the gateway→enclave hop (wire v2, docs/sealed-mode.md section 2).

One `Session` per endpoint admission: the enclave's attested HPKE key, its attested signing
key and when that evidence verified (`session_key`). It is opened on the first request that
needs it, with a HELLO signed by the gateway key, and lives until the lease it was opened
under ends (`expires_at` = the admission's expiry). Everything sealed on the hop travels in
it: one HPKE setup per admission instead of one per request.

    SessionPool.get(endpoint)        the live session for this admission (concurrent first
                                     requests share one handshake)
    SessionPool.forget(pooled)       the enclave no longer knows it (409 session_unknown)
    SessionPool.prune(live, now)     drop sessions whose endpoint left or whose lease ended

The handshake itself (POST /v1/sessions) is the caller's `Handshake`; `handshake_over` is the
one dispatch.py uses, on the upstream connection pool. Sessions that stop being used are kept
as `retired` until their receipts are covered by signed roots or flagged (roots.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import orjson

from teeroute.sealing import frames, session
from teeroute.sealing.errors import SealingError
from teeroute.sealing.session import Session, SessionParams
from teeroute.sealing.tracker import RootTracker
from teeroute_gateway.catalog import Endpoint
from teeroute_gateway.upstream import Origin, UpstreamError, UpstreamPool

log = logging.getLogger(__name__)

SessionKey = tuple[str, str, str]
"""(enclave HPKE key sha256, attested signing key sha256, attested_at ISO)."""
Handshake = Callable[[Endpoint, bytes], Awaitable[bytes]]
"""POSTs a HELLO frame to the endpoint; returns the WELCOME frame's payload."""
Proofs = list[tuple[str, str]]
"""(request id, proof bundle JSON) of receipts a signed root covers (for the ledger)."""
MAX_LIFETIME_S = 24 * 3600 - 60
"""The enclave refuses sessions longer than 24 h (session.time); a lease rarely is."""
MAX_ERROR = 4096
SESSIONS_PATH = b"/v1/sessions"


def session_key(endpoint: Endpoint) -> SessionKey:
    attested = endpoint.attested_at.isoformat() if endpoint.attested_at else ""
    return (endpoint.hpke_key_sha256, endpoint.signing_key_sha256, attested)


def params_for(endpoint: Endpoint, initiator: str, now: float) -> SessionParams:
    """What the gateway binds the session to: the admission's keys and evidence, and an
    expiry no later than the lease (UpstreamError when there is no lease to bind)."""
    if endpoint.expires_at is None or endpoint.attested_at is None:
        raise UpstreamError("sealed", "the endpoint has no attested lease to open a session on")
    expires = min(int(endpoint.expires_at.timestamp()), int(now) + MAX_LIFETIME_S)
    if expires <= now:
        raise UpstreamError("sealed", "the endpoint's lease has ended")
    return SessionParams(
        session_id=os.urandom(16),
        enclave_hpke_sha256=endpoint.hpke_key_sha256,
        enclave_signing_sha256=endpoint.signing_key_sha256,
        attested={
            "tee": endpoint.tee,
            "measurement": endpoint.measurement,
            "chip_id": endpoint.chip_id,
            "attested_at": endpoint.attested_at.astimezone(dt.UTC).isoformat(),
        },
        initiator=initiator,
        created_at=int(now),
        expires_at=expires,
    )


@dataclass(eq=False)
class Pooled:
    """A confirmed session and what the gateway keeps with it."""

    key: SessionKey
    endpoint: Endpoint
    """The admission it was opened under (its URL is where its requests go)."""
    session: Session
    tracker: RootTracker
    """Its receipts until a signed root covers them."""
    sink: Callable[[Proofs], None] = field(default=lambda proofs: None)
    """Where inclusion proofs go once a root covers receipts (the ledger, root_keeper.py)."""

    def alive(self, now: float) -> bool:
        return self.session.alive(now)

    def proven(self, proofs: Proofs) -> None:
        if proofs:
            self.sink(proofs)


class SessionPool:
    def __init__(
        self,
        handshake: Handshake,
        initiator: str,
        sign: Callable[[bytes], bytes] | None,
        clock: Callable[[], float] = time.time,
        root_interval_s: float = 10.0,
        on_open: Callable[[Endpoint], None] = lambda endpoint: None,
    ) -> None:
        self._handshake = handshake
        self._on_open = on_open
        self.initiator = initiator
        self._sign = sign
        self._clock = clock
        self.root_interval_s = root_interval_s
        """The enclaves' S: a receipt waits this long for its root before it is asked for."""
        self.sink: Callable[[Proofs], None] = lambda proofs: None
        """Where every session's proofs go (set by the lifecycle: root_keeper.py)."""
        self._open: dict[SessionKey, Pooled] = {}
        self._pending: dict[SessionKey, asyncio.Future[Pooled]] = {}
        self.retired: list[Pooled] = []
        """Sessions no longer used whose receipts may still await a root."""
        self.handshakes = 0
        """Handshakes completed (a metric for tests and the scoreboard)."""

    async def get(self, endpoint: Endpoint) -> Pooled:
        key = session_key(endpoint)
        found = self._open.get(key)
        if found is not None and found.alive(self._clock()):
            return found
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._open_session(key, endpoint))
            self._pending[key] = pending
            pending.add_done_callback(lambda done: self._settled(key, done))
        return await asyncio.shield(pending)

    async def _open_session(self, key: SessionKey, endpoint: Endpoint) -> Pooled:
        if endpoint.hpke_public is None:
            raise UpstreamError("sealed", "the endpoint has no attested HPKE key")
        params = params_for(endpoint, self.initiator, self._clock())
        hello, opened = session.initiate(endpoint.hpke_public, params, self._sign)
        welcome = await self._handshake(endpoint, hello)
        try:
            opened.confirm(welcome)
        except SealingError as exc:
            raise UpstreamError("sealed", f"the enclave's welcome failed {exc.check}") from None
        tracker = RootTracker(
            session_id=opened.id,
            hpke_key_sha256=endpoint.hpke_key_sha256,
            interval_s=self.root_interval_s,
        )
        pooled = Pooled(key, endpoint, opened, tracker, lambda proofs: self.sink(proofs))
        self._replace(pooled)
        self.handshakes += 1
        self._on_open(endpoint)
        return pooled

    def _settled(self, key: SessionKey, done: asyncio.Future[Pooled]) -> None:
        if self._pending.get(key) is done:
            del self._pending[key]
        if not done.cancelled():
            done.exception()  # retrieved: every waiter may have given up

    def _replace(self, pooled: Pooled) -> None:
        """The new session for this admission; others of the same endpoint retire (its
        admission changed: new evidence, new keys)."""
        for key, other in list(self._open.items()):
            if key == pooled.key or other.endpoint.key == pooled.endpoint.key:
                self._retire(key)
        self._open[pooled.key] = pooled

    def forget(self, pooled: Pooled) -> None:
        """The enclave does not know this session (it restarted): the next request opens
        a new one."""
        if self._open.get(pooled.key) is pooled:
            self._retire(pooled.key)

    def prune(self, live: Iterable[Endpoint], now: float) -> None:
        """Drop sessions whose admission is no longer in the inventory or whose lease
        ended: nothing is sent under them again."""
        keys = {session_key(e) for e in live}
        for key, pooled in list(self._open.items()):
            if key not in keys or not pooled.alive(now):
                self._retire(key)

    def expire(self, now: float) -> None:
        """Retire the sessions whose lease ended (they are never used again)."""
        for key, pooled in list(self._open.items()):
            if not pooled.alive(now):
                self._retire(key)

    def _retire(self, key: SessionKey) -> None:
        pooled = self._open.pop(key)
        pooled.session.close()
        self.retired.append(pooled)

    def sessions(self) -> list[Pooled]:
        return list(self._open.values())


def gateway_initiator(public: bytes) -> str:
    return "gateway:" + hashlib.sha256(public).hexdigest()


def handshake_over(
    upstream: UpstreamPool, origin: Callable[[str], Origin], timeout_s: float
) -> Handshake:
    """A `Handshake` on the gateway's upstream pool: POST /v1/sessions, HELLO in, WELCOME out."""

    async def handshake(endpoint: Endpoint, hello: bytes) -> bytes:
        try:
            body = await post_frames(
                upstream, origin(endpoint.url), SESSIONS_PATH, hello, timeout_s
            )
        except EnclaveRefused as exc:  # the gateway's own HELLO: never the client's refusal
            message = f"the enclave refused the gateway's session: {exc.refusal}"
            raise UpstreamError("sealed", message, False) from None
        try:
            frame = frames.decode_one(body)
        except SealingError as exc:
            raise UpstreamError("sealed", f"the enclave's welcome failed {exc.check}") from None
        if frame.type != frames.FrameType.WELCOME:
            raise UpstreamError("sealed", "the enclave did not welcome the session")
        return frame.payload

    return handshake


async def post_frames(
    upstream: UpstreamPool, origin: Origin, path: bytes, body: bytes, timeout_s: float
) -> bytes:
    """POST wire-v2 bytes; the v2 answer's body (bounded), or UpstreamError naming the
    enclave's refusal (its clear JSON error type)."""
    headers = b"Content-Type: %s\r\n" % frames.CONTENT_TYPE.encode()
    response = await upstream.request(origin, b"POST", path, headers, body, timeout_s)
    answer = await response.read(timeout_s, frames.HEADER_LEN + frames.MAX_PAYLOAD)
    kind = (response.header(b"content-type") or b"").decode("latin-1")
    if response.status == 200 and frames.looks_v2(kind):
        return answer
    error = Refusal.of(response.status, answer)
    if error.session_gone:
        raise SessionGone(error, answer)
    raise EnclaveRefused(error, answer)


class EnclaveRefused(UpstreamError):
    """The agent answered a session call with its clear error (`body`, bounded JSON)."""

    def __init__(self, refusal: Refusal, body: bytes) -> None:
        super().__init__("sealed", f"the enclave refused: {refusal}", False)
        self.refusal = refusal
        self.body = body[:MAX_ERROR]


class SessionGone(EnclaveRefused):
    """The enclave does not know the gateway's session (it restarted, or dropped it)."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """An agent's clear error: status, type and message (bounded; never content)."""

    status: int
    type: str = ""
    message: str = ""

    @classmethod
    def of(cls, status: int, body: bytes) -> Refusal:
        try:
            error = orjson.loads(body[:MAX_ERROR]).get("error")
        except (orjson.JSONDecodeError, AttributeError):
            error = None
        if not isinstance(error, dict):
            return cls(status)
        kind, message = error.get("type"), error.get("message")
        return cls(
            status,
            kind[:64] if isinstance(kind, str) else "",
            message[:200] if isinstance(message, str) else "",
        )

    @property
    def session_gone(self) -> bool:
        """The gateway's own session is unknown there (not a client's: the agent names
        which kind in its message)."""
        return self.type == "session_unknown" and "client session" not in self.message

    def __str__(self) -> str:
        return f"{self.status} {self.type}: {self.message}" if self.type else str(self.status)
