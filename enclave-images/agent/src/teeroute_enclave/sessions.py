"""The agent's open wire-v2 sessions (docs/sealed-mode.md, wire v2): bounded and expiring.

`server.py` holds two stores, one of gateway sessions and one of client sessions, so a
session id chosen by one kind of initiator never names a session of the other:

    store.add(entry, now)                    SessionExists if that id is open already
    store.get(session_id, now, hpke_key_id)  the entry, or None: unknown, expired, closed

A store holds at most `capacity` sessions (4096 by default): when full, expired ones go
first, then the least recently used, which is closed (its initiator gets `session_unknown`
and opens a new one). A session dies at its `expires_at` (the lease the initiator knew) and
is closed when the agent's keys are not the ones it was opened to (the agent makes its keys
at start, and a restart empties the stores, so this holds by construction and is checked at
every lookup anyway).

A gateway session's `Entry` also holds its `RootBatcher`, which numbers its receipts and
signs a Merkle root over each batch of them, and its recent ROOT frames (at most
RECENT_ROOT_BYTES of them), which `roots_due` (POST /v1/sessions/roots) sends again with any
new one: the answer that carried a root may not have reached the gateway whole (a client that
left at once takes several), and the gateway keeps each root once. The gateway names the
lowest receipt index it still waits for, so only roots that cover it or later ones go back.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from teeroute.sealing.batcher import RootBatcher
from teeroute.sealing.frames import HEADER_LEN
from teeroute.sealing.receipt_mac import issue_receipt
from teeroute.sealing.roots import parse_root
from teeroute.sealing.session import Session

DEFAULT_CAPACITY = 4096
RECENT_ROOT_BYTES = 512 << 10
"""How much of a gateway session's recent ROOT frames the agent keeps to send again (with
K = 64 about 200 roots, 13,000 receipts: well past what a burst of cut-off answers loses)."""


class SessionExists(Exception):
    """A HELLO for a session id already open (a replayed HELLO, or an initiator reusing an
    id): the open session is left as it is."""


@dataclass(frozen=True)
class Entry:
    """One open session; `roots` (which numbers its receipts and batches them under signed
    Merkle roots) only for gateway sessions."""

    session: Session
    roots: RootBatcher | None = None
    recent: deque[tuple[int, bytes]] = field(default_factory=deque, repr=False, compare=False)
    """The recent ROOT frames signed, each with the receipt index after the last it covers,
    sent again on a roots call (one may have been lost with the answer that carried it)."""

    def issue(
        self, fields: Mapping[str, Any], keys: Sequence[tuple[int, bytes]], now: float
    ) -> tuple[bytes, bytes | None]:
        """The next receipt of this gateway session: its RECEIPT frame, and a ROOT frame when
        its batch is due (`receipt_mac.issue_receipt`)."""
        receipt, root = issue_receipt(self._batcher(), fields, keys, now)
        if root is not None:
            self._remember(root)
        return receipt, root

    def roots_due(self, now: float, from_index: int = 0) -> bytes:
        """The recent ROOT frames covering receipt `from_index` or later ones, and one over
        the receipts not yet covered (if any)."""
        root = self._batcher().flush(now)
        if root is not None:
            self._remember(root)
        return b"".join([frame for end, frame in list(self.recent) if end > from_index])

    def _remember(self, root: bytes) -> None:
        signed = parse_root(root[HEADER_LEN:])
        with self._batcher().lock:
            self.recent.append((signed.first_index + signed.count, root))
            held = sum(len(frame) for _, frame in self.recent)
            while len(self.recent) > 1 and held > RECENT_ROOT_BYTES:
                held -= len(self.recent.popleft()[1])

    def _batcher(self) -> RootBatcher:
        if self.roots is None:
            raise ValueError("a client session issues no receipts of its own")
        return self.roots


class SessionStore:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("a session store holds at least one session")
        self.capacity = capacity
        self._open: OrderedDict[bytes, Entry] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._open)

    def add(self, entry: Entry, now: float) -> None:
        """Keeps `entry` (the most recently used); SessionExists if its id is open."""
        session_id = entry.session.id
        with self._lock:
            present = self._open.get(session_id)
            if present is not None and present.session.alive(now):
                raise SessionExists("session.id: a session with this id is open already")
            self._open.pop(session_id, None)
            if len(self._open) >= self.capacity:
                self._make_room(now)
            self._open[session_id] = entry

    def get(self, session_id: bytes, now: float, hpke_key_id: str) -> Entry | None:
        """The open session `session_id` (now the most recently used); None when there is
        none, or it expired, or it was opened to other keys than `hpke_key_id` (it is then
        closed and forgotten)."""
        with self._lock:
            entry = self._open.get(session_id)
            if entry is None:
                return None
            session = entry.session
            if session.alive(now) and session.params.enclave_hpke_sha256 == hpke_key_id:
                self._open.move_to_end(session_id)
                return entry
            del self._open[session_id]
        session.close()
        return None

    def _make_room(self, now: float) -> None:
        """Drops the expired sessions, and the least recently used one if none was."""
        dead = [key for key, entry in self._open.items() if not entry.session.alive(now)]
        for key in dead or [next(iter(self._open))]:
            self._open.pop(key).session.close()
