"""Run as a separate OS process by test_redis.py: admit as fast as possible for one scope.

    python hammer.py URL SCOPE ATTEMPTS RPM

Opens the limiter and makes one call (connection and script loaded), prints "ready", reads
a start time (time.time() seconds) from stdin and sleeps until then, so that every process
starts at the same instant, then makes ATTEMPTS admits, 8 at a time, and prints
{"allowed": n, "denied": m}.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from teeroute_gateway.limits import Limits, open_limiter

CONCURRENCY = 8


async def main(url: str, scope: str, attempts: int, rpm: int) -> dict[str, int]:
    limiter = open_limiter(url, timeout_s=5.0)
    limits = Limits(rpm=rpm)
    await limiter.admit(f"{scope}-warmup", Limits(rpm=10**6))
    print("ready", flush=True)
    start = float(await asyncio.to_thread(sys.stdin.readline))
    await asyncio.sleep(max(0.0, start - time.time()))
    counts = {"allowed": 0, "denied": 0}

    async def worker(n: int) -> None:
        for _ in range(n):
            decision = await limiter.admit(scope, limits)
            counts["allowed" if decision.allowed else "denied"] += 1

    share, extra = divmod(attempts, CONCURRENCY)
    await asyncio.gather(*(worker(share + (i < extra)) for i in range(CONCURRENCY)))
    await limiter.close()
    return counts


if __name__ == "__main__":
    url, scope, attempts, rpm = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    print(json.dumps(asyncio.run(main(url, scope, attempts, rpm))), flush=True)
