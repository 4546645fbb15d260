"""Pick the rate limiter from the gateway's settings: in-process or shared through Redis.

The gateway calls `open_limiter(settings.limiter_url)` once at start and `close()` at exit.
"""

from __future__ import annotations

from teeroute_gateway.limits.memory import MemoryLimiter
from teeroute_gateway.limits.models import RateLimiter
from teeroute_gateway.limits.redis_store import DEFAULT_TIMEOUT_S, RedisLimiter, client_from_url

REDIS_SCHEMES = ("redis", "rediss", "unix")


def open_limiter(url: str | None, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> RateLimiter:
    """None, "" or "memory": counts in this process (one replica). "redis://host:port/db",
    "rediss://…" or "unix:///path.sock?db=N": counts shared by every replica using that Redis.
    No I/O here: a Redis that is down shows on the first call, as `LimiterUnavailable`.
    """
    if url is None or url in ("", "memory"):
        return MemoryLimiter()
    scheme = url.partition(":")[0].lower()
    if scheme not in REDIS_SCHEMES:
        # The URL itself is not echoed: it may carry a password.
        raise ValueError(
            f"limiter URL scheme {scheme!r} is not one of memory, {', '.join(REDIS_SCHEMES)}"
        )
    return RedisLimiter(client_from_url(url, timeout_s), timeout_s=timeout_s)
