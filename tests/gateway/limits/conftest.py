"""Fixtures for the rate limiter tests: a session Redis, and each behaviour test run twice,
against the in-process limiter and against Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pytest
import redis

from teeroute_gateway.limits import RateLimiter, open_limiter

from ..redis_server import RedisServer, running_redis

T = TypeVar("T")
T0 = 1_700_000_000.0
"""An injected clock near today's epoch (so floats carry what the real clock carries), on a
bucket boundary so expected waits are round numbers."""


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session Redis, emptied for this test."""
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushdb()
    return redis_server.url


@pytest.fixture(params=["memory", "redis"])
def limiter_url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory"
    url: str = request.getfixturevalue("redis_url")
    return url


def run(url: str, body: Callable[[RateLimiter], Awaitable[T]], timeout_s: float = 0.5) -> T:
    """Open a limiter on `url`, run `body` with it in a fresh event loop, close it."""

    async def main() -> T:
        limiter = open_limiter(url, timeout_s=timeout_s)
        try:
            return await body(limiter)
        finally:
            await limiter.close()

    return asyncio.run(main())
