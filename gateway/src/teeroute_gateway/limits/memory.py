"""The in-process rate limiter: exact counts for one gateway process, no I/O.

`open_limiter(None)` returns it; the gateway calls `admit` on every request, so the hot path
is a dict lookup, two ring advances and a comparison (see e2e/bench/limits.py). Scopes idle
for a whole window hold only zeros and are evicted, so memory follows the scopes active in
the last minute, never the scopes ever seen.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from teeroute_gateway.limits.models import ALLOWED, Decision, Limits, RateLimiter
from teeroute_gateway.limits.window import SLOTS, Ring, bucket_of


class _Scope:
    __slots__ = ("requests", "tokens")

    def __init__(self, bucket: int) -> None:
        self.requests = Ring(bucket)
        self.tokens = Ring(bucket)

    def advance(self, bucket: int) -> None:
        self.requests.advance(bucket)
        self.tokens.advance(bucket)


def decide(scope: _Scope, limits: Limits, now: float) -> Decision:
    """Admit (and count) one request, or say which limit denies it and for how long."""
    rpm, tpm = limits.rpm, limits.tpm
    requests, tokens = scope.requests, scope.tokens
    over_requests = rpm is not None and requests.total >= rpm
    over_tokens = tpm is not None and tokens.total >= tpm
    if over_requests or over_tokens:
        # Both must clear before a request gets in: the longer wait is the answer.
        wait_r = requests.retry_after(rpm, now) if rpm is not None and over_requests else 0.0
        wait_t = tokens.retry_after(tpm, now) if tpm is not None and over_tokens else 0.0
        if over_requests and wait_r >= wait_t:
            return Decision(False, "requests", wait_r, rpm, 0)
        return Decision(False, "tokens", wait_t, tpm, 0)
    if rpm is not None:
        requests.add(1)
        return Decision(True, "", 0.0, rpm, rpm - requests.total)
    return Decision(True, "", 0.0, tpm, None if tpm is None else tpm - tokens.total)


class MemoryLimiter(RateLimiter):
    """Counts per scope in this process. Not shared: with N replicas, each admits rpm."""

    def __init__(self) -> None:
        # Least recently touched first, so idle scopes are found at the front.
        self._scopes: OrderedDict[str, _Scope] = OrderedDict()
        self._swept = 0

    def __len__(self) -> int:
        """Scopes held (for tests and metrics)."""
        return len(self._scopes)

    async def admit(self, scope: str, limits: Limits, now: float | None = None) -> Decision:
        if limits.rpm is None and limits.tpm is None:
            return ALLOWED
        t = time.monotonic() if now is None else now
        return decide(self._touch(scope, bucket_of(t)), limits, t)

    async def record_tokens(
        self, scope: str, limits: Limits, tokens: int, now: float | None = None
    ) -> None:
        if limits.tpm is None or tokens <= 0:
            return
        t = time.monotonic() if now is None else now
        self._touch(scope, bucket_of(t)).tokens.add(tokens)

    async def close(self) -> None:
        self._scopes.clear()

    def _touch(self, scope: str, bucket: int) -> _Scope:
        state = self._scopes.get(scope)
        if state is None:
            state = self._scopes[scope] = _Scope(bucket)
        else:
            self._scopes.move_to_end(scope)
            state.advance(bucket)
        if bucket != self._swept:
            self._evict_idle(bucket)
        return state

    def _evict_idle(self, bucket: int) -> None:
        """Drop the scopes whose every bucket has left the window (once per bucket)."""
        self._swept = bucket
        scopes = self._scopes
        while scopes:
            oldest = next(iter(scopes.values()))
            if oldest.requests.head + SLOTS > bucket:
                return
            scopes.popitem(last=False)
