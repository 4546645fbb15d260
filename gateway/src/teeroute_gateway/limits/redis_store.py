"""The shared rate limiter: counts in Redis, so several gateway replicas share each limit.

`open_limiter("redis://…" | "unix://…")` returns it. Every `admit` and `record_tokens` is
one script call (EVALSHA; redis-py loads the script and retries once on NOSCRIPT), atomic
in Redis: see scripts.py. A Redis that is down, hung or refusing answers raises
`LimiterUnavailable` within `timeout_s`, never later, so the gateway can answer 503.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from teeroute_gateway.limits.models import (
    ALLOWED,
    Decision,
    LimiterUnavailable,
    Limits,
    RateLimiter,
    Reason,
)
from teeroute_gateway.limits.scripts import ADMIT, RECORD

DEFAULT_TIMEOUT_S = 0.5
"""Budget for one limiter call, retry included; Redis on loopback answers in well under 1 ms."""
DEFAULT_PREFIX = "teeroute:rl:"
_REASONS: dict[bytes, Reason] = {b"": "", b"requests": "requests", b"tokens": "tokens"}


def client_from_url(url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> Redis:
    """A client whose every call ends within `timeout_s`: each socket step gets half of it
    and one retry (for a pooled connection that died with a restarted Redis), instead of
    redis-py's defaults of 5 s and ten retries. Options in the URL's query win."""
    return Redis.from_url(
        url,
        socket_connect_timeout=timeout_s / 2,
        socket_timeout=timeout_s / 2,
        retry=Retry(NoBackoff(), 1),
    )


class RedisLimiter(RateLimiter):
    def __init__(
        self, client: Redis, *, timeout_s: float = DEFAULT_TIMEOUT_S, prefix: str = DEFAULT_PREFIX
    ) -> None:
        self._client = client
        self._timeout_s = timeout_s
        self._prefix = prefix
        self._admit = client.register_script(ADMIT)
        self._record = client.register_script(RECORD)

    async def admit(self, scope: str, limits: Limits, now: float | None = None) -> Decision:
        if limits.rpm is None and limits.tpm is None:
            return ALLOWED
        args = (_now_arg(now), limits.rpm or 0, limits.tpm or 0)
        return _decision(await self._call(self._admit, self.keys(scope), args))

    async def record_tokens(
        self, scope: str, limits: Limits, tokens: int, now: float | None = None
    ) -> None:
        if limits.tpm is None or tokens <= 0:
            return
        await self._call(self._record, self.keys(scope)[1:], (_now_arg(now), tokens))

    async def close(self) -> None:
        await self._client.aclose()

    def keys(self, scope: str) -> tuple[str, str]:
        """The requests and tokens hashes of a scope. The braces make them one hash slot,
        should the Redis be a cluster (a script may only touch keys of one slot)."""
        base = f"{self._prefix}{{{scope}}}"
        return f"{base}:r", f"{base}:t"

    async def _call(
        self, script: AsyncScript, keys: Sequence[str], args: Sequence[str | int]
    ) -> Any:
        try:
            # The socket timeouts bound each step; this bounds the whole call, retry and
            # NOSCRIPT reload included.
            async with asyncio.timeout(self._timeout_s):
                return await script(keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as exc:
            # The type only: messages may carry addresses, never worth a 503 body.
            raise LimiterUnavailable(
                f"the rate limiter's Redis did not answer ({type(exc).__name__})"
            ) from exc


def _now_arg(now: float | None) -> str:
    return "" if now is None else repr(float(now))


def _decision(reply: Sequence[Any]) -> Decision:
    allowed, reason_bytes, retry_ms, limit, remaining = reply
    reason = _REASONS.get(reason_bytes)
    if reason is None:
        raise LimiterUnavailable("the rate limiter's Redis answered something unexpected")
    return Decision(
        allowed=bool(allowed),
        reason=reason,
        retry_after_s=int(retry_ms) / 1000,
        limit=int(limit) or None,
        remaining=int(remaining),
    )
