"""Benchmark: attestation verifications per second for each TEE type (one core).

    python3 -m uv run python e2e/bench/attestation.py [--seconds 5] [--out e2e/bench/results]

Verifies the shared real vectors (SEV-SNP, TDX with collateral, NVIDIA H100) and a
simulated-TEE report end to end — parse, chain, signatures, policy — as the sweeper does
for each endpoint, in a loop for a fixed time per type. Writes attestation.json and
attestation.md (machine facts included). Not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding

from teeroute.attestation import nvidia, simulated, snp, tdx
from teeroute.attestation.policy import Challenge, Policy, bind

ROOT = Path(__file__).resolve().parents[2]
VECTORS = Path(os.environ.get("TEEROUTE_VECTORS", ROOT.parent / "shared" / "vectors"))


def cases() -> dict[str, Callable[[], bool]]:
    s, t, n = VECTORS / "sev-snp", VECTORS / "tdx", VECTORS / "nvidia"
    report, vcek = (s / "report-milan.bin").read_bytes(), (s / "vcek-milan.der").read_bytes()
    quote = (t / "quote-v4-spr-e4.dat").read_bytes()
    collateral = tdx.Collateral.from_files(
        None,
        (t / "qeidentity-response.json").read_bytes(),
        (t / "root-crl.der").read_bytes(),
        (t / "pck-crl.der").read_bytes(),
    )
    gpu = bytes.fromhex((n / "hopper-attestation-report.hex").read_text().strip())
    gpu_chain = (n / "hopper-cert-chain.pem").read_bytes()
    now_sim = dt.datetime.now(dt.UTC)
    root, root_key = simulated.new_root(now_sim)
    chip, chip_key = simulated.issue_chip(root, root_key, "bench", now_sim)
    challenge = Challenge(os.urandom(32), now_sim, os.urandom(32), os.urandom(32))
    sim_report = simulated.make_report(
        chip_key,
        measurement=bytes(48),
        report_data=bind(challenge.nonce, challenge.hpke_public, challenge.signing_public),
    )
    chip_pem, root_pem = chip.public_bytes(Encoding.PEM), root.public_bytes(Encoding.PEM)
    allow_sim = Policy(allowed_tee=frozenset({"simulated"}), max_age=dt.timedelta(minutes=5))
    at = {
        "snp": dt.datetime(2025, 6, 1, tzinfo=dt.UTC),
        "tdx": dt.datetime(2023, 6, 20, tzinfo=dt.UTC),
    }
    return {
        "sev-snp": lambda: snp.verify(report, vcek, now=at["snp"]).ok,
        "tdx": lambda: tdx.verify(quote, now=at["tdx"], collateral=collateral).ok,
        "nvidia-hopper": lambda: nvidia.verify(gpu, gpu_chain, now=at["snp"]).ok,
        "simulated": lambda: (
            simulated.verify(
                sim_report, chip_pem, root_pem, now=now_sim, policy=allow_sim, challenge=challenge
            ).ok
        ),
    }


def measure(fn: Callable[[], bool], seconds: float) -> dict[str, float]:
    if not fn():
        raise SystemExit("a benchmark case did not verify: fix that before timing it")
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    samples.sort()
    return {
        "verifications": len(samples),
        "per_second": len(samples) / sum(samples),
        "p50_ms": statistics.median(samples) * 1e3,
        "p99_ms": samples[int(len(samples) * 0.99) - 1] * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per TEE type")
    parser.add_argument("--out", type=Path, default=ROOT / "e2e" / "bench" / "results")
    args = parser.parse_args()
    results = {name: measure(fn, args.seconds) for name, fn in cases().items()}
    facts = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "seconds_per_type": args.seconds,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "attestation.json").write_text(
        json.dumps({"facts": facts, "results": results}, indent=2)
    )
    rows = [
        f"| {name} | {r['per_second']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} |"
        for name, r in results.items()
    ]
    table = "\n".join(
        ["| TEE | verifications/s (1 core) | p50 ms | p99 ms |", "|---|---|---|---|", *rows]
    )
    (args.out / "attestation.md").write_text(
        f"# Attestation verification\n\n{json.dumps(facts)}\n\n{table}\n"
    )
    print(table)


if __name__ == "__main__":
    main()
