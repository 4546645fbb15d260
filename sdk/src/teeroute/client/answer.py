"""Reading one sealed answer (wire v2, docs/sealed-mode.md): CHUNK frames opened in order under
the request's `Exchange`, then the RECEIPT, checked with the key only this client and the
enclave hold (tag kind 2, `Session.receipt_key`) and against this request and this answer.

    SealedReader     bytes in (any pieces) -> plaintext; `finish()` -> the checked receipt
    SealedResponse   an HTTP answer being read through a SealedReader (iterate, or `read()`)

Every failure is a SealingError naming its check: `frame.*` (not v2 frames, cut inside one),
`chunk.order` / `chunk.final` / `session.*` (from the Exchange: reordered, dropped, replayed,
altered, another request's), `response.truncated` (no final chunk), `receipt.missing`,
`receipt.mac` (not tagged with our session's key), `receipt.request` / `receipt.response` /
`receipt.hpke_key` / `receipt.signing_key` / `receipt.model` / `receipt.status` /
`receipt.request_id` (a receipt for something else).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any

import httpx

from teeroute.client.attest import VerifiedEnclave
from teeroute.client.errors import ResponseInvalid
from teeroute.sealing import frames
from teeroute.sealing.errors import ReceiptInvalid
from teeroute.sealing.receipt_mac import (
    CLIENT_TAG,
    ReceiptV2,
    check_tag,
    parse_receipt,
    verify_receipt_v2,
)
from teeroute.sealing.session import Exchange
from teeroute.wire import raw_pieces

MAX_ROOTS = 64
"""ROOT frames tolerated in one answer (they are the gateway's; a client skips them)."""
MAX_ERROR_TEXT = 200


class SealedReader:
    """Reads one sealed answer fed in arbitrary pieces: the plaintext of each CHUNK in order,
    then the receipt, checked against this request and this answer."""

    def __init__(
        self,
        exchange: Exchange,
        receipt_key: bytes,
        enclave: VerifiedEnclave,
        model: str,
        status: int,
        request_id: str | None = None,
    ) -> None:
        self._frames = frames.FrameDecoder()
        self._exchange = exchange
        self._receipt_key = receipt_key
        self._enclave = enclave
        self._model = model
        self._status = status
        self._request_id = request_id
        self._receipt: tuple[ReceiptV2, Mapping[int, bytes]] | None = None
        self._roots = 0

    def feed(self, data: bytes) -> list[bytes]:
        plain: list[bytes] = []
        for frame in self._frames.feed(data):
            if frame.type == frames.FrameType.CHUNK:
                if self._receipt is not None:
                    raise ResponseInvalid("frame.order", "a chunk after the receipt")
                plain.append(self._exchange.open(frame.payload))
            elif frame.type == frames.FrameType.RECEIPT:
                self._take_receipt(frame.payload)
            elif frame.type == frames.FrameType.ROOT:
                self._roots += 1
                if self._roots > MAX_ROOTS:
                    raise ResponseInvalid("frame.order", f"over {MAX_ROOTS} ROOT frames")
            elif frame.type == frames.FrameType.ERROR:
                raise ResponseInvalid("response.error", _error_text(frame.payload))
            else:
                raise ResponseInvalid("frame.type", f"a {frame.type.name} frame in an answer")
        return plain

    def _take_receipt(self, payload: bytes) -> None:
        if self._receipt is not None:
            raise ResponseInvalid("receipt.format", "a second receipt")
        if not self._exchange.finished:
            raise ResponseInvalid("response.truncated", "the receipt came before the final chunk")
        self._receipt = parse_receipt(payload)

    def finish(self) -> ReceiptV2:
        """At the end of the body: the verified receipt, or why the answer is not whole."""
        if self._frames.pending:
            raise ResponseInvalid("response.truncated", "the answer ends inside a frame")
        if not self._exchange.finished:
            raise ResponseInvalid("response.truncated", "the answer ends before its final chunk")
        if self._receipt is None:
            raise ResponseInvalid("receipt.missing", "the answer carries no usage receipt")
        receipt, tags = self._receipt
        check_tag(receipt, tags, CLIENT_TAG, self._receipt_key)
        verify_receipt_v2(
            receipt,
            request_id=self._request_id,
            request_sha256=self._exchange.request_sha256,
            response_sha256=self._exchange.response_sha256,
            hpke_key_sha256=self._enclave.hpke_key_sha256,
            signing_key_sha256=self._enclave.signing_key_sha256,
        )
        if receipt.model != self._model:
            raise ReceiptInvalid("receipt.model", "the receipt names another model")
        if receipt.status != self._status:
            raise ReceiptInvalid("receipt.status", "the receipt names another HTTP status")
        return receipt


def _error_text(payload: bytes) -> str:
    """An ERROR frame's type and message (clear JSON), bounded, for the error we raise."""
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return "an ERROR frame in the answer"
    if not isinstance(doc, dict):
        return "an ERROR frame in the answer"
    inner = doc.get("error")
    error: dict[str, Any] = inner if isinstance(inner, dict) else doc
    kind, message = error.get("type"), error.get("message")
    return f"the answer ended with an error: {kind}: {message}"[:MAX_ERROR_TEXT]


class SealedResponse:
    """A sealed answer being read. Iterate for the plaintext (or `read()`); `receipt` is set
    once the body ended and the receipt verified. Close it (or use `with`) when done early:
    that closes the connection, so the enclave stops generating."""

    def __init__(
        self,
        http: httpx.Response,
        reader: SealedReader,
        enclave: VerifiedEnclave,
        meta: Mapping[str, Any],
        session_id: bytes | None = None,
    ) -> None:
        self._http = http
        self.status = http.status_code
        self.headers = http.headers
        self.request_id: str | None = http.headers.get("x-request-id")
        self.enclave = enclave
        self.meta: Mapping[str, Any] = meta
        self.session_id = session_id.hex() if session_id is not None else None
        """The client session it went in (clear on the wire anyway); None: a one-shot."""
        self.receipt: ReceiptV2 | None = None
        self._reader = reader
        self._consumed = False

    @property
    def stream(self) -> bool:
        return self.meta.get("stream") is True

    @property
    def one_shot(self) -> bool:
        return self.session_id is None

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
