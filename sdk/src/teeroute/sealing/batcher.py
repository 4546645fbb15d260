"""The enclave's root batcher: one per gateway session, it numbers that session's receipts
and signs a Merkle root over every K of them, or over what it holds once the oldest has
waited S seconds (docs/sealed-mode.md, "Receipts v2").

The agent calls `receipt_mac.issue_receipt(batcher, ...)` once per answer (`issue` numbers
the receipt and adds it under the batcher's lock), sends the ROOT frame it returns after the
RECEIPT frame, and `flush` when the gateway asks for the roots still due
(POST /v1/sessions/roots). It holds at most K leaves.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from teeroute.sealing import merkle
from teeroute.sealing.frames import FrameType, encode
from teeroute.sealing.receipt_body import parse_body, receipt_body
from teeroute.sealing.roots import MAX_BATCH, sign_root

DEFAULT_BATCH = 64
DEFAULT_INTERVAL_S = 5.0


class RootBatcher:
    def __init__(
        self,
        *,
        session_id: bytes,
        sign: Callable[[bytes], bytes],
        signing_public: bytes,
        hpke_key_sha256: str,
        batch_size: int = DEFAULT_BATCH,
        interval_s: float = DEFAULT_INTERVAL_S,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH or interval_s <= 0:
            raise ValueError(f"batch_size must be 1..{MAX_BATCH} and interval_s positive")
        self.session_id = session_id
        self.batch_size = batch_size
        self.interval_s = interval_s
        self.lock = threading.RLock()
        self._sign = sign
        self._public = signing_public
        self._hpke_sha = hpke_key_sha256
        self._first = 0  # index of the first pending leaf
        self._leaves: list[bytes] = []
        self._since: float | None = None  # when the first pending leaf came

    @property
    def next_index(self) -> int:
        """The index the session's next receipt must carry."""
        return self._first + len(self._leaves)

    @property
    def pending(self) -> int:
        return len(self._leaves)

    def due(self, now: float) -> bool:
        """Whether the pending receipts should be signed now (K of them, or S seconds)."""
        if not self._leaves or self._since is None:
            return False
        return len(self._leaves) >= self.batch_size or now - self._since >= self.interval_s

    def add(self, receipt_body: bytes, now: float) -> bytes | None:
        """Adds the session's next receipt (its canonical body); the ROOT frame when due.
        ValueError if the body is not this session's next receipt (a caller's mistake)."""
        receipt = parse_body(receipt_body)
        with self.lock:
            if receipt.session_id != self.session_id.hex() or receipt.index != self.next_index:
                raise ValueError("not this session's next receipt")
            return self._append(receipt.leaf, now)

    def issue(self, fields: Mapping[str, Any], now: float) -> tuple[bytes, bytes | None]:
        """The body of the session's next receipt, numbered here (session_id, index), and
        the ROOT frame when due: `add` without reading back a body it just built."""
        with self.lock:
            numbered = {**fields, "session_id": self.session_id.hex(), "index": self.next_index}
            body = receipt_body(numbered)
            return body, self._append(merkle.leaf_hash(body), now)

    def _append(self, leaf: bytes, now: float) -> bytes | None:
        if not self._leaves:
            self._since = now
        self._leaves.append(leaf)
        return self.flush(now) if self.due(now) else None

    def flush(self, now: float) -> bytes | None:
        """The ROOT frame over every pending receipt (None when none is pending)."""
        with self.lock:
            if not self._leaves:
                return None
            payload = sign_root(
                sign=self._sign, signing_public=self._public, session_id=self.session_id,
                first_index=self._first, leaves=self._leaves, hpke_key_sha256=self._hpke_sha,
                now=now,
            )  # fmt: skip
            self._first += len(self._leaves)
            self._leaves, self._since = [], None
            return encode(FrameType.ROOT, payload)
