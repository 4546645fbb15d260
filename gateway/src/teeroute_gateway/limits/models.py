"""The rate limiter's contract: what the gateway core passes in and gets back.

The gateway builds `Limits` from a Route's `spec.rateLimits`, asks a `RateLimiter` to
`admit` each request under a scope (`"<account_id>|<namespace>/<route>"`), answers 429 with
`Retry-After` when the `Decision` says no, and after the response calls `record_tokens` with
the tokens the request actually used. `open_limiter` (factory.py) picks the implementation.

    TeerouteError
    └── LimiterUnavailable   the shared store (Redis) did not answer in time: the gateway
                             answers 503 rather than admitting unmetered traffic
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

from teeroute.errors import TeerouteError

Reason = Literal["", "requests", "tokens"]


class LimiterUnavailable(TeerouteError):
    """The limiter's store cannot be reached or did not answer within its timeout."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-scope limits over a sliding minute; None means unlimited."""

    rpm: int | None = None
    """Requests per minute."""
    tpm: int | None = None
    """Tokens (input + output) per minute, counted when a request completes."""

    def __post_init__(self) -> None:
        # Zero or negative would deny forever with no meaningful Retry-After; the API
        # already refuses them (RateLimits fields are ge=1), so this only catches bugs.
        for name, value in (("rpm", self.rpm), ("tpm", self.tpm)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 or None, not {value}")

    @property
    def unlimited(self) -> bool:
        return self.rpm is None and self.tpm is None


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: Reason = ""
    """Why it was denied: "requests" (rpm) or "tokens" (tpm); "" when allowed."""
    retry_after_s: float = 0.0
    """When denied: an upper bound on the seconds until a request would be admitted (if
    nothing else is admitted or recorded meanwhile)."""
    limit: int | None = None
    """The limit that denied; when allowed, rpm if set, else tpm; None when unlimited."""
    remaining: int | None = None
    """What is left of `limit` in the window after this decision (0 when denied)."""


ALLOWED = Decision(allowed=True)
"""The decision for unlimited scopes (shared: decisions are immutable)."""


class RateLimiter(ABC):
    """Counts requests and tokens per scope over a sliding 60-second window.

    Implementations: `MemoryLimiter` (one gateway process) and `RedisLimiter` (several
    replicas sharing one Redis). Both use the same bucketed window; see window.py.
    """

    @abstractmethod
    async def admit(self, scope: str, limits: Limits, now: float | None = None) -> Decision:
        """Decide on one request; counts it against rpm only when allowed.

        Denied when the requests counted in the window reach rpm, or the tokens recorded in
        it reach tpm. Unlimited limits are allowed without any I/O. `now` (seconds) is for
        tests; by default the implementation's own clock is used.
        """

    @abstractmethod
    async def record_tokens(
        self, scope: str, limits: Limits, tokens: int, now: float | None = None
    ) -> None:
        """Count a completed request's input + output tokens against tpm (no-op without tpm)."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections; the limiter is not used afterwards."""
