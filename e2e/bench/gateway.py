"""Benchmark: teeroute's gateway beside the direct path and LiteLLM's proxy, one core each.

    python3 -m uv run --frozen python e2e/bench/gateway.py [--quick] [--soak-seconds N]
        [--only direct,gateway,litellm] [--out e2e/bench/results]

Starts the engine simulator (unpaced, no TTFT) on loopback and, one after the other, measures
`direct` (the simulator itself), `gateway` (`teeroute gateway serve`, auth + metering +
limits on) and `litellm` (LiteLLM's proxy from PyPI, in its own cached virtualenv, no
database) in front of it: latency added at moderate load (p50/p99), max requests/s,
streamed tokens/s, and RSS over a soak. The target under test runs alone on core 0; the
simulator, wrk and this harness share core 1. Writes gateway.json and gateway.md (goals with
pass/miss, machine facts, versions, pinning). Every request is checked for HTTP 200 (streams
also for `[DONE]`); errors are reported. The helpers live in `gatewaybench/`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any, NoReturn

from gatewaybench import host, litellm, notes, report, scenarios, stats, targets
from gatewaybench.procs import BenchError, Fleet

ROOT = Path(__file__).resolve().parents[2]
TARGETS = ("direct", "gateway", "litellm")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs (about 2 minutes)")
    parser.add_argument("--soak-seconds", type=int, help="gateway soak (default 600; quick 20)")
    parser.add_argument(
        "--litellm-soak-seconds", type=int, help="LiteLLM soak, 0 = none (default 120; quick 20)"
    )
    parser.add_argument("--only", default=",".join(TARGETS), help="comma-separated targets")
    parser.add_argument("--out", type=Path, default=ROOT / "e2e" / "bench" / "results")
    args = parser.parse_args()
    asked = set(args.only.split(","))
    if asked - set(TARGETS) or not asked:
        parser.error(f"--only takes some of {','.join(TARGETS)}")
    args.only = [t for t in TARGETS if t in asked]
    return args


def plan_cores() -> tuple[int | None, int | None, str]:
    """(core of the target, core of simulator + wrk + harness, how it was said)."""
    cores = host.two_cores()
    if isinstance(cores, str):
        return None, None, cores
    target, load = cores
    said = (
        f"the target under test (gateway, LiteLLM's proxy; for `direct` nothing) alone on core "
        f"{target} (`taskset -c {target}`); the simulator, wrk (1 thread) and this harness on "
        f"core {load}"
    )
    return target, load, said


def versions(selected: list[str]) -> dict[str, str | None]:
    commit, dirty = host.commit(ROOT)
    found: dict[str, str | None] = {
        "teeroute": f"{commit}{' (uncommitted changes)' if dirty else ''}",
        "uvicorn": version("uvicorn"),
        "uvloop": version("uvloop"),
        "httptools": version("httptools"),
        "wrk": host.wrk_version(),
    }
    if "litellm" in selected:
        venv = litellm.venv_dir()
        found["litellm"] = litellm.installed_version(venv, "litellm")
        found["litellm's uvicorn"] = litellm.installed_version(venv, "uvicorn")
        found["litellm's httptools"] = litellm.installed_version(venv, "httptools")
    return found


def measure_target(
    name: str, fleet: Fleet, direct: targets.Target, work: Path, args: argparse.Namespace
) -> dict[str, Any]:
    core, load_core, profile = args.target_core, args.load_core, args.profile
    if name == "direct":
        result = {"available": True, **scenarios.run_all(direct, profile, work, load_core)}
        return result | {"errors": stats.errors(result)}
    if name == "gateway":
        target = targets.start_gateway(fleet, work, direct.url, core)
        soak_s = args.soak_seconds
    else:
        target = targets.start_litellm(fleet, work, direct.url, core)
        soak_s = args.litellm_soak_seconds
    print(f"  {name} ready (pid {target.service.pid}); measuring", flush=True)
    result = {"available": True, **scenarios.run_all(target, profile, work, load_core)}
    if soak_s > 0:
        print(f"  {name}: soak for {soak_s} s", flush=True)
        result["soak"] = scenarios.soak(target, soak_s, profile.sample_every_s, work, load_core)
    return result | {"errors": stats.errors(result)}


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    if "gateway" in args.only and (reason := targets.gateway_unavailable()):
        results["gateway"] = {"available": False, "reason": f"not available: {reason}"}
    if "litellm" in args.only:
        print(f"LiteLLM {litellm.VERSION}: {litellm.install()}", flush=True)
    with Fleet(work) as fleet:
        direct = targets.start_simulator(fleet, args.load_core)
        for name in args.only:
            if name in results:
                continue
            print(f"{name}: starting", flush=True)
            before = len(fleet.services)
            try:
                results[name] = measure_target(name, fleet, direct, work, args)
            except BenchError as exc:
                results[name] = {"available": False, "reason": f"failed: {exc}"}
                print(f"  {name}: {exc}", file=sys.stderr, flush=True)
            finally:  # the next target gets core 0 to itself, even after a failure
                fleet.stop_newer_than(before)
    return {name: results[name] for name in args.only}


def _terminate(signum: int, frame: object) -> NoReturn:
    raise SystemExit(128 + signum)  # unwinds through Fleet, which stops every process


def main() -> int:
    args = parse_args()
    args.profile = scenarios.QUICK if args.quick else scenarios.FULL
    args.soak_seconds = args.soak_seconds if args.soak_seconds is not None else args.profile.soak_s
    if args.litellm_soak_seconds is None:
        args.litellm_soak_seconds = args.profile.litellm_soak_s
    args.target_core, args.load_core, pinning = plan_cores()
    if args.load_core is not None:
        os.sched_setaffinity(0, {args.load_core})
    signal.signal(signal.SIGTERM, _terminate)
    facts = host.machine()
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    with tempfile.TemporaryDirectory(prefix="teeroute-gwbench-") as tmp:
        results = run(args, Path(tmp))
    facts["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    direct = results.get("direct", {})
    for name in ("gateway", "litellm"):
        if results.get(name, {}).get("available"):
            result = results[name]
            result["added"] = stats.added(direct.get("moderate"), result["moderate"])
            other = notes.other_tenants(result["throughput"], args.target_core)
            result["throughput"]["other_on_core"] = (
                round(max(other, 0.0), 3) if other is not None else None
            )
    doc = {
        "benchmark": "gateway",
        "when": started,
        "profile": args.profile.name,
        "command": "python3 -m uv run --frozen python e2e/bench/gateway.py "
        + " ".join(sys.argv[1:]),
        "machine": facts,
        "versions": versions(args.only),
        "pinning": pinning,
        "setup_notes": notes.setup(args.profile.sample_every_s),
        "results": results,
        "checks": stats.verdicts(results, [t for t in ("gateway", "litellm") if t in args.only]),
        "notes": notes.observations(
            results,
            cores=(args.target_core, args.load_core),
            quick=args.quick,
            gateway_soak_s=args.soak_seconds if "gateway" in args.only else None,
        ),
    }
    json_path, md_path = report.write(args.out, doc)
    print(report.render(doc))
    print(f"wrote {json_path} and {md_path}")
    complete = all(r.get("available") and not stats.errors(r) for r in results.values())
    return 0 if complete else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: every started process was stopped", file=sys.stderr)
        sys.exit(130)
