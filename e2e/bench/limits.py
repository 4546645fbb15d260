"""Benchmark: rate limiter admits per second, in-process and over Redis on loopback.

    python3 -m uv run python e2e/bench/limits.py [--seconds 3] [--redis URL] [--out DIR]

In-process: one hot scope, 10,000 scopes in turn, a saturated scope (every admit denied and
its wait computed) and record_tokens, each a loop of awaits on the real clock in one
coroutine. Redis: a redis-server started for the run (tests/gateway/redis_server.py) unless
--redis is given, over TCP and a unix socket, with 1 and 32 admits in flight. On uvloop
(as the gateway under uvicorn) unless --loop asyncio. Writes
limits.json and limits.md (machine facts included). Not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path

import uvloop

from teeroute_gateway.limits import Limits, MemoryLimiter, RateLimiter, open_limiter

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.gateway.redis_server import running_redis  # noqa: E402 - after the path

Call = Callable[[int], Awaitable[object]]
BIG = Limits(rpm=10**9, tpm=10**12)


async def timed(call: Call, seconds: float, in_flight: int) -> dict[str, float]:
    """Run `call(i)` with `in_flight` concurrent loops for `seconds`; per-call latencies."""
    samples: list[float] = []
    deadline = time.perf_counter() + seconds

    async def loop(offset: int) -> None:
        i = offset
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            for _ in range(100 if in_flight == 1 else 1):
                await call(i)
                i += in_flight
            samples.append((time.perf_counter() - start) / (100 if in_flight == 1 else 1))

    start = time.perf_counter()
    await asyncio.gather(*(loop(k) for k in range(in_flight)))
    elapsed = time.perf_counter() - start
    samples.sort()
    calls = len(samples) * (100 if in_flight == 1 else 1)
    return {
        "calls": calls,
        "per_second": calls / elapsed,
        "p50_us": statistics.median(samples) * 1e6,
        "p99_us": samples[int(len(samples) * 0.99) - 1] * 1e6,
    }


def memory_cases() -> dict[str, tuple[RateLimiter, Call]]:
    hot, many, full, tokens = (MemoryLimiter() for _ in range(4))
    scopes = [f"acct-{i}|default/chat" for i in range(10_000)]
    return {
        "memory: one scope, allowed": (hot, lambda i: hot.admit("a|ns/r", BIG)),
        "memory: 10,000 scopes, allowed": (many, lambda i: many.admit(scopes[i % 10_000], BIG)),
        "memory: one scope, denied": (full, lambda i: full.admit("a|ns/r", Limits(rpm=60))),
        "memory: record_tokens": (tokens, lambda i: tokens.record_tokens("a|ns/r", BIG, 100)),
    }


def redis_cases(url: str, label: str) -> dict[str, tuple[RateLimiter, Call, int]]:
    limiter = open_limiter(url, timeout_s=2.0)
    scopes = [f"acct-{i}|default/chat" for i in range(10_000)]
    return {
        f"redis {label}: 1 in flight": (
            limiter,
            lambda i: limiter.admit(scopes[i % 10_000], BIG),
            1,
        ),
        f"redis {label}: 32 in flight": (
            limiter,
            lambda i: limiter.admit(scopes[i % 10_000], BIG),
            32,
        ),
    }


async def run_all(seconds: float, urls: dict[str, str]) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    for name, (_, call) in memory_cases().items():
        results[name] = await timed(call, seconds, 1)
    for label, url in urls.items():
        for name, (limiter, call, in_flight) in redis_cases(url, label).items():
            await call(0)  # connect and load the script before timing
            results[name] = await timed(call, seconds, in_flight)
            await limiter.close()
    return results


def write(out: Path, facts: dict[str, object], results: dict[str, dict[str, float]]) -> str:
    out.mkdir(parents=True, exist_ok=True)
    (out / "limits.json").write_text(json.dumps({"facts": facts, "results": results}, indent=2))
    rows = [
        f"| {name} | {r['per_second']:,.0f} | {r['p50_us']:.1f} | {r['p99_us']:.1f} |"
        for name, r in results.items()
    ]
    table = "\n".join(
        ["| case | calls/s (one coroutine loop) | p50 µs | p99 µs |", "|---|---|---|---|", *rows]
    )
    (out / "limits.md").write_text(f"# Rate limiter\n\n{json.dumps(facts)}\n\n{table}\n")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per case")
    parser.add_argument("--redis", help="an existing Redis URL (default: start one)")
    parser.add_argument(
        "--loop", choices=["uvloop", "asyncio"], default="uvloop", help="uvloop: as the gateway"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "e2e" / "bench" / "results")
    args = parser.parse_args()
    with ExitStack() as stack:
        if args.redis:
            urls = {"given": args.redis}
        else:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            (tmp / "tcp").mkdir()
            (tmp / "unix").mkdir()
            tcp = stack.enter_context(running_redis(tmp / "tcp"))
            unix = stack.enter_context(running_redis(tmp / "unix", unix=True))
            urls = {"tcp loopback": tcp.url, "unix socket": unix.url}
        runner = uvloop.run if args.loop == "uvloop" else asyncio.run
        results = runner(run_all(args.seconds, urls))
    facts = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),  # a shared machine: context
        "seconds_per_case": args.seconds,
        "redis_server": "started here" if not args.redis else "given",
        "event_loop": args.loop,
        "note": "p50/p99 of 1-in-flight cases are over batches of 100 calls",
    }
    print(write(args.out, facts, results))


if __name__ == "__main__":
    main()
