"""Sealed messages are opened only when fresh, and only once (docs/sealed-mode.md, section 1).

Wire v2 uses this guard for HELLOs and ONESHOTs (`sealed.remember_hello`: `created_at` plays
the part of `meta.sealed_at`, the HELLO's `enc` is remembered), and gateway_auth.py for the
nonces of plain requests; requests inside a session are taken once by its replay window.
What follows is the rule as v1 sealed requests had it.

Every sealed inference request carries `meta.sealed_at`, whole seconds since the epoch, which
is authenticated as associated data. The agent takes a request only if that time is within
`window_s` of its own clock. It also takes it only once: it remembers the `enc` of every
request it opened (the sender's one-time HPKE key, so no two honest requests share one) for as
long as the request could still pass the time check. A request replayed by the gateway, the
host or anyone who captured it is refused before it reaches the engine or earns a receipt.

The clock is the enclave's, and the host may move it. The guard forgets by the latest time it
has seen, which never goes back, so setting the clock back cannot revive a forgotten request.
Setting it forward only refuses requests, which the host could do anyway. A restart forgets
everything, but the agent also makes new keys then, so nothing sealed before it opens.

    guard.check_time(meta_value, now)        -> sealed_at, or Refused (before opening)
    guard.remember(enc, sealed_at, now)      -> None, or Refused (after opening)
"""

from __future__ import annotations

import heapq
import threading

DEFAULT_WINDOW_S = 300
DEFAULT_CAPACITY = 500_000
"""Requests remembered at most: about 58 MB (116 bytes each, measured), enough for 1,600
requests a second sustained over the default window, above what one agent serves. When full
the agent refuses (503) rather than forget a request early."""


class Refused(Exception):
    """A sealed request the guard will not let through: status, error type, message (the
    message names `meta.sealed_at` and never holds key or content bytes)."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


class ReplayGuard:
    def __init__(self, window_s: int = DEFAULT_WINDOW_S, capacity: int = DEFAULT_CAPACITY) -> None:
        if window_s < 1 or capacity < 1:
            raise ValueError("the window and the capacity must be at least 1")
        self.window_s = window_s
        self.capacity = capacity
        self._horizon = 0
        self._seen: set[bytes] = set()
        self._by_second: dict[int, list[bytes]] = {}
        self._seconds: list[int] = []  # a heap of the keys of _by_second
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._seen)

    def check_time(self, value: object, now: float) -> int:
        """`meta.sealed_at` as whole seconds, if within the window of `now`."""
        if type(value) is not int or value < 0:
            raise Refused(
                400,
                "sealed_envelope_invalid",
                "meta.sealed_at: expected when the request was sealed, in whole seconds "
                "since the epoch",
            )
        self._stale_check(value, now, max(self._horizon, int(now)))
        return value

    def remember(self, enc: bytes, sealed_at: int, now: float) -> None:
        """Records an opened request; Refused if it was opened before (or went stale)."""
        with self._lock:
            self._advance(int(now))
            self._stale_check(sealed_at, now, self._horizon)
            if enc in self._seen:
                raise Refused(
                    409,
                    "sealed_request_replayed",
                    "meta.sealed_at: this sealed request was already served; seal each "
                    "request anew",
                )
            if len(self._seen) >= self.capacity:
                raise Refused(
                    503,
                    "replay_cache_full",
                    "the agent remembers too many recent requests to take another now",
                )
            self._seen.add(enc)
            bucket = self._by_second.get(sealed_at)
            if bucket is None:
                bucket = self._by_second[sealed_at] = []
                heapq.heappush(self._seconds, sealed_at)
            bucket.append(enc)

    def _stale_check(self, sealed_at: int, now: float, horizon: int) -> None:
        if sealed_at < horizon - self.window_s or sealed_at > now + self.window_s:
            off = int(now) - sealed_at
            where = f"{off} s behind" if off >= 0 else f"{-off} s ahead of"
            raise Refused(
                400,
                "sealed_request_stale",
                f"meta.sealed_at: {where} the enclave's clock, outside its {self.window_s} s "
                "window; check the clocks and seal anew",
            )

    def _advance(self, now: int) -> None:
        """Moves the horizon to `now` if later, forgetting what can no longer pass."""
        if now <= self._horizon:
            return
        self._horizon = now
        oldest = now - self.window_s
        while self._seconds and self._seconds[0] < oldest:
            for enc in self._by_second.pop(heapq.heappop(self._seconds)):
                self._seen.discard(enc)
