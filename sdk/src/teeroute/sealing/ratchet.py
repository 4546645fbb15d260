"""The key schedule of a wire v2 session and its per-direction AEAD state (used by session.py).

    master      = HPKE export(b"teeroute/v2 session", 32)
    chain_d,0   = HKDF-Expand(master, d, 32)          d = b"c2s" (initiator -> enclave)
                                                          b"s2c" (enclave -> initiator)
    key_d,e     = HKDF-Expand(chain_d,e, b"key", 16)   AES-128-GCM key of epoch e
    nonce_d,e   = HKDF-Expand(chain_d,e, b"nonce", 12)
    chain_d,e+1 = HKDF-Expand(chain_d,e, b"ratchet", 32)   and chain_d,e is forgotten
    receipt_key = HKDF-Expand(master, b"receipt", 32); confirm_key = ... b"confirm"

A message's nonce is nonce_d,e XOR its counter; counters run per direction from 0 and never
restart (not even at a new epoch), so a (key, nonce) pair is never used twice. The sender
moves to the next epoch after `rekey_messages` messages or `rekey_seconds` in one epoch; the
receiver holds the keys of its current and previous epoch and derives up to two epochs ahead
on demand, moving on only once a message of the newer epoch authenticated. Since each chain
is forgotten once the next is derived, a key taken from memory later opens nothing sealed
two epochs before (forward secrecy by rekeying). Neither class locks: Session calls them
under its lock.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from teeroute.sealing.errors import OpenFailed, SealingError

EXPORT_LABEL = b"teeroute/v2 session"
C2S = b"c2s"
S2C = b"s2c"
KEY_LENGTH = 16
NONCE_LENGTH = 12
MAX_EPOCH = 0xFFFFFFFF
LOOKAHEAD = 2
"""Epochs the receiver accepts ahead of its current one (the sender rekeyed in between)."""

Keys = tuple[int, AESGCM, int]
"""(epoch, the epoch's AEAD, its nonce base as an int)."""


def expand(prk: bytes, label: bytes, length: int) -> bytes:
    return HKDFExpand(hashes.SHA256(), length, label).derive(prk)


def epoch_keys(epoch: int, chain: bytes) -> Keys:
    key = expand(chain, b"key", KEY_LENGTH)
    return epoch, AESGCM(key), int.from_bytes(expand(chain, b"nonce", NONCE_LENGTH), "big")


def ratchet(chain: bytes) -> bytes:
    return expand(chain, b"ratchet", 32)


class Sender:
    """One direction's sending side: the epoch's keys and the next counter."""

    __slots__ = ("_chain", "_limit", "_period", "_sent", "_started", "counter", "keys", "last_now")

    def __init__(self, chain: bytes, start: float, rekey_messages: int, rekey_seconds: int):
        self._chain = chain
        self.keys = epoch_keys(0, chain)
        self.counter = 0
        self._sent = 0
        self._started = start
        self.last_now = start
        self._limit = rekey_messages
        self._period = rekey_seconds

    def next(self, now: float | None) -> tuple[Keys, int]:
        """The keys and counter of the next message, rekeying first when due."""
        if now is None:
            now = self.last_now
        elif now > self.last_now:
            self.last_now = now
        if self._sent >= self._limit or now - self._started >= self._period:
            if self.keys[0] >= MAX_EPOCH:
                raise SealingError("session.expired", "the session ran out of epochs")
            self._chain = ratchet(self._chain)
            self.keys = epoch_keys(self.keys[0] + 1, self._chain)
            self._sent, self._started = 0, now
        counter = self.counter
        self.counter = counter + 1
        self._sent += 1
        return self.keys, counter


class Receiver:
    """One direction's receiving side: current and previous epoch, up to LOOKAHEAD ahead."""

    __slots__ = ("_ahead", "_chain", "_previous", "current")

    def __init__(self, chain: bytes) -> None:
        self._chain = chain
        self.current = epoch_keys(0, chain)
        self._previous: Keys | None = None
        self._ahead: dict[int, tuple[bytes, Keys]] = {}

    def keys_for(self, epoch: int) -> Keys:
        """The keys of `epoch`, or OpenFailed("session.epoch") when it is out of reach."""
        now = self.current[0]
        if epoch == now:
            return self.current
        if epoch == now - 1 and self._previous is not None:
            return self._previous
        if now < epoch <= now + LOOKAHEAD:
            return self._derive(epoch)[1]
        raise OpenFailed("session.epoch", f"epoch {epoch} is out of reach of epoch {now}")

    def _derive(self, epoch: int) -> tuple[bytes, Keys]:
        found = self._ahead.get(epoch)
        if found is None:
            chain = self._chain if epoch - 1 == self.current[0] else self._derive(epoch - 1)[0]
            chain = ratchet(chain)
            found = self._ahead[epoch] = (chain, epoch_keys(epoch, chain))
        return found

    def advance(self, epoch: int) -> None:
        """Moves to `epoch` once a message of it authenticated (no-op if not newer)."""
        if epoch <= self.current[0]:
            return
        chain, keys = self._derive(epoch)
        if epoch - 1 == self.current[0]:
            self._previous = self.current
        else:
            self._previous = self._derive(epoch - 1)[1]
        self._chain, self.current = chain, keys
        self._ahead = {}
