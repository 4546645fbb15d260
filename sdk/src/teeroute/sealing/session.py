"""Wire v2 attested sessions: one HPKE setup, then every request and answer chunk is AEAD.

The initiator (the gateway for its hop to an enclave, or a client SDK / `teeroute proxy`)
opens a session to an enclave key it has verified; the transcript of what it verified
(`SessionParams`) is bound into the keys, so both ends agree on it or nothing opens.

    initiate(pub, params, sign)    -> HELLO frame, initiator Session       initiator
    parse_hello / accept(...)      -> WELCOME frame, enclave Session       enclave
    Session.confirm(welcome)       the enclave holds the key and the same transcript
    Session.seal_request(...)      -> REQUEST frame, Exchange              initiator
    Session.open_request(...)      -> meta, body, Reply                    enclave
    Reply.chunk(data, final)       -> CHUNK frame                          enclave
    Exchange.open(payload)         -> plaintext, in order, complete        initiator
    oneshot / open_oneshot         a HELLO and its one REQUEST in one frame

Message payload (REQUEST, CHUNK):
    session_id(16) | epoch u32 | counter u64 | flags u8 | [REQUEST: u16 meta len | meta] | AEAD
AAD = frame type byte | that prefix | for CHUNK: request counter u64 | chunk index u32 (not
sent: both ends know them), so a chunk opens only as the next chunk of its own request.
The key schedule is ratchet.py; the replay window replay.py; docs/sealed-mode.md, "Wire v2".
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Callable
from typing import NoReturn

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import x25519

from teeroute.sealing import hpke, ratchet
from teeroute.sealing.errors import EnvelopeInvalid, FrameInvalid, OpenFailed, SealingError
from teeroute.sealing.frames import MAGIC, WIRE_VERSION, FrameType, encode
from teeroute.sealing.messages import (
    CHUNK_AAD,
    CHUNK_OVERHEAD,
    FRAME_CHUNK,
    LENGTH,
    MAX_BODY,
    MESSAGE,
    REQUEST_HEAD,
    TAG,
    ChunkObserver,
    nonce,
)
from teeroute.sealing.params import HELLO_LABEL, Hello, SessionParams, parse_hello
from teeroute.sealing.replay import ReplayWindow

__all__ = [
    "ChunkObserver",
    "Exchange",
    "Hello",
    "Reply",
    "Session",
    "SessionParams",
    "accept",
    "initiate",
    "oneshot",
    "open_oneshot",
    "parse_hello",
]

SESSION_INFO = b"teeroute/v2 session"
WINDOW = 4096
MAX_SKEW_S = 300
MAX_LIFETIME_S = 24 * 3600
MAX_REKEY_MESSAGES = 1 << 32
MAX_REKEY_SECONDS = 24 * 3600
_REQUEST_TYPE = bytes([FrameType.REQUEST])
_CHUNK = int(FrameType.CHUNK)
_Prefix = tuple[bytes, int, int, int]
"""A message's clear prefix: session id, epoch, counter, flags."""
_DROP_PROBE = 3
"""How many missing chunks an Exchange looks past to tell a gap from a forgery."""


def _info(transcript: bytes) -> bytes:
    return SESSION_INFO + hashlib.sha256(transcript).digest()


def initiate(
    enclave_hpke_public: bytes,
    params: SessionParams,
    sign: Callable[[bytes], bytes] | None = None,
) -> tuple[bytes, Session]:
    """Opens a session to a verified enclave key: (HELLO frame bytes, Session to confirm)."""
    if hashlib.sha256(enclave_hpke_public).hexdigest() != params.enclave_hpke_sha256:
        raise EnvelopeInvalid("session.key", "params name another enclave HPKE key")
    transcript = params.transcript()
    enc, context = hpke.setup_base_s(enclave_hpke_public, _info(transcript))
    payload = enc + len(transcript).to_bytes(2, "big") + transcript
    if sign is not None:
        signature = sign(HELLO_LABEL + enc + transcript)
        if len(signature) != 64:
            raise ValueError("a hello signature is 64 bytes (Ed25519)")
        payload += signature
    master = context.export(ratchet.EXPORT_LABEL, 32)
    return encode(FrameType.HELLO, payload), Session(params, master, initiator=True)


def _check_hello(hello: Hello, hpke_public: bytes, signing_sha256: str, now: float) -> None:
    params = hello.params
    if params.enclave_hpke_sha256 != hashlib.sha256(hpke_public).hexdigest():
        raise OpenFailed("session.key", "the hello names another enclave HPKE key")
    if params.enclave_signing_sha256 != signing_sha256:
        raise OpenFailed("session.signing_key", "the hello names another enclave signing key")
    if abs(now - params.created_at) > MAX_SKEW_S:
        raise EnvelopeInvalid("session.time", f"created_at is over {MAX_SKEW_S} s from now")
    if params.expires_at <= max(now, params.created_at):
        raise EnvelopeInvalid("session.time", "the session expired already")
    if params.expires_at - params.created_at > MAX_LIFETIME_S:
        raise EnvelopeInvalid("session.time", f"a session lives at most {MAX_LIFETIME_S} s")
    if not 1 <= params.rekey_messages <= MAX_REKEY_MESSAGES:
        raise EnvelopeInvalid("session.rekey", f"rekey_messages must be 1..{MAX_REKEY_MESSAGES}")
    if not 1 <= params.rekey_seconds <= MAX_REKEY_SECONDS:
        raise EnvelopeInvalid("session.rekey", f"rekey_seconds must be 1..{MAX_REKEY_SECONDS}")


def accept(
    hello: Hello,
    hpke_private: x25519.X25519PrivateKey,
    hpke_public: bytes,
    signing_sha256: str,
    now: float,
) -> tuple[bytes, Session]:
    """The enclave's side: (WELCOME frame bytes, Session). The hello's signature is the
    caller's to check (`Hello.check_signature`)."""
    _check_hello(hello, hpke_public, signing_sha256, now)
    context = hpke.setup_base_r(hello.enc, hpke_private, _info(hello.transcript))
    session = Session(hello.params, context.export(ratchet.EXPORT_LABEL, 32), initiator=False)
    session.note_time(now)
    welcome = hello.params.session_id + session.confirm_tag()
    return encode(FrameType.WELCOME, welcome), session


def oneshot(
    enclave_hpke_public: bytes, params: SessionParams, meta: bytes, body: bytes
) -> tuple[bytes, Exchange]:
    """A request with its own session: ONESHOT frame (u16 hello len | HELLO | REQUEST)."""
    hello_frame, session = initiate(enclave_hpke_public, params)
    request_frame, exchange = session.seal_request(meta, body, params.created_at)
    hello = hello_frame[8:]
    payload = len(hello).to_bytes(2, "big") + hello + request_frame[8:]
    return encode(FrameType.ONESHOT, payload), exchange


def open_oneshot(
    payload: bytes,
    hpke_private: x25519.X25519PrivateKey,
    hpke_public: bytes,
    signing_sha256: str,
    now: float,
) -> tuple[Hello, bytes, bytes, Reply]:
    """Opens a ONESHOT payload under a throwaway session. It remembers nothing: refusing a
    second copy (by `hello.enc`, until created_at + 300 s passed) is the caller's."""
    if len(payload) < 2:
        raise FrameInvalid("frame.truncated", "a oneshot shorter than its hello length")
    hello_len = int.from_bytes(payload[:2], "big")
    if len(payload) < 2 + hello_len:
        raise FrameInvalid("frame.truncated", "a oneshot cut inside its hello")
    hello = parse_hello(payload[2 : 2 + hello_len])
    session = accept(hello, hpke_private, hpke_public, signing_sha256, now)[1]
    meta, body, reply = session.open_request(payload[2 + hello_len :], now)
    session.close()
    return hello, meta, body, reply


class Session:
    """One end of a session. Thread-safe: counters, epochs and the replay window change
    under one lock; AEAD work is done outside it."""

    def __init__(self, params: SessionParams, master: bytes, *, initiator: bool) -> None:
        self.id = params.session_id
        self.params = params
        self.initiator = initiator
        self.receipt_key = ratchet.expand(master, b"receipt", 32)
        self._confirm_key = ratchet.expand(master, b"confirm", 32)
        out, back = (ratchet.C2S, ratchet.S2C) if initiator else (ratchet.S2C, ratchet.C2S)
        start = float(params.created_at)
        self._send = ratchet.Sender(
            ratchet.expand(master, out, 32), start, params.rekey_messages, params.rekey_seconds
        )
        self._recv = ratchet.Receiver(ratchet.expand(master, back, 32))
        self._window = ReplayWindow(WINDOW)
        self._lock = threading.Lock()
        self._closed = False
        self.confirmed = not initiator

    def __repr__(self) -> str:
        role = "initiator" if self.initiator else "enclave"
        return f"Session(id={self.id.hex()}, {role}, expires_at={self.params.expires_at})"

    def alive(self, now: float) -> bool:
        return not self._closed and now < self.params.expires_at

    def close(self) -> None:
        self._closed = True

    def note_time(self, now: float) -> None:
        """Tells the session the time (the enclave's sender rekeys by it between requests)."""
        with self._lock:
            self._send.last_now = max(self._send.last_now, now)

    def confirm_tag(self) -> bytes:
        return hmac.new(self._confirm_key, self.params.transcript(), "sha256").digest()

    def confirm(self, welcome_payload: bytes) -> None:
        """Initiator: the WELCOME proves the enclave derived the same keys from the same
        transcript; OpenFailed("session.confirm") otherwise."""
        expected = self.id + self.confirm_tag()
        if not hmac.compare_digest(welcome_payload, expected):
            raise OpenFailed("session.confirm", "the welcome does not confirm this session")
        self.confirmed = True

    def _check_alive(self, now: float, error: type[SealingError]) -> None:
        if self._closed:
            raise error("session.expired", "the session was closed")
        if now >= self.params.expires_at:
            raise error("session.expired", "the session's lease ended")

    # --- initiator -> enclave --------------------------------------------------------------

    def seal_request(self, meta: bytes, body: bytes, now: float) -> tuple[bytes, Exchange]:
        """REQUEST frame bytes and the Exchange that opens this request's answer."""
        if not self.initiator:
            raise SealingError("session.role", "only the initiator seals requests")
        self._check_alive(now, SealingError)
        if len(meta) > 0xFFFF or len(body) > MAX_BODY - len(meta):
            raise FrameInvalid("frame.size", "request meta or body over the frame limit")
        with self._lock:
            (epoch, aead, base), counter = self._send.next(now)
        head = REQUEST_HEAD.pack(self.id, epoch, counter, 0, len(meta)) + meta
        payload = head + aead.encrypt(nonce(base, counter), body, _REQUEST_TYPE + head)
        exchange = Exchange(self, counter, hashlib.sha256(payload).hexdigest())
        return encode(FrameType.REQUEST, payload), exchange

    def open_request(self, payload: bytes, now: float) -> tuple[bytes, bytes, Reply]:
        """Enclave: (meta, body, Reply). Refusals name session.id, session.expired,
        session.epoch, session.replay or session.open."""
        if self.initiator:
            raise SealingError("session.role", "only the enclave opens requests")
        session_id, epoch, counter, _flags, meta_len = _request_head(payload)
        if session_id != self.id:
            raise OpenFailed("session.id", "a message of another session")
        self._check_alive(now, OpenFailed)
        head_len = REQUEST_HEAD.size + meta_len
        with self._lock:
            keys = self._recv.keys_for(epoch)
            self._refuse_replay(counter)
        aad = _REQUEST_TYPE + payload[:head_len]
        try:
            body = keys[1].decrypt(nonce(keys[2], counter), payload[head_len:], aad)
        except InvalidTag:
            raise OpenFailed("session.open", "the request failed to authenticate") from None
        with self._lock:
            self._refuse_replay(counter)
            self._window.check_and_mark(counter)
            self._recv.advance(epoch)
            self._send.last_now = max(self._send.last_now, now)
        reply = Reply(self, counter, hashlib.sha256(payload).hexdigest())
        return payload[REQUEST_HEAD.size : head_len], body, reply

    def _refuse_replay(self, counter: int) -> None:
        if not self._window.check(counter):
            why = "too old for the window" if self._window.too_old(counter) else "seen already"
            raise OpenFailed("session.replay", f"request counter {why}")

    # --- the answer's chunks (called by Reply and Exchange) ---------------------------------

    def _next_send(self, now: float | None) -> tuple[ratchet.Keys, int]:
        with self._lock:
            return self._send.next(now)

    def _receive_keys(self, epoch: int) -> ratchet.Keys:
        current = self._recv.current  # one attribute read: no lock on the common path
        if current[0] == epoch:
            return current
        with self._lock:
            return self._recv.keys_for(epoch)

    def _received(self, epoch: int) -> None:
        if epoch > self._recv.current[0]:
            with self._lock:
                self._recv.advance(epoch)


def _request_head(payload: bytes) -> tuple[bytes, int, int, int, int]:
    if len(payload) < REQUEST_HEAD.size + TAG:
        raise FrameInvalid("frame.truncated", "a request shorter than its header and tag")
    fields: tuple[bytes, int, int, int, int] = REQUEST_HEAD.unpack_from(payload)
    if len(payload) < REQUEST_HEAD.size + fields[4] + TAG:
        raise FrameInvalid("frame.truncated", "a request cut inside its meta")
    return fields


class Reply:
    """The enclave's side of one request's answer: seals its chunks in order. One writer
    per Reply (the chunks' order on the wire is the order they were sealed in)."""

    __slots__ = ("_hash", "_index", "_request", "_session", "finished", "request_sha256")

    def __init__(self, session: Session, request_counter: int, request_sha256: str) -> None:
        self._session = session
        self._request = request_counter
        self.request_sha256 = request_sha256
        self._index = 0
        self._hash = hashlib.sha256()
        self.finished = False

    @property
    def chunks(self) -> int:
        return self._index

    @property
    def response_sha256(self) -> str:
        return self._hash.hexdigest()

    def chunk(self, data: bytes, final: bool = False, now: float | None = None) -> bytes:
        """The next CHUNK frame's bytes; the last one has `final`. `now` (optional) lets the
        session rekey by time in the middle of a long answer."""
        if self.finished:
            raise SealingError("chunk.final", "the final chunk was already sealed")
        if len(data) > MAX_BODY:
            raise FrameInvalid("frame.size", "a chunk over the frame limit")
        session = self._session
        (epoch, aead, base), counter = session._next_send(now)
        index, self._index, self.finished = self._index, self._index + 1, final
        aad = CHUNK_AAD.pack(_CHUNK, session.id, epoch, counter, final, self._request, index)
        sealed = aead.encrypt(nonce(base, counter), data, aad)
        size = CHUNK_OVERHEAD + len(data)
        head = FRAME_CHUNK.pack(
            MAGIC, WIRE_VERSION, _CHUNK, size, session.id, epoch, counter, final
        )
        self._hash.update(LENGTH.pack(size) + head[8:])
        self._hash.update(sealed)
        return head + sealed


class Exchange:
    """The initiator's side of one request's answer: opens its chunks strictly in order."""

    __slots__ = ("_last", "_observer", "_request", "_session", "request_sha256")

    def __init__(self, session: Session, request_counter: int, request_sha256: str) -> None:
        self._session = session
        self._request = request_counter
        self.request_sha256 = request_sha256
        self._last = -1  # the counter of the last chunk opened
        self._observer = ChunkObserver()

    @property
    def finished(self) -> bool:
        """True once the final chunk opened; before that the answer is incomplete."""
        return self._observer.finished

    @property
    def chunks(self) -> int:
        return self._observer.chunks

    @property
    def response_sha256(self) -> str:
        return self._observer.response_sha256

    def observe(self, payload: bytes) -> None:
        """Counts and hashes a chunk without opening it (a hop that only relays)."""
        self._observer.observe(payload)

    def open(self, payload: bytes) -> bytes:
        """One CHUNK payload -> its plaintext. Refusals name session.id, chunk.final,
        session.replay, session.epoch, chunk.order or session.open."""
        if len(payload) < CHUNK_OVERHEAD:
            raise FrameInvalid("frame.truncated", "a chunk shorter than its header and tag")
        session = self._session
        prefix: _Prefix = MESSAGE.unpack_from(payload)
        if prefix[0] != session.id:
            raise OpenFailed("session.id", "a chunk of another session")
        if self._observer.finished:
            raise OpenFailed("chunk.final", "a chunk after the final one")
        if prefix[2] <= self._last:
            raise OpenFailed("session.replay", "a chunk counter already passed")
        keys = session._receive_keys(prefix[1])
        index = self._observer.chunks
        plain = self._decrypt(keys, prefix, payload, index)
        if plain is None:
            self._refuse(keys, prefix, payload, index)
        session._received(prefix[1])
        self._last = prefix[2]
        self._observer.observe(payload)
        return plain

    def _decrypt(
        self, keys: ratchet.Keys, prefix: _Prefix, payload: bytes, index: int
    ) -> bytes | None:
        aad = CHUNK_AAD.pack(_CHUNK, *prefix, self._request, index)
        try:
            return keys[1].decrypt(nonce(keys[2], prefix[2]), payload[MESSAGE.size :], aad)
        except InvalidTag:
            return None

    def _refuse(self, keys: ratchet.Keys, prefix: _Prefix, payload: bytes, index: int) -> NoReturn:
        """Why a chunk failed: a later chunk of this answer (some went missing), or not
        this answer's at all."""
        for ahead in range(1, _DROP_PROBE + 1):
            if self._decrypt(keys, prefix, payload, index + ahead) is not None:
                raise OpenFailed("chunk.order", f"chunk {index} is missing")
        raise OpenFailed("session.open", f"chunk {index} failed to authenticate")
