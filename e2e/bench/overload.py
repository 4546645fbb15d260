"""Benchmark: the gateway at 1x and 10x its capacity, after the load drops, and under slowloris.

    python3 -m uv run --frozen python e2e/bench/overload.py [--phase-seconds 15]
        [--out e2e/bench/results]

One gateway (`teeroute gateway serve`, one worker, SQLite ledger, `maxInFlight` 64,
`maxQueued` 64, `queueTimeoutS` 1, `bodyReadTimeoutS` 10, every other limit at its default)
in front of the engine simulator answering after 100 ms (a miner's time to first token).
Phases, one after another:

- capacity: wrk with as many connections as the gateway admits at once (64): its throughput
  of 200s is the capacity; 1x: the same again, measured; 10x: ten times the connections (640),
  each sending its next request as soon as it has an answer (Retry-After ignored: the worst
  clients);
- recovery: wrk stops; how long until the gateway answers normally again;
- slowloris: 400 connections trickling a request head one byte a second and 100 trickling a
  body, reconnecting whenever cut off, while wrk sends the 1x load.

Throughout, a probe sends one request every 100 ms (its 200s give the latency of admitted
requests per phase) and the gateway's RSS is sampled every 250 ms. wrk counts statuses and
503s without Retry-After. The gateway runs alone on core 0; wrk, the simulator, the probe,
the slow clients and this harness share core 1. Writes overload.json and overload.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from gatewaybench import host
from gatewaybench.procs import Fleet, free_port, wait_ready
from gatewaybench.targets import create_key, teeroute_cli
from overloadbench.load import Samples, probe, sample_rss, slowloris, wrk
from overloadbench.report import markdown, recovery_s, verdicts, window

ROOT = Path(__file__).resolve().parents[2]
SLOTS = 64  # maxInFlight of the gateway under test
SETTINGS = {"maxInFlight": SLOTS, "maxQueued": SLOTS, "queueTimeoutS": 1, "bodyReadTimeoutS": 10}


def config(upstream: str) -> str:
    spec = {"ledger": "sqlite:///ledger.db", "allowUnattested": True, **SETTINGS}
    return f"""\
apiVersion: teeroute.dev/v1alpha1
kind: GatewayConfig
spec: {json.dumps(spec)}
---
apiVersion: teeroute.dev/v1alpha1
kind: MinerPool
metadata: {{name: sim, namespace: default}}
spec:
  models: [{{name: sim-model, contextLength: 8192}}]
  tee: {{type: simulated}}
  pricing: {{inputPerMillion: "0.10", outputPerMillion: "0.20"}}
  endpoints: [{{name: sim-0, url: "{upstream}"}}]
---
apiVersion: teeroute.dev/v1alpha1
kind: Route
metadata: {{name: sim, namespace: default}}
spec:
  model: sim-model
  backends: [{{pool: sim}}]
  constraints: {{allowedTee: [simulated]}}
  rateLimits: {{requestsPerMinute: 100000000, tokensPerMinute: 1000000000}}
"""


def start(
    fleet: Fleet, workdir: Path, cores: tuple[int | None, int | None]
) -> tuple[str, str, int]:
    """(gateway URL, API key, gateway pid)."""
    sim_port, gw_port = free_port(), free_port()
    sim = [sys.executable, "-m", "teeroute_engine_sim", "--port", str(sim_port)]
    simulator = fleet.start("simulator", [*sim, "--ttft-ms", "100"], core=cores[1])
    wait_ready(simulator, f"http://127.0.0.1:{sim_port}/health", 30)
    path = workdir / "gateway.yaml"
    path.write_text(config(f"http://127.0.0.1:{sim_port}"))
    key = create_key(path)
    argv = [*teeroute_cli(), "gateway", "serve", "--config", str(path), "--port", str(gw_port)]
    gw = fleet.start("gateway", argv, core=cores[0], cwd=workdir)
    url = f"http://127.0.0.1:{gw_port}"
    wait_ready(gw, url + "/readyz", 60)
    return url, key, gw.pid


def slowloris_phase(url: str, key: str, core: int | None, seconds: float) -> dict[str, Any]:
    """The 1x load measured while 400 slow heads and 100 slow bodies keep coming."""
    attack: dict[str, Any] = {}
    attacker = threading.Thread(
        target=lambda: attack.update(slowloris(url, key, 400, 100, seconds + 10)), daemon=True
    )
    attacker.start()
    time.sleep(3)  # the slow connections are open before the measured load starts
    measured = wrk(url, key, SLOTS, seconds, core)
    attacker.join()
    return {"wrk": measured, "attack": attack}


def run_phases(url: str, key: str, pid: int, core: int | None, seconds: float) -> dict[str, Any]:
    samples = Samples()
    threads = [
        threading.Thread(target=probe, args=(url, key, samples), daemon=True),
        threading.Thread(target=sample_rss, args=(pid, samples), daemon=True),
    ]
    for thread in threads:
        thread.start()
    phases: dict[str, Any] = {}
    marks: dict[str, tuple[float, float]] = {}

    def phase(name: str, connections: int, length: float) -> None:
        began = time.monotonic()
        phases[name] = {"wrk": wrk(url, key, connections, length, core)}
        marks[name] = (began, time.monotonic())

    phase("capacity", SLOTS, 10)
    phase("1x", SLOTS, seconds)
    phase("10x", 10 * SLOTS, seconds)
    dropped_at = time.monotonic()
    time.sleep(seconds)
    marks["recovery"] = (dropped_at, time.monotonic())
    phases["recovery"] = {}
    began = time.monotonic()
    phases["slowloris"] = slowloris_phase(url, key, core, seconds)
    marks["slowloris"] = (began, time.monotonic())
    samples.stop.set()
    for thread in threads:
        thread.join()
    for name, (start_t, end_t) in marks.items():
        phases[name].update(window(samples, start_t, end_t))
    normal = phases["1x"]["admitted_p50_ms"] or 100.0
    phases["recovery"]["recovery_s"] = recovery_s(samples, marks["recovery"], normal)
    phases["rss_peak_mb"] = round(max(mb for _, mb in samples.rss), 1)
    return phases


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--phase-seconds", type=int, default=15)
    parser.add_argument("--out", type=Path, default=ROOT / "e2e" / "bench" / "results")
    args = parser.parse_args()
    cores = host.two_cores()
    placement = (
        cores
        if isinstance(cores, str)
        else f"gateway alone on core {cores[0]}, the rest on core {cores[1]}"
    )
    pair = (None, None) if isinstance(cores, str) else cores
    machine = host.machine()
    commit, dirty = host.commit(ROOT)
    with tempfile.TemporaryDirectory(prefix="overload-") as tmp, Fleet(Path(tmp)) as fleet:
        url, key, pid = start(fleet, Path(tmp), pair)
        phases = run_phases(url, key, pid, pair[1], args.phase_seconds)
    machine["load_after"] = host.load_average()
    doc = {
        "bench": "overload",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": commit + ("+dirty" if dirty else ""),
        "machine": {**machine, "loadavg": os.getloadavg(), "cpu_count": os.cpu_count()},
        "command": "python3 -m uv run --frozen python e2e/bench/overload.py",
        "placement": placement,
        "phase_seconds": args.phase_seconds,
        "settings": SETTINGS,
        "phases": phases,
        "verdicts": verdicts(phases),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "overload.json").write_text(json.dumps(doc, indent=2) + "\n")
    (args.out / "overload.md").write_text(markdown(doc))
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
