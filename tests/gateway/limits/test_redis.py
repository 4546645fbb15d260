"""The Redis limiter: the same decisions as in-process, shared by OS processes, keys that
expire, and a Redis that is down, hung or restarted."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from teeroute_gateway.limits import (
    Decision,
    LimiterUnavailable,
    Limits,
    MemoryLimiter,
    RateLimiter,
    open_limiter,
)
from teeroute_gateway.limits.scripts import TTL_MS
from teeroute_gateway.limits.window import SLOTS

from ..redis_server import RedisServer, free_port, running_redis
from .conftest import T0, run

HAMMER = Path(__file__).with_name("hammer.py")
SCOPE = "acct-1|default/chat"
KEYS = [f"teeroute:rl:{{{SCOPE}}}:r".encode(), f"teeroute:rl:{{{SCOPE}}}:t".encode()]
TIMEOUT_S = 0.5


def random_ops(seed: int, n: int) -> list[tuple[str, float, str, int]]:
    rng, t, ops = random.Random(seed), T0, []
    for _ in range(n):
        t += rng.expovariate(1 / 0.4)
        op = "tokens" if rng.random() < 0.3 else "admit"
        ops.append((op, t, rng.choice(["a", "b", "c"]), rng.randint(1, 40)))
    return ops


async def replay(limiter: RateLimiter, ops: list[tuple[str, float, str, int]]) -> list[Decision]:
    limits, decisions = Limits(rpm=25, tpm=400), []
    for op, t, scope, tokens in ops:
        if op == "tokens":
            await limiter.record_tokens(scope, limits, tokens, now=t)
        else:
            decisions.append(await limiter.admit(scope, limits, now=t))
    return decisions


def test_redis_decides_as_the_in_process_limiter(redis_url: str) -> None:
    ops = random_ops(seed=5, n=1500)
    in_process = asyncio.run(replay(MemoryLimiter(), ops))
    shared = run(redis_url, lambda limiter: replay(limiter, ops))
    reasons = Counter(d.reason for d in in_process)
    assert min(reasons[""], reasons["requests"], reasons["tokens"]) > 100, reasons
    for a, b in zip(in_process, shared, strict=True):
        assert (a.allowed, a.reason, a.limit, a.remaining) == (
            b.allowed,
            b.reason,
            b.limit,
            b.remaining,
        )
        assert a.retry_after_s - 1e-6 <= b.retry_after_s <= a.retry_after_s + 1e-3


def test_keys_expire_on_their_own_and_stay_small(redis_url: str) -> None:
    limits = Limits(rpm=10**6, tpm=10**9)

    async def body(limiter: RateLimiter) -> None:
        for second in range(300):  # five minutes of injected time, one call each second
            await limiter.admit(SCOPE, limits, now=T0 + second)
            await limiter.record_tokens(SCOPE, limits, 7, now=T0 + second + 0.5)

    run(redis_url, body)
    with redis.Redis.from_url(redis_url) as client:
        assert sorted(client.keys("*")) == KEYS
        for key in KEYS:
            assert 0 < client.pttl(key) <= TTL_MS
            assert client.hlen(key) == SLOTS  # older buckets were deleted, not left to pile up


def test_unlimited_and_tokens_without_tpm_touch_nothing(redis_url: str) -> None:
    async def body(limiter: RateLimiter) -> Decision:
        await limiter.record_tokens(SCOPE, Limits(rpm=5), 100)
        return await limiter.admit(SCOPE, Limits())

    assert run(redis_url, body) == Decision(True)
    with redis.Redis.from_url(redis_url) as client:
        assert client.dbsize() == 0


def test_scripts_are_reloaded_after_a_script_flush(redis_url: str) -> None:
    async def body(limiter: RateLimiter) -> list[bool]:
        first = await limiter.admit(SCOPE, Limits(rpm=2), now=T0)
        with redis.Redis.from_url(redis_url) as client:
            client.script_flush()
        second = await limiter.admit(SCOPE, Limits(rpm=2), now=T0 + 1)
        third = await limiter.admit(SCOPE, Limits(rpm=2), now=T0 + 2)
        return [first.allowed, second.allowed, third.allowed]

    assert run(redis_url, body) == [True, True, False]


def test_the_default_clock_is_the_servers(redis_url: str) -> None:
    async def body(limiter: RateLimiter) -> tuple[Decision, Decision]:
        return await limiter.admit(SCOPE, Limits(rpm=1)), await limiter.admit(SCOPE, Limits(rpm=1))

    first, second = run(redis_url, body)
    assert first.allowed and not second.allowed
    assert 59.9 < second.retry_after_s <= 61.0


def hammer(url: str, scope: str, processes: int, attempts: int, rpm: int) -> list[dict[str, int]]:
    """Start `processes` hammer.py processes, release them together, collect their counts."""
    argv = [sys.executable, str(HAMMER), url, scope, str(attempts), str(rpm)]
    procs = [
        subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
        start = time.time() + 0.2
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(f"{start!r}\n")
            proc.stdin.flush()
        results = []
        for proc in procs:
            out, _ = proc.communicate(timeout=60)
            assert proc.returncode == 0
            results.append(json.loads(out))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_two_processes_together_admit_exactly_rpm(redis_url: str) -> None:
    results = hammer(redis_url, SCOPE, processes=2, attempts=150, rpm=100)
    assert sum(r["allowed"] for r in results) == 100, results
    assert sum(r["denied"] for r in results) == 200, results


def test_two_processes_with_in_process_limiters_each_admit_rpm() -> None:
    """The control for the test above: without a shared store the same harness sees 200."""
    results = hammer("memory", SCOPE, processes=2, attempts=150, rpm=100)
    assert [r["allowed"] for r in results] == [100, 100]


async def expect_unavailable(limiter: RateLimiter) -> list[float]:
    """Each call must raise LimiterUnavailable, and within the timeout: their durations."""
    durations = []
    for call in (
        lambda: limiter.admit(SCOPE, Limits(rpm=5)),
        lambda: limiter.record_tokens(SCOPE, Limits(tpm=5), 10),
    ):
        start = time.monotonic()
        with pytest.raises(LimiterUnavailable):
            await call()
        durations.append(time.monotonic() - start)
    return durations


def test_nothing_listening_raises_at_once() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    assert max(run(url, expect_unavailable, TIMEOUT_S)) < 0.1


@pytest.fixture
def silent_listener() -> Iterator[str]:
    """A port that accepts connections (into the backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"


def test_a_server_that_never_answers_raises_within_the_timeout(silent_listener: str) -> None:
    durations = run(silent_listener, expect_unavailable, TIMEOUT_S)
    assert all(TIMEOUT_S / 4 < d < TIMEOUT_S + 0.1 for d in durations), durations


def test_unlimited_needs_no_redis() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"

    async def body(limiter: RateLimiter) -> Decision:
        return await limiter.admit(SCOPE, Limits())

    assert run(url, body).allowed


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test alone, on a unix socket (same address after a restart)."""
    with running_redis(tmp_path, unix=True) as server:
        yield server


def test_a_hung_redis_raises_within_the_timeout_and_recovers(own_redis: RedisServer) -> None:
    async def body(limiter: RateLimiter) -> tuple[list[float], Decision, Decision]:
        before = await limiter.admit(SCOPE, Limits(rpm=5), now=T0)
        own_redis.pause()
        try:
            durations = await expect_unavailable(limiter)
        finally:
            own_redis.resume()
        after = await limiter.admit(SCOPE, Limits(rpm=5), now=T0 + 1)
        return durations, before, after

    durations, before, after = run(own_redis.url, body, TIMEOUT_S)
    assert all(d < TIMEOUT_S + 0.1 for d in durations), durations
    assert (before.remaining, after.remaining) == (4, 3)


def test_a_restarted_redis_is_used_again(own_redis: RedisServer) -> None:
    async def body(limiter: RateLimiter) -> tuple[list[float], Decision]:
        assert (await limiter.admit(SCOPE, Limits(rpm=5), now=T0)).allowed
        own_redis.stop()
        durations = await expect_unavailable(limiter)
        own_redis.start()  # empty: counts restart from zero, a documented trade
        return durations, await limiter.admit(SCOPE, Limits(rpm=5), now=T0 + 1)

    durations, after = run(own_redis.url, body, TIMEOUT_S)
    assert max(durations) < 0.1, durations
    assert after.allowed and after.remaining == 4


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "postgres://u:secret@db/x", "mem"])
def test_unknown_limiter_urls_are_refused_without_echoing_them(url: str) -> None:
    with pytest.raises(ValueError, match="scheme") as refused:
        open_limiter(url)
    assert "secret" not in str(refused.value)
