"""Charging one request to a rate-limit scope, as every handler that counts requests does
(inference and fresh-evidence calls): 429 with Retry-After when over the limit, 503 when the
limiter cannot answer (the documented fail-closed degradation)."""

from __future__ import annotations

from teeroute_gateway.errors import RateLimited, Unavailable
from teeroute_gateway.limits import LimiterUnavailable, Limits, RateLimiter


async def enforce(limiter: RateLimiter, scope: str, limits: Limits, what: str) -> None:
    """Admit one request under `limits` in `scope` (`what` names it to the client)."""
    try:
        decision = await limiter.admit(scope, limits)
    except LimiterUnavailable:
        raise Unavailable(
            "rate limits cannot be checked right now",
            code="limiter_unavailable",
            headers={"Retry-After": "1"},
        ) from None
    if not decision.allowed:
        wait = max(1, int(decision.retry_after_s + 0.999))
        raise RateLimited(
            f"rate limit of {decision.limit} {decision.reason} per minute reached on {what}",
            code=f"rate_limit_{decision.reason}",
            headers={"Retry-After": str(wait)},
        )
