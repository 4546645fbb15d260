"""A sliding anti-replay window over message counters (RFC 6479 style, as WireGuard, DTLS).

Concurrent requests on one session reach the enclave out of order, so "counter must grow" is
too strict; instead the receiver remembers which of the last `size` counters below the highest
one it accepted have been seen. A counter is accepted once; one more than `size` below the
highest is refused as too old. The bitmap is one Python int (bit i = highest - i seen), so a
check is a shift and a mask, whatever the size.

Callers check before authenticating and mark only after (`check`, then `check_and_mark`):
marking an unauthenticated counter would let anyone burn genuine counters or slide the window.
Not thread-safe: `Session` calls it under its lock.
"""

from __future__ import annotations

DEFAULT_SIZE = 4096


class ReplayWindow:
    __slots__ = ("_bits", "_mask", "_size", "_top")

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        if size < 1:
            raise ValueError("a replay window holds at least one counter")
        self._size = size
        self._mask = (1 << size) - 1
        self._top = -1  # the highest counter accepted; -1: none yet
        self._bits = 0

    @property
    def size(self) -> int:
        return self._size

    @property
    def highest(self) -> int:
        """The highest counter accepted so far, -1 before the first."""
        return self._top

    def check(self, counter: int) -> bool:
        """Whether `counter` would be accepted now (new and not too old); changes nothing."""
        if counter < 0:
            return False
        if counter > self._top:
            return True
        behind = self._top - counter
        return behind < self._size and not (self._bits >> behind) & 1

    def too_old(self, counter: int) -> bool:
        """Whether `counter` fell out of the window (for the refusal's wording)."""
        return self._top - counter >= self._size

    def check_and_mark(self, counter: int) -> bool:
        """Accepts `counter` once: True and remembered, or False (seen, too old, negative)."""
        if counter > self._top:
            shift = counter - self._top
            self._bits = ((self._bits << shift) | 1) & self._mask if shift < self._size else 1
            self._top = counter
            return True
        if not self.check(counter):
            return False
        self._bits |= 1 << (self._top - counter)
        return True
