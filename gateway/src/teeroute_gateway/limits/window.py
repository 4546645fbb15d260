"""The sliding window both limiters share: one-second buckets, counted conservatively.

Time is cut into buckets of BUCKET_S seconds. Something counted at time t (bucket
b = floor(t / BUCKET_S)) stays counted while b is one of the newest SLOTS = 61 buckets, i.e.
until (b + SLOTS) * BUCKET_S: between 60 and 61 seconds after t.

Error bound, against an exact sliding 60-second log:
- never more: everything counted at t is still counted at t + 60, so no 60-second interval
  ever holds more than rpm admitted requests (or more than tpm recorded tokens, plus the
  tokens of requests already in flight, which no limiter that counts on completion can stop);
- at most one bucket later: a denied request would have been admitted by the exact log at
  most BUCKET_S (1 s) sooner; `retry_after` is exact for this model, so it is an upper
  bound of the exact log's wait and exceeds it by less than a second.

Memory is constant per scope (61 counters per kind), unlike an exact log (one entry per
request). `Ring` is the in-process form (memory.py); the Redis script (scripts.py) keeps the
same buckets in a hash and implements the same rules in Lua.
"""

from __future__ import annotations

import math

WINDOW_S = 60
BUCKET_S = 1.0
SLOTS = int(WINDOW_S / BUCKET_S) + 1
"""Buckets counted: the window's 60 plus the current, partly elapsed one."""


def bucket_of(now: float) -> int:
    return math.floor(now / BUCKET_S)


def expiry(bucket: int) -> float:
    """When what was counted in `bucket` stops counting."""
    return (bucket + SLOTS) * BUCKET_S


class Ring:
    """Counts of the newest SLOTS buckets, by bucket index modulo SLOTS, and their total."""

    __slots__ = ("_until", "_until_key", "counts", "head", "total")

    def __init__(self, bucket: int) -> None:
        self.counts = [0] * SLOTS
        self.head = bucket
        """The newest bucket; it never moves back."""
        self.total = 0
        # The last answer of `retry_after`, valid while (limit, head, total) is unchanged: a
        # scope over its limit is asked again on every request, and nothing is counted
        # meanwhile (with the head fixed nothing is dropped; with the total fixed nothing
        # was added).
        self._until = 0.0
        self._until_key = (0, 0, 0)

    def advance(self, bucket: int) -> None:
        """Make `bucket` the newest, dropping the buckets that left the window.

        A clock that steps back leaves the head where it is: what comes is counted in
        the newest bucket, which keeps the count conservative.
        """
        head = self.head
        if bucket <= head:
            return
        self.head = bucket
        if self.total == 0:
            return  # all counts are zero already: nothing to drop
        if bucket - head >= SLOTS:
            self.counts = [0] * SLOTS
            self.total = 0
            return
        counts = self.counts
        for b in range(head + 1, bucket + 1):
            i = b % SLOTS
            self.total -= counts[i]
            counts[i] = 0

    def add(self, n: int) -> None:
        self.counts[self.head % SLOTS] += n
        self.total += n

    def retry_after(self, limit: int, now: float) -> float:
        """Seconds until the total falls below `limit` as the oldest buckets expire."""
        total = self.total
        if total < limit:
            return 0.0
        key = (limit, self.head, total)
        if key != self._until_key:
            self._until, self._until_key = self._until_at(limit), key
        return max(self._until - now, 0.0)

    def _until_at(self, limit: int) -> float:
        """When the total falls below `limit`: the expiry of the bucket whose leaving does it."""
        total = self.total
        for b in range(self.head - SLOTS + 1, self.head + 1):
            total -= self.counts[b % SLOTS]
            if total < limit:
                return expiry(b)
        return 0.0  # unreachable: the total of every bucket is below any limit >= 1
