"""When simulated tokens are due: the first after the time to first token, the rest at the
configured rate (a rate of 0 or less: all at once)."""

from __future__ import annotations


def token_due(index: int, ttft_ms: float, tokens_per_s: float) -> float:
    """Seconds after the request arrived at which token `index` (from 0) is produced."""
    first = ttft_ms / 1000
    if tokens_per_s <= 0:
        return first
    return first + index / tokens_per_s
