"""Which requests fail on purpose (--fail-rate).

The n-th completion request a server process accepts fails if a BLAKE2b hash of (seed, n),
read as a number in [0, 1), is below the rate. So a run is reproducible for a given seed and
request order, and identical requests still fail at the configured rate (a decision keyed by
the request's content would fail every copy of one request, or none).
"""

from __future__ import annotations

import hashlib


def fails(seed: int, sequence: int, rate: float) -> bool:
    if rate <= 0:
        return False
    if rate >= 1:
        return True
    digest = hashlib.blake2b(f"{seed}:{sequence}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < rate
