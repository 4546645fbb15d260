"""Sealed requests and sealed response frames (docs/sealed-mode.md, sections 1 and 2).

A client seals the OpenAI request body to the enclave's attested HPKE key; the routing
metadata it leaves readable (`meta`: path, public model, stream flag, max_tokens) is the AEAD's
associated data, so the gateway can route and meter on it but cannot alter it. The response
comes back as numbered frames under keys exported from the same HPKE context: only the two
ends of that context can read or forge them, and the implicit sequence number plus the final
flag in each frame's associated data make reordering, dropping, replaying or truncating a
stream fail to open.

    seal_request(public, meta, body)  -> (SealedRequest, ResponseOpener)     client side
    open_request(sealed, private)     -> (body, ResponseSealer)              enclave side
    ResponseSealer.frame(chunk, final)  -> one SSE event                     enclave side
    FrameReader.feed(bytes)           -> sealed frames and the receipt       gateway, client
    ResponseOpener.open(ciphertext)   -> plaintext, in order                 client side
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from teeroute.sealing import hpke
from teeroute.sealing.errors import EnvelopeInvalid, OpenFailed
from teeroute.wire import EventSplitter, EventTooLarge

VERSION = "v1"
SEALED_CONTENT_TYPE = "application/vnd.teeroute.sealed+json"
SEALED_HEADER = "x-teeroute-sealed"
"""Response header the agent sets on a sealed response (value: VERSION)."""
REQUEST_INFO = b"teeroute/v1 request"
RESPONSE_KEY_LABEL = b"teeroute/v1 response key"
RESPONSE_NONCE_LABEL = b"teeroute/v1 response nonce"
FRAME_AAD = b"teeroute/v1 frame"
FRAME_EVENT = b"sealed"
RECEIPT_EVENT = b"receipt"
SEALED_AT = "sealed_at"
"""The meta key holding when a request was sealed (whole seconds since the epoch): the agent
opens a request only near that time, and only once (section 1, freshness)."""
MAX_FRAME = 1 << 20
"""The longest frame plaintext a sealer emits (an engine read is far smaller)."""


def canonical(value: Any) -> bytes:
    """The one byte form of JSON that is signed or authenticated."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def key_id(public: bytes) -> str:
    """How keys are named everywhere: lowercase hex SHA-256 of the raw public key."""
    return hashlib.sha256(public).hexdigest()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: Any, check: str) -> bytes:
    if not isinstance(text, str):
        raise EnvelopeInvalid(check, "expected a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise EnvelopeInvalid(check, "not valid base64") from None


@dataclass(frozen=True)
class SealedRequest:
    """A request body sealed to one enclave key, with the metadata routers may read."""

    aead: hpke.Aead
    key_id: str
    enc: bytes
    meta: Mapping[str, Any]
    ciphertext: bytes = field(repr=False)

    @property
    def aad(self) -> bytes:
        return canonical(
            {"v": VERSION, "aead": self.aead.value, "key_id": self.key_id, "meta": self.meta}
        )

    @property
    def digest(self) -> str:
        """request_sha256: names this sealed request in its receipt."""
        return hashlib.sha256(self.enc + self.ciphertext).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {
            "teeroute_sealed": VERSION,
            "aead": self.aead.value,
            "key_id": self.key_id,
            "enc": b64(self.enc),
            "meta": dict(self.meta),
            "ciphertext": b64(self.ciphertext),
        }

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":")).encode()

    @classmethod
    def parse(cls, raw: bytes | Mapping[str, Any]) -> SealedRequest:
        """Reads a sealed request body; EnvelopeInvalid names the first bad field."""
        doc = _json_object(raw) if isinstance(raw, bytes | bytearray) else raw
        if doc.get("teeroute_sealed") != VERSION:
            raise EnvelopeInvalid("teeroute_sealed", f"expected {VERSION!r}")
        meta = doc.get("meta")
        if not isinstance(meta, dict):
            raise EnvelopeInvalid("meta", "expected an object")
        kid = doc.get("key_id")
        if not isinstance(kid, str) or len(kid) != 64 or kid.strip("0123456789abcdef"):
            raise EnvelopeInvalid("key_id", "expected the lowercase hex SHA-256 of a key")
        aead = hpke.Aead.from_name(doc.get("aead", ""))
        enc = unb64(doc.get("enc"), "enc")
        return cls(aead, kid, enc, meta, unb64(doc.get("ciphertext"), "ciphertext"))


def _json_object(raw: bytes | bytearray) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: deep nesting
        raise EnvelopeInvalid("body", "not valid JSON") from None
    if not isinstance(doc, dict):
        raise EnvelopeInvalid("body", "expected a JSON object")
    return doc


def looks_sealed(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == SEALED_CONTENT_TYPE


# --- response frames ------------------------------------------------------------------


class _FrameKeys:
    """The response direction's AEAD and nonce base, exported from the request's context."""

    def __init__(self, context: hpke.SenderContext | hpke.RecipientContext) -> None:
        aead = context.aead
        self.cipher: AESGCM | ChaCha20Poly1305 = hpke.cipher(
            aead, context.export(RESPONSE_KEY_LABEL, aead.key_length)
        )
        self.nonce_base = int.from_bytes(
            context.export(RESPONSE_NONCE_LABEL, hpke.NONCE_LENGTH), "big"
        )

    def nonce(self, seq: int) -> bytes:
        return (self.nonce_base ^ seq).to_bytes(hpke.NONCE_LENGTH, "big")


def _frame_aad(seq: int, final: bool) -> bytes:
    return FRAME_AAD + seq.to_bytes(8, "big") + (b"\x01" if final else b"\x00")


class ResponseDigest:
    """response_sha256: a running hash over the frames' ciphertexts, length-prefixed."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()

    def add(self, ciphertext: bytes) -> None:
        self._hash.update(len(ciphertext).to_bytes(4, "big"))
        self._hash.update(ciphertext)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class _FrameEnd:
    """One end of the response frames: their keys, the next sequence number, whether the
    final frame has passed, and the running response digest."""

    def __init__(self, context: hpke.SenderContext | hpke.RecipientContext) -> None:
        self._keys = _FrameKeys(context)
        self._seq = 0
        self._finished = False
        self.digest = ResponseDigest()

    @property
    def finished(self) -> bool:
        """True once the final frame passed; before that the response is incomplete."""
        return self._finished


class ResponseSealer(_FrameEnd):
    """The enclave's side of the response: seals each piece as the next frame."""

    def seal(self, chunk: bytes, final: bool = False) -> bytes:
        """The next frame's ciphertext."""
        if self._finished:
            raise EnvelopeInvalid("frame.final", "the final frame was already sealed")
        if len(chunk) > MAX_FRAME:
            raise EnvelopeInvalid("frame.size", f"frame over {MAX_FRAME} bytes")
        seq = self._seq
        sealed = self._keys.cipher.encrypt(self._keys.nonce(seq), chunk, _frame_aad(seq, final))
        self._seq += 1
        self._finished = final
        self.digest.add(sealed)
        return sealed

    def frame(self, chunk: bytes, final: bool = False) -> bytes:
        """The next frame as an SSE event, ready to write."""
        return sse_event(FRAME_EVENT, b64(self.seal(chunk, final)).encode("ascii"))


def sse_event(event: bytes, data: bytes) -> bytes:
    return b"event: " + event + b"\ndata: " + data + b"\n\n"


class ResponseOpener(_FrameEnd):
    """The client's side: opens frames strictly in order and knows when the stream ended."""

    def open(self, ciphertext: bytes) -> bytes:
        if self._finished:
            raise OpenFailed("frame.final", "a frame after the final one")
        seq, nonce = self._seq, self._keys.nonce(self._seq)
        self.digest.add(ciphertext)
        for final in (False, True):
            try:
                plain = self._keys.cipher.decrypt(nonce, ciphertext, _frame_aad(seq, final))
            except InvalidTag:
                continue
            self._seq += 1
            self._finished = final
            return plain
        raise OpenFailed("frame.open", f"frame {seq} failed to authenticate")


# --- requests ---------------------------------------------------------------------------


def seal_request(
    hpke_public: bytes,
    meta: Mapping[str, Any],
    body: bytes,
    aead: hpke.Aead = hpke.Aead.AES_128_GCM,
) -> tuple[SealedRequest, ResponseOpener]:
    """Seals `body` to an enclave's HPKE key; the opener reads that enclave's answer.

    `meta` gets `sealed_at` (now, by this machine's clock) unless it names a time itself."""
    enc, context = hpke.setup_base_s(hpke_public, REQUEST_INFO, aead)
    stamped = {SEALED_AT: int(time.time()), **meta}
    unsealed = SealedRequest(aead, key_id(hpke_public), enc, stamped, b"")
    ciphertext = context.seal(body, unsealed.aad)
    sealed = SealedRequest(aead, unsealed.key_id, enc, unsealed.meta, ciphertext)
    return sealed, ResponseOpener(context)


def open_request(
    sealed: SealedRequest, hpke_private: x25519.X25519PrivateKey, hpke_public: bytes
) -> tuple[bytes, ResponseSealer]:
    """Opens a request inside the enclave; the sealer answers under the same context."""
    if sealed.key_id != key_id(hpke_public):
        raise OpenFailed("key_id", "sealed to another enclave key")
    context = hpke.setup_base_r(sealed.enc, hpke_private, REQUEST_INFO, sealed.aead)
    return context.open(sealed.ciphertext, sealed.aad), ResponseSealer(context)


# --- reading a sealed response stream ---------------------------------------------------


@dataclass(frozen=True)
class Event:
    name: bytes
    data: bytes


class FrameReader:
    """Splits a sealed response body, fed in arbitrary pieces, into its SSE events.

    The gateway uses it to pass frames through while hashing them and picking out the
    receipt; clients to get each frame's ciphertext for their opener.
    """

    MAX_EVENT = 4 * MAX_FRAME

    def __init__(self) -> None:
        self._events = EventSplitter(self.MAX_EVENT)  # scans each byte once, holds a bounded rest

    def feed(self, data: bytes) -> Iterator[Event]:
        try:
            ready = self._events.feed(data)
        except EventTooLarge:
            raise EnvelopeInvalid("frame.size", "an event over the size limit") from None
        for raw in ready.split(b"\n\n"):
            if raw.strip():
                yield _parse_event(raw)

    @property
    def pending(self) -> bytes:
        """Bytes after the last complete event (non-empty at the end: a cut-off stream)."""
        return self._events.pending


def _parse_event(raw: bytes) -> Event:
    name, data = b"", b""
    for line in raw.split(b"\n"):
        if line.startswith(b"event:"):
            name = line[6:].strip()
        elif line.startswith(b"data:"):
            data = line[5:].strip()
    if name not in (FRAME_EVENT, RECEIPT_EVENT):
        raise EnvelopeInvalid("frame.event", "unknown event in a sealed response")
    return Event(name, data)


def frame_ciphertext(event: Event) -> bytes:
    return unb64(event.data.decode("ascii", "replace"), "frame.data")
