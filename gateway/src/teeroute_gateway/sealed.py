"""Sealed mode at the gateway (docs/sealed-mode.md, wire v2): the hop to the miner and the
receipt.

Every request reaches a miner in one of three ways, chosen per candidate by `hop_mode`:

    client    the client sealed the body to one enclave (a REQUEST of its own session with
              that enclave, or a ONESHOT): wrapped in a REQUEST of the gateway's session,
              the answer's CHUNK frames passed back unopened (the gateway never sees the
              prompt), only counted and hashed
    gateway   a plain request under a Route with `sealing: gateway`: sealed in the
              gateway's session with the chosen enclave, the answer's CHUNKs opened, so
              the miner's host sees only ciphertext
    plain     `sealing: off`, or an unattested endpoint allowed by config: as it is

An attested endpoint without a usable HPKE key is never sent a plain prompt: under
`gateway` or `required` it is not a candidate. Sealed answers end with a RECEIPT frame
(tagged with the session's receipt key) and, when a batch is due, ROOT frames (the enclave's
signed Merkle root over its receipts). `Hop` reads them as they come: the receipt's tag is
checked and the receipt noted in the session's RootTracker at once (so a root arriving on
another request's answer finds it), roots become inclusion proofs to store. `judge` decides
whether the receipt is valid (this session's tag, for this request and these frames) and
plausible (against what the gateway can count); billing.py decides the bill given the verdict.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

from teeroute.sealing import frames, receipt_mac
from teeroute.sealing.errors import SealingError
from teeroute.sealing.frames import HEADER_LEN, Frame, FrameDecoder, FrameType
from teeroute.sealing.receipt_mac import ReceiptV2
from teeroute.sealing.session import Exchange
from teeroute_gateway.catalog import UNATTESTED, Endpoint
from teeroute_gateway.sessions import Pooled
from teeroute_gateway.upstream import UpstreamError

log = logging.getLogger(__name__)

HopMode = Literal["client", "gateway", "plain"]
ReceiptStatus = Literal["", "valid", "missing", "invalid", "implausible"]
SEALED_TYPE = frames.CONTENT_TYPE.encode()
MAX_ROOTS = 16
"""ROOT frames one answer may carry (a batch is due at most once per receipt)."""
CHUNK_OVERHEAD = 16 + 4 + 8 + 1 + 16
"""A CHUNK payload's bytes beyond its plaintext: session id, epoch, counter, flags, tag."""
_CHUNK = FrameType.CHUNK
TEMPLATE_TOKENS = 1024
"""Input tokens a chat template may add beyond one per byte of the sealed body."""


def hop_mode(sealing: str, sealed_by_client: bool, endpoint: Endpoint) -> HopMode | None:
    """How a request reaches this endpoint, or None: it must not go there at all."""
    if sealed_by_client:
        return "client" if endpoint.hpke_public is not None else None
    if sealing == "required":
        return None
    if sealing == "off" or endpoint.tee == UNATTESTED:
        return "plain"
    return "gateway" if endpoint.hpke_public is not None else None


def public_key(encoded: str, attested_sha256: str) -> bytes | None:
    """The raw key from its published base64, only if it is the attested one."""
    if not encoded or not attested_sha256:
        return None
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != 32 or hashlib.sha256(raw).hexdigest() != attested_sha256:
        return None
    return raw


@dataclass(slots=True)
class Hop:
    """One attempt's sealed hop: what was sent and what has come back so far."""

    mode: HopMode
    pooled: Pooled | None = None
    """The gateway's session with the enclave (sealed modes)."""
    exchange: Exchange | None = None
    """This request's answer in that session: opens (gateway) or hashes (client) CHUNKs."""
    request_id: str = ""
    request_sha256: str = ""
    """What the receipt must name as the request (the innermost REQUEST's digest)."""
    request_bytes: int = 0
    """The sealed body's plaintext size (gateway mode) or the client frame's size."""
    decoder: FrameDecoder = field(default_factory=FrameDecoder)
    receipt: ReceiptV2 | None = None
    receipt_check: str = ""
    """Why the receipt that came could not be taken (its frame or tag), if it could not."""
    got_receipt: bool = False
    roots: int = 0
    """ROOT frames that came with this answer (their proofs go to the session's sink)."""
    frames: int = 0
    frame_bytes: int = 0
    final: bool = False
    broken: str = ""
    """Why the frames could not be read (then the receipt cannot be trusted either)."""
    relay_end: int = -1
    """Client mode: where the bytes for the client end (after the RECEIPT); -1: not yet."""
    held_from: int = -1
    """Client mode: where the final CHUNK begins; -1: not seen yet. The bytes from there on
    are held until the answer's usage record is committed (`release`)."""
    unsent: bytearray = field(default_factory=bytearray)
    """Client mode: the client's bytes read but not passed on: a frame not yet whole, and
    the final CHUNK and the RECEIPT once they came (each bounded by the frame decoder)."""
    sent: int = 0
    """Client mode: the bytes passed on so far."""
    done: int = 0
    """Client mode: the bytes of the whole frames read so far."""
    first_frame_at: float | None = None
    last_frame_at: float | None = None
    """Client mode: time.perf_counter() at the first and the last CHUNK read (the only
    timing the gateway sees of an answer it cannot open)."""

    def open(self, raw: bytes) -> bytes:
        """Gateway mode: the plaintext in `raw` (raises SealingError on any tampering)."""
        exchange = self.exchange
        if exchange is None:
            raise SealingError("session.open", "no sealed request was sent")
        out = []
        for frame in self.decoder.feed(raw):  # per token: no per-chunk work beyond the AEAD
            if frame.type is _CHUNK:
                out.append(exchange.open(frame.payload))
            else:
                self.final = exchange.finished
                self._trailer(frame)
        self.final = exchange.finished
        self.frames += len(out)
        plain = out[0] if len(out) == 1 else b"".join(out)
        self.frame_bytes += len(plain)
        return plain

    def inspect(self, raw: bytes) -> bytes:
        """Client mode: the bytes to pass on now, unchanged: whole CHUNK frames, but never the
        final one and the RECEIPT (the gateway session's ROOT frames after it are the
        gateway's), which are held until `release`: a client has a whole answer only once
        they come, which must not be before its usage is recorded. An answer broken before
        its RECEIPT is passed on as it came (the client's reader refuses it)."""
        if self.broken:
            return b"" if self.relay_end >= 0 else self._flush(raw)
        if self.relay_end < 0:
            self.unsent += raw
        try:
            for frame in self.decoder.feed(raw):
                begin = self.done
                self.done += HEADER_LEN + len(frame.payload)
                if frame.type == FrameType.CHUNK:
                    self._observe(frame.payload)
                    if self.final:
                        self.held_from = begin
                else:
                    self._trailer(frame)
                    if frame.type == FrameType.RECEIPT:
                        self.relay_end = self.done
                        del self.unsent[self.relay_end - self.sent :]
        except SealingError as exc:
            self.broken = exc.check
            if self.relay_end < 0:
                return self._flush(b"")
        limit = self.done if self.relay_end < 0 else self.relay_end
        if self.held_from >= 0:
            limit = min(limit, self.held_from)
        return self._take(limit - self.sent)

    def _take(self, count: int) -> bytes:
        out = bytes(self.unsent[:count])
        del self.unsent[:count]
        self.sent += len(out)
        return out

    def _flush(self, raw: bytes) -> bytes:
        self.sent += len(raw)
        return self._take(len(self.unsent)) + raw

    def release(self) -> bytes:
        """Client mode: what is held (the final CHUNK and the RECEIPT, or the rest of an
        answer cut short), once."""
        return self._take(len(self.unsent))

    @property
    def whole(self) -> bool:
        """Client mode: the answer came up to its RECEIPT (the client's answer is whole once
        it has what is held)."""
        return self.relay_end >= 0

    def _observe(self, payload: bytes) -> None:
        if self.got_receipt or self.exchange is None:
            raise SealingError("frame.order", "a chunk after the receipt")
        self.exchange.observe(payload)
        self.last_frame_at = time.perf_counter()
        if self.first_frame_at is None:
            self.first_frame_at = self.last_frame_at
        self.frames += 1
        self.frame_bytes += max(0, len(payload) - CHUNK_OVERHEAD)
        self.final = self.exchange.finished

    def _trailer(self, frame: Frame) -> None:
        """A RECEIPT (one, after the final chunk) or ROOT (after the receipt) frame."""
        if frame.type == FrameType.RECEIPT and not self.got_receipt and self.final:
            self.got_receipt = True
            self._take_receipt(frame.payload)
        elif frame.type == FrameType.ROOT and self.got_receipt and self.roots < MAX_ROOTS:
            self.roots += 1
            self._take_root(frame.payload)
        else:
            raise SealingError("frame.order", f"an unexpected {frame.type.name} frame")

    def _take_receipt(self, payload: bytes) -> None:
        """Checks the tag at once and notes the receipt in its session's RootTracker (a
        root that came on another answer may cover it already)."""
        pooled = self._session()
        try:
            receipt, tags = receipt_mac.parse_receipt(payload)
            self.receipt = receipt
            key = pooled.session.receipt_key
            receipt_mac.check_tag(receipt, tags, receipt_mac.GATEWAY_TAG, key)
            pooled.proven(pooled.tracker.note(receipt, self.request_id, time.time()))
        except SealingError as exc:
            self.receipt_check = exc.check

    def _take_root(self, payload: bytes) -> None:
        pooled = self._session()
        try:
            pooled.proven(pooled.tracker.on_root(payload, pooled.endpoint.signing_key_sha256))
        except SealingError as exc:  # the answer stands; its receipts wait for a good root
            log.warning("a signed root from %s was refused: %s", pooled.endpoint.key, exc.check)

    def _session(self) -> Pooled:
        if self.pooled is None:
            raise SealingError("session.open", "no session on this hop")
        return self.pooled

    def open_all(self, raw: bytes) -> bytes:
        """Gateway mode, a whole answer: its plaintext, which must end with the final frame."""
        plain = self._opening(raw)
        self._ended()
        return plain

    async def opened(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """Gateway mode, a stream: plaintext as frames open; tampering or a missing final
        frame is an upstream failure after the start."""
        async for raw in chunks:
            plain = self._opening(raw)
            if plain:
                yield plain
        self._ended()

    async def inspected(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """Client mode: the bytes unchanged (up to the receipt), noted on the way."""
        async for raw in chunks:
            out = self.inspect(raw)
            if out:
                yield out
        if not self.broken and self.decoder.pending:
            self.broken = "frame.truncated"

    def _opening(self, raw: bytes) -> bytes:
        try:
            return self.open(raw)
        except SealingError as exc:
            raise UpstreamError("sealed", f"the sealed answer failed {exc.check}", False) from None

    def _ended(self) -> None:
        if not self.final or self.decoder.pending:
            raise UpstreamError("sealed", "the sealed answer was cut short", False)

    @property
    def response_sha256(self) -> str:
        return self.exchange.response_sha256 if self.exchange else ""


@dataclass(frozen=True, slots=True)
class Observed:
    """What the gateway itself can tell about a sealed request's usage."""

    request_bytes: int
    response_bytes: int
    input_tokens: int | None = None
    """Gateway mode: the engine's own counts, seen in the opened answer."""
    output_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Judgement:
    status: ReceiptStatus
    receipt: ReceiptV2 | None = None
    text: str | None = None
    """What to store with the record: the receipt's canonical body, if it could be read."""
    check: str = ""


NO_RECEIPT = Judgement("")


def judge(hop: Hop, endpoint: Endpoint, request_id: str, observed: Observed) -> Judgement:
    if hop.mode == "plain":
        return Judgement("")
    receipt = hop.receipt
    if not hop.got_receipt:
        return Judgement("missing", check=hop.broken or "receipt.present")
    if receipt is None:
        return Judgement("invalid", check=hop.receipt_check)
    text = receipt.text
    problem = hop.broken or hop.receipt_check or _mismatch(hop, endpoint, receipt, request_id)
    if problem:
        return Judgement("invalid", receipt, text, problem)
    problem = implausible(receipt, observed)
    if problem:
        return Judgement("implausible", receipt, text, problem)
    return Judgement("valid", receipt, text)


def _mismatch(hop: Hop, endpoint: Endpoint, receipt: ReceiptV2, request_id: str) -> str:
    """The first check of the receipt against what the gateway sent and saw ("" if none)."""
    try:
        receipt_mac.verify_receipt_v2(
            receipt,
            session_id=hop.pooled.session.id if hop.pooled else None,
            request_id=request_id,
            request_sha256=hop.request_sha256 or None,
            response_sha256=hop.response_sha256,
            hpke_key_sha256=endpoint.hpke_key_sha256,
            signing_key_sha256=endpoint.signing_key_sha256,
        )
    except SealingError as exc:
        return exc.check
    return ""


def implausible(receipt: ReceiptV2, observed: Observed) -> str:
    """Names the first count the receipt claims that the gateway's own view rules out."""
    if observed.input_tokens is not None and receipt.input_tokens != observed.input_tokens:
        return "receipt.input_tokens"
    if observed.output_tokens is not None and receipt.output_tokens != observed.output_tokens:
        return "receipt.output_tokens"
    if receipt.input_tokens > observed.request_bytes + TEMPLATE_TOKENS:
        return "receipt.input_tokens"
    if receipt.output_tokens > observed.response_bytes + 16:
        return "receipt.output_tokens"
    return ""
