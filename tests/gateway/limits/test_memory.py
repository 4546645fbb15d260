"""The in-process limiter: eviction of idle scopes, the window's error bound against an
exact sliding log, and what a Ring does at its edges."""

from __future__ import annotations

import asyncio
import bisect
import random

import pytest

from teeroute_gateway.limits import Limits, MemoryLimiter
from teeroute_gateway.limits.window import BUCKET_S, SLOTS, Ring

from .conftest import T0

LIMITS = Limits(rpm=10)


def test_idle_scopes_are_evicted_after_a_whole_window() -> None:
    async def body() -> list[int]:
        limiter = MemoryLimiter()
        for i in range(100):
            await limiter.admit(f"s{i}", LIMITS, now=T0 + 0.5)
        sizes = [len(limiter)]
        await limiter.admit("s0", LIMITS, now=T0 + 60.5)  # bucket 0 still counts
        sizes.append(len(limiter))
        await limiter.admit("fresh", LIMITS, now=T0 + 61.0)  # bucket 0 has left
        sizes.append(len(limiter))
        await limiter.record_tokens("s1", Limits(tpm=5), 3, now=T0 + 200.0)
        sizes.append(len(limiter))
        return sizes

    assert asyncio.run(body()) == [100, 100, 2, 1]


def test_an_evicted_scope_starts_again_from_zero_as_if_kept() -> None:
    async def body() -> tuple[int | None, int | None]:
        limiter = MemoryLimiter()
        for _ in range(10):
            await limiter.admit("a", LIMITS, now=T0)
        await limiter.admit("b", LIMITS, now=T0 + 61.0)  # evicts "a"
        assert len(limiter) == 1
        again = await limiter.admit("a", LIMITS, now=T0 + 61.0)
        return again.limit, again.remaining

    assert asyncio.run(body()) == (10, 9)


def test_unlimited_scopes_hold_no_state() -> None:
    async def body() -> int:
        limiter = MemoryLimiter()
        for i in range(10):
            await limiter.admit(f"s{i}", Limits(), now=T0)
            await limiter.record_tokens(f"s{i}", Limits(rpm=5), 100, now=T0)
        return len(limiter)

    assert asyncio.run(body()) == 0


def exact_wait(log: list[tuple[float, int]], now: float, limit: int) -> float:
    """The wait an exact 60-second log would give: until what is left is below `limit`."""
    live = [(t, n) for t, n in log if t > now - 60]
    total = sum(n for _, n in live)
    for t, n in live:
        if total < limit:
            break
        total -= n
        if total < limit:
            return t + 60 - now
    return 0.0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_never_more_than_rpm_in_any_minute_and_waits_within_a_bucket_of_exact(
    seed: int,
) -> None:
    rng = random.Random(seed)
    rpm = 20

    async def body() -> list[float]:
        limiter, admitted, t = MemoryLimiter(), list[float](), T0
        for _ in range(4000):
            t += rng.expovariate(1 / 1.5)  # 40 a minute against 20: about half denied
            decision = await limiter.admit("a", Limits(rpm=rpm), now=t)
            if decision.allowed:
                admitted.append(t)
                continue
            exact = exact_wait([(a, 1) for a in admitted[-rpm - 5 :]], t, rpm)
            assert exact - 1e-9 <= decision.retry_after_s <= exact + BUCKET_S + 1e-9
        return admitted

    admitted = asyncio.run(body())
    assert len(admitted) > 1000
    for i, start in enumerate(admitted):
        in_minute = bisect.bisect_left(admitted, start + 60) - i
        assert in_minute <= rpm, f"{in_minute} admitted in the minute from {start - T0}"


def test_token_waits_within_a_bucket_of_exact() -> None:
    rng = random.Random(9)
    tpm = 1000

    async def body() -> int:
        limiter, log, t, denied = MemoryLimiter(), list[tuple[float, int]](), T0, 0
        for _ in range(3000):
            t += rng.expovariate(1 / 2.0)
            decision = await limiter.admit("a", Limits(tpm=tpm), now=t)
            if decision.allowed:
                tokens = rng.randint(1, 200)
                log.append((t, tokens))
                await limiter.record_tokens("a", Limits(tpm=tpm), tokens, now=t)
                continue
            denied += 1
            exact = exact_wait(log[-200:], t, tpm)
            assert exact - 1e-9 <= decision.retry_after_s <= exact + BUCKET_S + 1e-9
        return denied

    assert asyncio.run(body()) > 300


def test_a_ring_forgets_everything_after_a_window_of_silence() -> None:
    ring = Ring(100)
    ring.add(5)
    ring.advance(100 + SLOTS - 1)
    assert ring.total == 5
    ring.advance(100 + SLOTS)
    assert (ring.total, sum(ring.counts)) == (0, 0)
    ring.add(2)
    ring.advance(100 + 10 * SLOTS)
    assert (ring.total, sum(ring.counts)) == (0, 0)


def test_a_ring_does_not_move_back() -> None:
    ring = Ring(100)
    ring.advance(90)
    ring.add(1)
    assert ring.head == 100
    assert ring.retry_after(1, now=95.0) == (100 + SLOTS) * BUCKET_S - 95.0


@pytest.mark.parametrize("field", ["rpm", "tpm"])
@pytest.mark.parametrize("value", [0, -1])
def test_limits_below_one_are_refused(field: str, value: int) -> None:
    with pytest.raises(ValueError, match=field):
        Limits(**{field: value})


def test_the_default_clock_is_monotonic_seconds() -> None:
    async def body() -> float:
        limiter = MemoryLimiter()
        await limiter.admit("a", Limits(rpm=1))
        return (await limiter.admit("a", Limits(rpm=1))).retry_after_s

    assert 59.9 < asyncio.run(body()) <= 61.0
