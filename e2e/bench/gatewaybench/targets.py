"""What the benchmark measures, started on free loopback ports: the engine simulator (the
upstream, and the `direct` target), our gateway and LiteLLM's proxy in front of it.

Each target is one process tree whose CPU time and RSS the scenarios read: the simulator for
`direct`, the gateway or LiteLLM's proxy otherwise.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from gatewaybench import litellm
from gatewaybench.procs import BenchError, Fleet, Service, free_port, wait_ready

MODEL = "sim-model"
CREDIT = "1000000"  # far more than a run spends, so metering never refuses
GATEWAY_START_TIMEOUT_S = 60


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    headers: dict[str, str]
    service: Service  # the process tree that is measured (CPU, RSS)


def teeroute_cli() -> list[str]:
    script = Path(sys.executable).with_name("teeroute")
    return [str(script)] if script.exists() else [sys.executable, "-m", "teeroute.cli"]


def start_simulator(fleet: Fleet, core: int | None) -> Target:
    port = free_port()
    argv = [sys.executable, "-m", "teeroute_engine_sim", "--port", str(port)]
    argv += ["--ttft-ms", "0", "--tokens-per-s", "0", "--workers", "1"]
    service = fleet.start("simulator", argv, core=core)
    url = f"http://127.0.0.1:{port}"
    wait_ready(service, url + "/health", 30)
    return Target("direct", url, {}, service)


def gateway_unavailable() -> str | None:
    """Why our gateway cannot run here, or None when `teeroute gateway serve --help` works."""
    argv = [*teeroute_cli(), "gateway", "serve", "--help"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`teeroute gateway serve --help` did not run: {exc}"
    if done.returncode == 0:
        return None
    last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
    return f"`teeroute gateway serve --help` exited {done.returncode}: {last}"


def gateway_config(upstream: str) -> str:
    """Auth, metering into a SQLite ledger and rate limits all on; the limits are high enough
    never to trigger, so what they cost is measured, not what they refuse."""
    return f"""\
apiVersion: teeroute.dev/v1alpha1
kind: GatewayConfig
spec:
  ledger: sqlite:///ledger.db
  rateLimiter: memory
  allowUnattested: true
---
apiVersion: teeroute.dev/v1alpha1
kind: MinerPool
metadata: {{name: sim, namespace: default}}
spec:
  models: [{{name: {MODEL}, contextLength: 8192}}]
  tee: {{type: simulated}}
  pricing: {{inputPerMillion: "0.10", outputPerMillion: "0.20"}}
  endpoints: [{{name: sim-0, url: "{upstream}"}}]
---
apiVersion: teeroute.dev/v1alpha1
kind: Route
metadata: {{name: sim, namespace: default}}
spec:
  model: {MODEL}
  backends: [{{pool: sim}}]
  constraints: {{allowedTee: [simulated]}}
  rateLimits: {{requestsPerMinute: 100000000, tokensPerMinute: 1000000000}}
"""


def create_key(config_file: Path) -> str:
    argv = [*teeroute_cli(), "keys", "create", "--credit", CREDIT, "--config", str(config_file)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        why = (done.stderr.strip().splitlines() or ["no key printed"])[-1]
        raise BenchError(f"`teeroute keys create` exited {done.returncode}: {why}")
    return lines[-1].strip()


def start_gateway(fleet: Fleet, workdir: Path, upstream: str, core: int | None) -> Target:
    config_file = workdir / "gateway.yaml"
    config_file.write_text(gateway_config(upstream))
    key = create_key(config_file)
    port = free_port()
    argv = [*teeroute_cli(), "gateway", "serve", "--config", str(config_file)]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    service = fleet.start("gateway", argv, core=core, cwd=workdir)
    url = f"http://127.0.0.1:{port}"
    wait_ready(service, url + "/readyz", GATEWAY_START_TIMEOUT_S)
    return Target("gateway", url, {"Authorization": f"Bearer {key}"}, service)


def start_litellm(fleet: Fleet, workdir: Path, upstream: str, core: int | None) -> Target:
    venv = litellm.install()
    config_file = workdir / "litellm.yaml"
    config_file.write_text(litellm.config(upstream))
    port = free_port()
    service = fleet.start(
        "litellm",
        litellm.argv(venv, config_file, port),
        core=core,
        env=litellm.environment(),
        cwd=workdir,
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(service, url + litellm.READY_PATH, litellm.START_TIMEOUT_S)
    return Target("litellm", url, {"Authorization": f"Bearer {litellm.MASTER_KEY}"}, service)
