"""Benchmark: the cost of one attestation sweep over 1,000 endpoints.

    python3 -m uv run python e2e/bench/sweep.py [--endpoints 1000] [--agents 4]
        [--concurrency 32] [--rounds 3] [--out e2e/bench/results]

Starts real enclave agents (simulated TEE, each with its own chip) on loopback and runs the
operator's own challenge path against them — fresh nonce, HTTP challenge, document parse,
nonce redemption, full verification (chain, signature, policy, binding, age), lease
decision — for N endpoints spread over the agents, with the operator's concurrency bound.
Then builds the EndpointSlice for the N admitted endpoints. Reports wall time per sweep,
the operator process's CPU time per sweep and per endpoint, and challenge latency.

Not measured here: the Kubernetes writes of a sweep (one annotation patch per endpoint
whose verdict changed, one slice apply); they depend on the apiserver, not on us.
Writes sweep.json and sweep.md. Not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization

from teeroute import admission
from teeroute.attestation import simulated
from teeroute.attestation.evidence import Trust
from teeroute.attestation.policy import Policy
from teeroute_operator.challenge import Judge, Target, challenge
from teeroute_operator.lease import Record, Verified, next_record
from teeroute_operator.metrics import Metrics
from teeroute_operator.nonces import NonceBook

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_agents(
    count: int, directory: Path
) -> tuple[list[subprocess.Popen[bytes]], list[str], bytes]:
    now = dt.datetime.now(dt.UTC)
    root, root_key = simulated.new_root(now)
    procs, urls = [], []
    for i in range(count):
        node = f"bench-{i}"
        chip, key = simulated.issue_chip(root, root_key, node, now)
        (directory / f"{node}.crt").write_bytes(chip.public_bytes(serialization.Encoding.PEM))
        (directory / f"{node}.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        port = free_port()
        env = {
            **os.environ,
            "TEEROUTE_TEE": "simulated",
            "TEEROUTE_AGENT_PORT": str(port),
            "TEEROUTE_SIMULATED_DIR": str(directory),
            "TEEROUTE_SIMULATED_OVERRIDE_FILE": str(directory / "no-override"),
            "NODE_NAME": node,
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "teeroute_enclave"], env=env, stderr=subprocess.DEVNULL
            )
        )
        urls.append(f"http://127.0.0.1:{port}")
    for url in urls:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(url + "/healthz", timeout=1).read()  # noqa: S310 - loopback
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    return procs, urls, root.public_bytes(serialization.Encoding.PEM)


async def one_sweep(
    targets: list[Target],
    judge: Judge,
    records: dict[str, Record],
    concurrency: int,
) -> dict[str, Any]:
    book = NonceBook(dt.timedelta(seconds=10))
    metrics = Metrics()
    slots = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    def clock() -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    async with httpx.AsyncClient(
        timeout=5.0,
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=0),
        trust_env=False,
    ) as client:

        async def run(target: Target) -> bool:
            async with slots:
                started = time.perf_counter()
                outcome = await challenge(client, target, judge, book, metrics, clock)
                latencies.append(time.perf_counter() - started)
            transition = next_record(
                records.get(target.key, Record()),
                outcome,
                now=clock(),
                max_age=dt.timedelta(minutes=5),
            )
            records[target.key] = transition.record
            return isinstance(outcome, Verified)

        wall0, cpu0 = time.perf_counter(), time.process_time()
        verified = sum(await asyncio.gather(*(run(t) for t in targets)))
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0

    now = clock()
    slice0 = time.perf_counter()
    endpoints = [
        admission.AdmittedEndpoint(
            f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", 8443, r.expires_at, pod=k
        )
        for i, (k, r) in enumerate(sorted(records.items()))
        if r.admitted(now) and r.expires_at is not None
    ]
    built = admission.build_slice(namespace="m", pool="p", port=8443, endpoints=endpoints)
    slice_s = time.perf_counter() - slice0
    latencies.sort()
    return {
        "endpoints": len(targets),
        "verified": verified,
        "wall_s": round(wall, 3),
        "operator_cpu_s": round(cpu, 3),
        "operator_cpu_ms_per_endpoint": round(cpu * 1000 / len(targets), 3),
        "challenge_p50_ms": round(statistics.median(latencies) * 1000, 2),
        "challenge_p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
        "slice_build_ms": round(slice_s * 1000, 2),
        "slice_bytes": len(json.dumps(built)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoints", type=int, default=1000)
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "e2e" / "bench" / "results")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        procs, urls, root_pem = start_agents(args.agents, Path(tmp))
        try:
            judge = Judge(
                policy=Policy(
                    allowed_tee=frozenset({"simulated"}), max_age=dt.timedelta(minutes=5)
                ),
                trust=Trust(simulated_root_pem=root_pem),
                require_gpu=False,
            )
            targets = [
                Target(key=f"endpoint-{i:05d}", url=urls[i % len(urls)])
                for i in range(args.endpoints)
            ]
            records: dict[str, Record] = {}
            rounds = [
                asyncio.run(one_sweep(targets, judge, records, args.concurrency))
                for _ in range(args.rounds)
            ]
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait()
    result = {
        "benchmark": "attestation sweep",
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "agents": args.agents,
        "concurrency": args.concurrency,
        "rounds": rounds,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sweep.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "sweep.md").write_text(markdown(result))
    print(markdown(result))


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# Attestation sweep ({result['when']})",
        "",
        f"{result['machine']['cpus']} CPUs, Python {result['machine']['python']}; "
        f"{result['agents']} simulated-TEE agents on loopback, concurrency "
        f"{result['concurrency']}. Operator side: nonce, HTTP challenge, parse, verify, "
        "lease decision; then the EndpointSlice for every admitted endpoint. Agents run on "
        "the same machine and compete for its cores.",
        "",
        "| round | endpoints | verified | wall s | operator CPU s | CPU ms/endpoint "
        "| challenge p50 ms | p99 ms | slice build ms | slice bytes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(result["rounds"], 1):
        lines.append(
            f"| {i} | {r['endpoints']} | {r['verified']} | {r['wall_s']} | {r['operator_cpu_s']} "
            f"| {r['operator_cpu_ms_per_endpoint']} | {r['challenge_p50_ms']} "
            f"| {r['challenge_p99_ms']} | {r['slice_build_ms']} | {r['slice_bytes']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
