"""Sealed mode at the gateway (docs/sealed-mode.md): the hop to the miner and the receipt.

Every request reaches a miner in one of three ways, chosen per candidate by `hop_mode`:

    client    the client sealed the body to one enclave's key: forwarded unchanged, the
              answer's frames passed back unopened (the gateway never sees the prompt)
    gateway   a plain request under a Route with `sealing: gateway`: the gateway seals it to
              the chosen enclave's attested key and opens the answer, so the miner's host
              sees only ciphertext
    plain     `sealing: off`, or an unattested endpoint allowed by config: as it is

An attested endpoint without a usable HPKE key is never sent a plain prompt: under
`gateway` or `required` it is not a candidate. Sealed answers end with a usage receipt;
`judge` decides whether it is valid (signed by the attested key, for this request and these
frames) and plausible (against what the gateway can count). Missing, invalid or implausible
receipts are flagged; billing.py decides what a request is billed given the verdict (the
receipt's counts only when valid; the gateway's own counts, or nothing, otherwise).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

from teeroute.sealing import envelope, receipts
from teeroute.sealing.envelope import (
    FrameReader,
    ResponseDigest,
    ResponseOpener,
    SealedRequest,
)
from teeroute.sealing.errors import SealingError
from teeroute.sealing.receipts import Receipt
from teeroute_gateway.catalog import UNATTESTED, Endpoint
from teeroute_gateway.upstream import UpstreamError

HopMode = Literal["client", "gateway", "plain"]
ReceiptStatus = Literal["", "valid", "missing", "invalid", "implausible"]
SEALED_TYPE = envelope.SEALED_CONTENT_TYPE.encode()
MAX_RECEIPT = 8192
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
    sealed: SealedRequest | None = None
    opener: ResponseOpener | None = None
    """Gateway mode: opens the frames (the gateway holds the request's HPKE context)."""
    reader: FrameReader = field(default_factory=FrameReader)
    digest: ResponseDigest = field(default_factory=ResponseDigest)
    receipt: bytes | None = None
    frames: int = 0
    frame_bytes: int = 0
    request_bytes: int = 0
    """The sealed body's plaintext size (gateway mode) or ciphertext size (client mode)."""
    final: bool = False
    broken: str = ""
    """Why the frames could not be read (then the receipt cannot be trusted either)."""

    def inspect(self, raw: bytes) -> None:
        """Client mode: note frames and the receipt in bytes passed on unchanged."""
        if self.broken:
            return
        try:
            for event in self.reader.feed(raw):
                if event.name == envelope.RECEIPT_EVENT:
                    self._take_receipt(event.data)
                else:
                    ciphertext = envelope.frame_ciphertext(event)
                    self.digest.add(ciphertext)
                    self._count(ciphertext)
        except SealingError as exc:
            self.broken = exc.check

    def open(self, raw: bytes) -> bytes:
        """Gateway mode: the plaintext in `raw` (raises SealingError on any tampering)."""
        if self.opener is None:
            raise SealingError("frame.open", "no sealed request was sent")
        out = []
        for event in self.reader.feed(raw):
            if event.name == envelope.RECEIPT_EVENT:
                self._take_receipt(event.data)
                continue
            ciphertext = envelope.frame_ciphertext(event)
            self._count(ciphertext)
            out.append(self.opener.open(ciphertext))
            self.final = self.opener.finished
        return b"".join(out)

    def open_all(self, raw: bytes) -> bytes:
        """Gateway mode, a whole answer: its plaintext, which must end with the final frame."""
        plain = self._opening(raw)
        if not self.final:
            raise UpstreamError("sealed", "the sealed answer was cut short", False)
        return plain

    async def opened(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """Gateway mode, a stream: plaintext as frames open; tampering or a missing final
        frame is an upstream failure after the start."""
        async for raw in chunks:
            plain = self._opening(raw)
            if plain:
                yield plain
        if not self.final:
            raise UpstreamError("sealed", "the sealed answer was cut short", False)

    async def inspected(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """Client mode: the bytes unchanged, noted on the way."""
        async for raw in chunks:
            self.inspect(raw)
            yield raw

    def _opening(self, raw: bytes) -> bytes:
        try:
            return self.open(raw)
        except SealingError as exc:
            raise UpstreamError("sealed", f"the sealed answer failed {exc.check}", False) from None

    @property
    def response_sha256(self) -> str:
        return (self.opener.digest if self.opener else self.digest).hexdigest()

    def _count(self, ciphertext: bytes) -> None:
        self.frames += 1
        self.frame_bytes += max(0, len(ciphertext) - 16)

    def _take_receipt(self, data: bytes) -> None:
        if self.receipt is not None:
            raise SealingError("receipt.format", "more than one receipt")
        self.receipt = data[:MAX_RECEIPT]


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
    receipt: Receipt | None = None
    text: str | None = None
    """What to store with the record: the receipt as received (bounded), if any."""
    check: str = ""


NO_RECEIPT = Judgement("")


def judge(hop: Hop, endpoint: Endpoint, request_id: str, observed: Observed) -> Judgement:
    if hop.mode == "plain":
        return Judgement("")
    raw = hop.receipt
    if raw is None:
        return Judgement("missing", check="receipt.present")
    text = _storable(raw)
    if hop.broken:
        return Judgement("invalid", text=text, check=hop.broken)
    try:
        receipt = receipts.verify_receipt(
            raw,
            signing_key_sha256=endpoint.signing_key_sha256,
            request_id=request_id,
            request_sha256=hop.sealed.digest if hop.sealed else None,
            response_sha256=hop.response_sha256,
            hpke_key_sha256=endpoint.hpke_key_sha256,
        )
    except SealingError as exc:
        return Judgement("invalid", text=text, check=exc.check)
    problem = implausible(receipt, observed)
    if problem:
        return Judgement("implausible", receipt, receipt.text(), problem)
    return Judgement("valid", receipt, receipt.text())


def _storable(raw: bytes) -> str | None:
    """A receipt that failed, kept for the dispute if it is JSON at all (canonical, so
    the ledger gets valid text); unreadable bytes are not stored."""
    try:
        return envelope.canonical(json.loads(raw)).decode()
    except (ValueError, UnicodeDecodeError):
        return None


def implausible(receipt: Receipt, observed: Observed) -> str:
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
