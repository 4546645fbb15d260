"""The gateway's root tracker: one per gateway session, it holds the session's receipts until
a signed root covers them, then gives one proof bundle per receipt for the ledger
(docs/sealed-mode.md, "Receipts v2").

    note(receipt, request_id, now)   a receipt whose tag checked; -> proofs it completes
    on_root(payload, attested_signing_sha256)   a ROOT frame -> proofs
    due(now)                         a receipt has waited S seconds: ask the agent for roots
    overdue(now, grace)              receipts not covered within S + grace: flag them

Each root's signature is checked once; the receipts then need only the tree. The ROOT frame
carries the batch's leaf hashes, so a receipt the gateway never got (its client left) does
not keep the others from being proven, and a receipt that arrives after its root (answers
of one batch travel on different streams) is proven from the recent roots kept. Memory is
bounded: at most `max_pending` receipts (the oldest beyond are given up, reported by
`overdue`) and RECENT_ROOTS roots.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import deque
from dataclasses import dataclass

from teeroute.sealing import merkle
from teeroute.sealing.errors import ReceiptInvalid
from teeroute.sealing.receipt_body import ReceiptV2
from teeroute.sealing.roots import MAX_BATCH, SignedRoot, parse_root, proof_bundle

DEFAULT_MAX_PENDING = 4 * MAX_BATCH
RECENT_ROOTS = 8
Proofs = list[tuple[str, str]]  # (request_id, proof bundle JSON text)


@dataclass(frozen=True, slots=True)
class _Noted:
    receipt: ReceiptV2
    request_id: str
    at: float


class RootTracker:
    def __init__(
        self,
        *,
        session_id: bytes,
        hpke_key_sha256: str | None = None,
        interval_s: float = 5.0,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        self.session_id = session_id.hex()
        self.interval_s = interval_s
        self._hpke_sha = hpke_key_sha256
        self._max = max_pending
        self._lock = threading.Lock()
        self._pending: dict[int, _Noted] = {}  # by index, oldest first
        self._given_up: deque[str] = deque(maxlen=max_pending)
        self._recent: deque[SignedRoot] = deque(maxlen=RECENT_ROOTS)
        self._seen: deque[bytes] = deque(maxlen=4 * RECENT_ROOTS)  # digests of roots taken

    @property
    def pending(self) -> int:
        return len(self._pending)

    def note(self, receipt: ReceiptV2, request_id: str, now: float) -> Proofs:
        """Hold a receipt (its tag already checked) until a root covers it. Returns its
        proof at once when a recent root covers it already. receipt.session / receipt.index:
        not this session's, or a second receipt with the same index; root.mismatch: a
        signed root holds another receipt at its index."""
        if receipt.session_id != self.session_id:
            raise ReceiptInvalid("receipt.session", "not a receipt of this session")
        with self._lock:
            if receipt.index in self._pending:
                raise ReceiptInvalid("receipt.index", "a second receipt with the same index")
            for root in self._recent:
                if root.covers(receipt.index):
                    return [self._prove(root, _Noted(receipt, request_id, now))]
            if len(self._pending) >= self._max:
                self._give_up_oldest()
            self._pending[receipt.index] = _Noted(receipt, request_id, now)
            return []

    def lowest_pending(self) -> int | None:
        """The lowest receipt index held and not yet covered by a root (None: none held)."""
        with self._lock:
            return min(self._pending, default=None)

    def on_root(self, payload: bytes, attested_signing_sha256: str) -> Proofs:
        """The proofs of the receipts held that a ROOT payload covers (they are then let go).
        Raises ReceiptInvalid: root.format, root.key (not the attested key, or another
        enclave key), root.signature, root.session, root.mismatch (the leaves do not make the
        signed root, or a receipt held is not the one the root has at its index)."""
        root = parse_root(payload)
        digest = hashlib.sha256(root.doc).digest()
        if digest in self._seen:
            return []  # the same root again: checked and taken already
        root.verify(attested_signing_sha256)
        self._check_session(root)
        if merkle.root(root.leaves) != root.root:
            raise ReceiptInvalid("root.mismatch", "the leaves sent do not make the signed root")
        with self._lock:
            held = self._covered(root)
            proofs = [self._prove(root, self._pending[n]) for n in held]
            for index in held:
                del self._pending[index]
            self._recent.append(root)
            self._seen.append(digest)
            return proofs

    def _check_session(self, root: SignedRoot) -> None:
        if root.session_id != self.session_id:
            raise ReceiptInvalid("root.session", "a root of another session")
        if self._hpke_sha is not None and root.hpke_key_sha256 != self._hpke_sha:
            raise ReceiptInvalid("root.key", "a root for another enclave key")

    def _covered(self, root: SignedRoot) -> list[int]:
        """The indexes held that `root` covers; root.mismatch if any holds another receipt
        than the root's leaf at its place (then nothing is taken)."""
        held = [index for index in self._pending if root.covers(index)]
        for index in held:
            if self._pending[index].receipt.leaf != root.leaves[index - root.first_index]:
                raise ReceiptInvalid("root.mismatch", "the root holds another receipt")
        return held

    @staticmethod
    def _prove(root: SignedRoot, noted: _Noted) -> tuple[str, str]:
        at = noted.receipt.index - root.first_index
        if noted.receipt.leaf != root.leaves[at]:
            raise ReceiptInvalid("root.mismatch", "the root holds another receipt")
        path = merkle.inclusion_proof(root.leaves, at)
        return noted.request_id, proof_bundle(noted.receipt, root, path)

    def _give_up_oldest(self) -> None:
        oldest = next(iter(self._pending))
        self._given_up.append(self._pending.pop(oldest).request_id)

    def due(self, now: float) -> bool:
        """Whether a receipt held has waited the batcher's S seconds (ask for its root)."""
        with self._lock:
            first = next(iter(self._pending.values()), None)
            return first is not None and now - first.at >= self.interval_s

    def overdue(self, now: float | None = None, grace: float = 0.0) -> list[str]:
        """The request ids of the receipts no root covered within S + grace seconds, and of
        those given up for memory; they are let go (each is reported once)."""
        now = time.time() if now is None else now
        with self._lock:
            late = [n for n, noted in self._pending.items()
                    if now - noted.at >= self.interval_s + grace]  # fmt: skip
            found = list(self._given_up) + [self._pending.pop(n).request_id for n in late]
            self._given_up.clear()
            return found
