"""Per-key rate limits (requests and tokens per minute) for the gateway.

The gateway core imports only what is re-exported here:

    limiter = open_limiter(url)                  # factory.py: memory or Redis
    decision = await limiter.admit(scope, Limits(rpm=…, tpm=…))
    ...                                          # 429 + Retry-After unless decision.allowed
    await limiter.record_tokens(scope, limits, usage.total_tokens)

Modules: models.py (the contract), window.py (the bucketed sliding window, pure),
memory.py (in-process), scripts.py + redis_store.py (shared through Redis), factory.py.
"""

from teeroute_gateway.limits.factory import open_limiter
from teeroute_gateway.limits.memory import MemoryLimiter
from teeroute_gateway.limits.models import Decision, LimiterUnavailable, Limits, RateLimiter
from teeroute_gateway.limits.redis_store import RedisLimiter

__all__ = [
    "Decision",
    "LimiterUnavailable",
    "Limits",
    "MemoryLimiter",
    "RateLimiter",
    "RedisLimiter",
    "open_limiter",
]
