"""Benchmark: ledger reserve + settle pairs per second, on SQLite and on PostgreSQL.

    python3 -m uv run python e2e/bench/ledger.py [--seconds 5] [--postgres-url URL]
        [--loads closed:1,closed:64,closed:256,open:1500] [--out e2e/bench/results]

What the gateway does per request, without the HTTP: `reserve` a hold, then `settle` it with a
usage record, on one event loop (uvloop, as the gateway runs), for a fixed time: from C
clients back to back (closed:C), or as R requests/s arriving on their own (open:R, each
holding its hold 50 ms, as a request in flight would). Reports
pairs/s, reserve and settle latency, and the CPU the benchmark process spent per pair: the
gateway's share of the ledger's cost, plus the harness's own (about 50-65 µs per pair in
open:R, measured with a no-op ledger); PostgreSQL's own CPU is not in it. SQLite: a file in a
temporary directory (WAL, synchronous=NORMAL). PostgreSQL: --postgres-url, or a throwaway
server with the default durability (fsync on, synchronous_commit on) started with the test
helper. Writes ledger.json and ledger.md. Not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvloop

from teeroute_gateway.ledger import Ledger, UsageRecord, open_ledger

ROOT = Path(__file__).resolve().parents[2]
COST = 1_000


def record(account_id: str, request_id: str) -> UsageRecord:
    return UsageRecord(
        request_id, account_id, "sim-model", "pool-a", "10.0.0.1:8000", "sim-model", 120, 80,
        True, True, COST, 12.5, 3.0, 200, "ok", True, dt.datetime.now(dt.UTC),
    )  # fmt: skip


async def run(url: str, load: str, seconds: float) -> dict[str, float | str]:
    """`load`: "closed:C" (C clients back to back) or "open:R" (R requests/s arriving on
    their own, each reserve -> 50 ms of "inference" -> settle, as the gateway sees them)."""
    ledger = open_ledger(url)
    await ledger.open()
    _, account = await ledger.create_key("bench", 10**18)
    await _closed(ledger, account.id, 1, 0.5, "warm")  # connections, prepared statements
    kind, level = load.split(":")
    drive = _closed if kind == "closed" else _open
    cpu = time.process_time()
    reserves, settles, wall = await drive(ledger, account.id, int(level), seconds, "run")
    cpu = time.process_time() - cpu
    await ledger.close()
    pairs = len(settles)
    return {
        "load": load,
        "pairs": pairs,
        "pairs_per_s": pairs / wall,
        "cpu_us_per_pair": cpu / pairs * 1e6,
        "reserve_p50_ms": _quantile(reserves, 0.5),
        "reserve_p99_ms": _quantile(reserves, 0.99),
        "settle_p50_ms": _quantile(settles, 0.5),
        "settle_p99_ms": _quantile(settles, 0.99),
    }


async def _closed(
    ledger: Ledger, account_id: str, concurrency: int, seconds: float, tag: str
) -> tuple[list[float], list[float], float]:
    reserves: list[float] = []
    settles: list[float] = []
    start = time.perf_counter()
    deadline = start + seconds

    async def client(c: int) -> None:
        n = 0
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            hold = await ledger.reserve(account_id, COST, f"{tag}-{c}-{n}")
            t1 = time.perf_counter()
            await ledger.settle(hold, record(account_id, hold.request_id))
            reserves.append(t1 - t0)
            settles.append(time.perf_counter() - t1)
            n += 1

    await asyncio.gather(*(client(c) for c in range(concurrency)))
    return reserves, settles, time.perf_counter() - start


async def _open(
    ledger: Ledger, account_id: str, rate: int, seconds: float, tag: str
) -> tuple[list[float], list[float], float]:
    reserves: list[float] = []
    settles: list[float] = []

    async def request(n: int) -> None:
        t0 = time.perf_counter()
        hold = await ledger.reserve(account_id, COST, f"{tag}-{n}")
        reserves.append(time.perf_counter() - t0)
        await asyncio.sleep(0.05)
        t1 = time.perf_counter()
        await ledger.settle(hold, record(account_id, hold.request_id))
        settles.append(time.perf_counter() - t1)

    start = time.perf_counter()
    tasks = []
    for n in range(int(rate * seconds)):
        await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
        tasks.append(asyncio.create_task(request(n)))
    await asyncio.gather(*tasks)
    return reserves, settles, time.perf_counter() - start


def _quantile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1e3


@contextmanager
def postgres(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    sys.path.insert(0, str(ROOT))
    from tests.gateway.pg import postgres_server

    with postgres_server(settings={}) as server:  # the defaults: durable commits
        yield server.create_database("bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per backend and concurrency")
    parser.add_argument(
        "--loads",
        default="closed:1,closed:64,closed:256,open:1500",
        help="comma-separated",
    )
    parser.add_argument("--postgres-url", help="an existing database (default: start one)")
    parser.add_argument("--out", type=Path, default=ROOT / "e2e" / "bench" / "results")
    args = parser.parse_args()
    loads = args.loads.split(",")
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch, postgres(args.postgres_url) as pg_url:
        for backend, url in [("sqlite", f"sqlite:///{scratch}/ledger.db"), ("postgres", pg_url)]:
            for load in loads:
                outcome = uvloop.run(run(url, load, args.seconds))
                results.append({"backend": backend, **outcome})
                print(backend, json.dumps(outcome), flush=True)
    write(args.out, results, args.seconds)


def write(out: Path, results: list[dict[str, Any]], seconds: float) -> None:
    facts = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "seconds_per_case": seconds,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "ledger.json").write_text(json.dumps({"facts": facts, "results": results}, indent=2))
    head = (
        "| backend | load | pairs/s | CPU µs/pair (client) | reserve p50/p99 ms "
        "| settle p50/p99 ms |"
    )
    rows = [
        f"| {r['backend']} | {r['load']} | {r['pairs_per_s']:.0f} | "
        f"{r['cpu_us_per_pair']:.0f} | {r['reserve_p50_ms']:.2f} / {r['reserve_p99_ms']:.2f} | "
        f"{r['settle_p50_ms']:.2f} / {r['settle_p99_ms']:.2f} |"
        for r in results
    ]
    table = "\n".join([head, "|---|---|---|---|---|---|", *rows])
    notes = (
        "One process, one event loop (uvloop); a pair is one request's reserve then settle. "
        "Load `closed:C`: C clients back to back; `open:R`: R requests/s arriving on schedule, "
        "each holding its hold for 50 ms (pairs/s is then R at best). SQLite: WAL, "
        "synchronous=NORMAL, a file on local disk. PostgreSQL 15 on the same machine, default "
        "durability (fsync, synchronous_commit on). CPU: the benchmark process only, harness "
        "included (about 50-65 µs per pair in open:R with a no-op ledger). The machine's two "
        "cores are shared with other work, so rerun before comparing."
    )
    (out / "ledger.md").write_text(
        f"# Ledger: reserve + settle pairs per second\n\n{json.dumps(facts)}\n\n{notes}\n\n"
        f"{table}\n"
    )
    print(table)


if __name__ == "__main__":
    main()
