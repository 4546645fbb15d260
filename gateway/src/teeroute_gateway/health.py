"""What the gateway itself observes about each endpoint, and when to stop sending it traffic.

The proxy reports every attempt (`started`, `finished`); the router reads `EndpointHealth`
(ejected? in flight? recent speed, speed.py?); the scoreboard reads the same numbers per
pool. Nothing here trusts what a miner says about itself.

Ejection (outlier detection, after Envoy): an endpoint is ejected when it fails
`consecutive_failures` attempts in a row, or when more than half of at least `min_requests`
attempts in the last minute failed. It comes back after a cool-down that doubles with each
ejection (capped), and its next attempt is a probe: one more failure ejects it again.
User errors (4xx other than 429) are the client's fault and count as successes.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from typing import Any

from teeroute_gateway.speed import Sample, SpeedBook

WINDOW_S = 60.0
BUCKET_S = 5.0


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    consecutive_failures: int = 3
    min_requests: int = 10
    failure_ratio: float = 0.5
    base_ejection_s: float = 5.0
    max_ejection_s: float = 60.0


@dataclass(slots=True)
class _Bucket:
    start: float
    ok: int = 0
    failed: int = 0


@dataclass(slots=True)
class EndpointHealth:
    key: str
    pool: str
    inflight: int = 0
    consecutive_failures: int = 0
    ejected_until: float = 0.0
    ejections: int = 0
    speed: SpeedBook = field(default_factory=SpeedBook)
    """TTFT, TPOT and tokens/s of its recent answers, with their load (speed.py)."""
    buckets: collections.deque[_Bucket] = field(default_factory=collections.deque)
    total_ok: int = 0
    total_failed: int = 0

    def ejected(self, now: float) -> bool:
        return now < self.ejected_until

    def window(self, now: float) -> tuple[int, int]:
        self._trim(now)
        return sum(b.ok for b in self.buckets), sum(b.failed for b in self.buckets)

    def _bucket(self, now: float) -> _Bucket:
        if not self.buckets or now - self.buckets[-1].start >= BUCKET_S:
            self.buckets.append(_Bucket(start=now))
            self._trim(now)
        return self.buckets[-1]

    def _trim(self, now: float) -> None:
        while self.buckets and now - self.buckets[0].start > WINDOW_S:
            self.buckets.popleft()


class HealthBook:
    """Health of every endpoint seen, keyed by endpoint key. One per gateway process."""

    def __init__(self, policy: BreakerPolicy | None = None) -> None:
        self.policy = policy or BreakerPolicy()
        self._endpoints: dict[str, EndpointHealth] = {}
        self.ejection_count = 0
        self.speed_cache: dict[tuple[str, ...], tuple[float, Any]] = {}
        """Pool speeds the router computed lately, per set of pools (selection.pool_speeds)."""

    def get(self, key: str) -> EndpointHealth | None:
        return self._endpoints.get(key)

    def entry(self, key: str, pool: str) -> EndpointHealth:
        found = self._endpoints.get(key)
        if found is None:
            found = self._endpoints[key] = EndpointHealth(key=key, pool=pool)
        return found

    def all(self) -> list[EndpointHealth]:
        return list(self._endpoints.values())

    def forget_except(self, keys: set[str]) -> None:
        """Drop endpoints that left the catalog (bounded memory under churn)."""
        for key in [k for k in self._endpoints if k not in keys]:
            del self._endpoints[key]

    def started(self, key: str, pool: str) -> EndpointHealth:
        entry = self.entry(key, pool)
        entry.inflight += 1
        return entry

    def finished(self, entry: EndpointHealth, ok: bool, now: float | None = None) -> bool:
        """Record one attempt's outcome; True when it ejected the endpoint."""
        now = time.monotonic() if now is None else now
        entry.inflight = max(0, entry.inflight - 1)
        bucket = entry._bucket(now)
        if ok:
            bucket.ok += 1
            entry.total_ok += 1
            entry.consecutive_failures = 0
            entry.ejections = 0  # a success after a cool-down: healthy again
            return False
        bucket.failed += 1
        entry.total_failed += 1
        entry.consecutive_failures += 1
        return self._maybe_eject(entry, now)

    def observe(self, entry: EndpointHealth, sample: Sample) -> None:
        entry.speed.add(sample)

    def _maybe_eject(self, entry: EndpointHealth, now: float) -> bool:
        if entry.ejected(now):
            return False
        p = self.policy
        ok, failed = entry.window(now)
        probing = entry.ejections > 0  # ejected before and no success since: the probe failed
        tripped = (
            entry.consecutive_failures >= p.consecutive_failures
            or (ok + failed >= p.min_requests and failed / (ok + failed) > p.failure_ratio)
            or probing
        )
        if not tripped:
            return False
        entry.ejections += 1
        cool = min(p.max_ejection_s, p.base_ejection_s * 2 ** (entry.ejections - 1))
        entry.ejected_until = now + cool
        entry.consecutive_failures = 0
        self.ejection_count += 1
        return True
