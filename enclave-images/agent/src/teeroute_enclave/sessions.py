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
signs a Merkle root over each batch of them, and the last RECENT_ROOTS ROOT frames, which
`roots_due` (POST /v1/sessions/roots) sends again with any new one: the answer that carried a
root may not have reached the gateway whole, and the gateway keeps each root once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from teeroute.sealing.batcher import RootBatcher
from teeroute.sealing.receipt_mac import issue_receipt
from teeroute.sealing.session import Session

DEFAULT_CAPACITY = 4096
RECENT_ROOTS = 4


class SessionExists(Exception):
    """A HELLO for a session id already open (a replayed HELLO, or an initiator reusing an
    id): the open session is left as it is."""


@dataclass(frozen=True)
class Entry:
    """One open session; `roots` (which numbers its receipts and batches them under signed
    Merkle roots) only for gateway sessions."""

    session: Session
    roots: RootBatcher | None = None
    recent: deque[bytes] = field(
        default_factory=lambda: deque(maxlen=RECENT_ROOTS), repr=False, compare=False
    )
    """The last ROOT frames signed, sent again on a roots call (one may have been lost with
    the answer that carried it)."""

    def issue(
        self, fields: Mapping[str, Any], keys: Sequence[tuple[int, bytes]], now: float
    ) -> tuple[bytes, bytes | None]:
        """The next receipt of this gateway session: its RECEIPT frame, and a ROOT frame when
        its batch is due (`receipt_mac.issue_receipt`)."""
        receipt, root = issue_receipt(self._batcher(), fields, keys, now)
        if root is not None:
            self.recent.append(root)
        return receipt, root

    def roots_due(self, now: float) -> bytes:
        """The recent ROOT frames, and one over the receipts not yet covered (if any)."""
        root = self._batcher().flush(now)
        if root is not None:
            self.recent.append(root)
        return b"".join(list(self.recent))

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
