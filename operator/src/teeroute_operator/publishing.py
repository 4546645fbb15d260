"""When the operator writes to the apiserver (pure decisions): only when what it shows changes,
or when an expiry it published must move.

The operator renews an endpoint's lease in its own memory on every verified challenge
(leases.LeaseBook), so the lease's times move on every sweep. Publishing every renewal would
rewrite every pod, every EndpointSlice and every external pool's status on every sweep. What it
publishes instead (the *shown* lease: pod annotations, the signed admission records in the
slices, external endpoints' status entries) is the current lease when, and only when:

1. the endpoint's standing changed: admitted or not, TEE, measurement, chip, keys, secrets,
   failure, chip change, its name, URL or pod (everything but the two times); or
2. the current expiry is earlier than the shown one (a lease never shows more than it has); or
3. the shown expiry would lapse before the next sweep can publish again: less than the
   *refresh horizon* is left, where

       horizon = interval * (1 + jitter) + challenge deadline + SLACK

   (the next sweep starts at most interval * (1 + jitter) later and publishes at most one
   challenge deadline after it starts; SLACK covers the watch delay to the gateways and clock
   skew).

Otherwise the shown lease stays as it was, byte for byte (its signed record is deterministic),
so nothing is written. A shown lease never outlives, nor claims more than, the current one.

Cost in steady state: each endpoint is rewritten once every (maxEvidenceAge - horizon),
rounded up to whole intervals. At the defaults (interval 60 s, maxEvidenceAge 5 m, jitter 0.5,
deadline 10 s) that is every 240 s: 100 endpoints cost 100/240 ≈ 0.42 pod writes/s plus the
writes of their slice (≤ 1 per 100 endpoints per refresh round when they renew together), below
the 1 write/s per 100 endpoints target. A pool whose maxEvidenceAge is shorter than the horizon
is rewritten on every sweep: that is what its policy asks for.

`covers` decides whether an object the apiserver holds already says everything an apply would
send, so the apply (a write, even when it changes nothing) is skipped.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from teeroute_operator.lease import Record

SLACK = dt.timedelta(seconds=10)
MAX_JITTER = 0.5
"""The largest jitter the operator's settings allow (settings.attestation_jitter)."""
_TIMES = frozenset({"attested_at", "expires_at"})


def horizon(interval: dt.timedelta, deadline_s: float, jitter: float = MAX_JITTER) -> dt.timedelta:
    """How long a published expiry must still run for the next sweep to refresh it in time."""
    return interval * (1 + jitter) + dt.timedelta(seconds=deadline_s) + SLACK


def same_standing(a: Record, b: Record) -> bool:
    """Equal in everything but the two times, and both admitting or both not."""
    if (a.expires_at is None) != (b.expires_at is None):
        return False
    return all(
        getattr(a, f.name) == getattr(b, f.name)
        for f in dataclasses.fields(Record)
        if f.name not in _TIMES
    )


def to_show(
    shown: Record | None, current: Record, now: dt.datetime, refresh: dt.timedelta
) -> Record:
    """The record to publish: `shown` (unchanged, so no write) or `current`."""
    if shown is None or not same_standing(shown, current):
        return current
    if shown.expires_at is None or current.expires_at is None:
        return current  # neither admits: nothing to extend, the same either way
    if current.expires_at < shown.expires_at:
        return current  # shortened (a shorter maxEvidenceAge): never show more than held
    if shown.expires_at - now < refresh:
        return current  # would lapse before the next sweep could publish
    return shown


def covers(live: Any, desired: Any) -> bool:
    """`live` (as the apiserver returns it) already holds every field of `desired` with the
    same value: maps may carry more keys (defaults, others' fields), lists must match item by
    item, a None in `desired` (a merge patch's removal) must be absent, and an empty list or map
    in `desired` may be absent (the apiserver drops those). A false "no" costs one
    unneeded apply; a "yes" is never wrong for what we send."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(
            _holds(live, key, value) for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(covers(a, b) for a, b in zip(live, desired, strict=True))
        )
    return bool(live == desired and type(live) is type(desired))


def _holds(live: dict[str, Any], key: str, value: Any) -> bool:
    if live.get(key) is None and (value is None or value == [] or value == {}):
        return True  # absent as asked, or empty as the apiserver stores an empty list or map
    return key in live and covers(live[key], value)
