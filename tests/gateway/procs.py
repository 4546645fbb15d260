"""Real processes for the gateway's HTTP tests: engine simulators and `teeroute gateway serve`
on free loopback ports, a config file written for them, and keys made with the real CLI.

Every gateway started here holds the tests' gateway key (`tests.gateway_key`, which the
agents of `miners.py` pin), as a deployment's gateway holds its own: a config without
`gatewayKeyFile` gets that key (`with_gateway_key`)."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests import gateway_key

START_TIMEOUT_S = 30
CLI = [sys.executable, "-m", "teeroute.cli"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Proc:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def started(
    argv: list[str], port: int, log: Path, probe: str, env: dict[str, str] | None = None
) -> Iterator[Proc]:
    """A process on `port` with only `env` of the TEEROUTE_ variables, ready once `probe`
    answers 200."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TEEROUTE_")}
    with log.open("wb") as output:
        process = subprocess.Popen(
            argv, stdout=output, stderr=subprocess.STDOUT, env={**environment, **(env or {})}
        )
    proc = Proc(f"http://127.0.0.1:{port}", process, log)
    try:
        _wait(proc, probe)
        yield proc
    finally:
        proc.stop()


def _wait(proc: Proc, probe: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.process.poll() is not None:
            pytest.fail(
                f"{proc.log.name} exited with {proc.process.returncode}: {proc.log.read_text()}"
            )
        try:
            if httpx.get(proc.url + probe, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    pytest.fail(f"{proc.log.name} did not become ready: {proc.log.read_text()}")


@contextmanager
def engine(tmp: Path, name: str, *flags: str) -> Iterator[Proc]:
    port = free_port()
    argv = [*CLI, "engine-sim", "--port", str(port), *flags]
    with started(argv, port, tmp / f"engine-{name}.log", "/health") as proc:
        yield proc


@contextmanager
def gateway(config: Path, name: str = "gateway") -> Iterator[Proc]:
    with_gateway_key(config)
    port = free_port()
    argv = [*CLI, "gateway", "serve", "--config", str(config), "--port", str(port)]
    with started(argv, port, config.parent / f"{name}.log", "/readyz") as proc:
        yield proc


def create_key(config: Path, credit: str) -> str:
    done = subprocess.run(
        [*CLI, "keys", "create", "--credit", credit, "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def lease(
    name: str, attested_ago_s: float = 10, expires_in_s: float = 300, tee: str = "simulated"
) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    return {
        "name": name,
        "url": "",
        "attestedAt": (now - dt.timedelta(seconds=attested_ago_s)).strftime(fmt),
        "expiresAt": (now + dt.timedelta(seconds=expires_in_s)).strftime(fmt),
        "tee": tee,
        "measurement": "ab" * 48,
    }


def write_config(
    path: Path,
    pools: dict[str, list[tuple[str, str]]],
    *,
    settings: dict[str, Any] | None = None,
    leases: dict[str, list[dict[str, Any]]] | None = None,
    route: dict[str, Any] | None = None,
    prices: dict[str, tuple[str, str]] | None = None,
) -> Path:
    """pools: name -> [(endpoint name, url)]; leases: pool -> status.endpoints entries (pools
    without leases are unattested, which needs allowUnattested)."""
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "teeroute.dev/v1alpha1",
            "kind": "GatewayConfig",
            "spec": {"ledger": "sqlite:///ledger.db", **(settings or {})},
        }
    ]
    for name, endpoints in pools.items():
        price_in, price_out = (prices or {}).get(name, ("1", "2"))
        doc: dict[str, Any] = {
            "apiVersion": "teeroute.dev/v1alpha1",
            "kind": "MinerPool",
            "metadata": {"name": name},
            "spec": {
                "models": [{"name": "sim-model", "contextLength": 8192}],
                "tee": {"type": "simulated"},
                "pricing": {"inputPerMillion": price_in, "outputPerMillion": price_out},
                "endpoints": [{"name": e, "url": u} for e, u in endpoints],
            },
        }
        if leases and name in leases:
            entries = [{**entry, "url": dict(endpoints)[entry["name"]]} for entry in leases[name]]
            doc["status"] = {"endpoints": entries}
        docs.append(doc)
    spec = {
        "model": "sim-model",
        "backends": [{"pool": p} for p in pools],
        "constraints": {"allowedTee": ["simulated"]},
        # the endpoints here are bare engine simulators: no enclave agent to seal to
        "sealing": "off",
    }
    docs.append(
        {
            "apiVersion": "teeroute.dev/v1alpha1",
            "kind": "Route",
            "metadata": {"name": "sim"},
            "spec": {**spec, **(route or {})},
        }
    )
    path.write_text(yaml.safe_dump_all(docs))
    return with_gateway_key(path)


def with_gateway_key(config: Path) -> Path:
    """The config with `gatewayKeyFile` set to the tests' gateway key (written beside it),
    unless it names a key file of its own."""
    docs = list(yaml.safe_load_all(config.read_text()))
    spec = next(d for d in docs if d.get("kind") == "GatewayConfig").setdefault("spec", {})
    if "gatewayKeyFile" not in spec:
        spec["gatewayKeyFile"] = str(gateway_key.write_pem(config.with_name("gateway-key.pem")))
        config.write_text(yaml.safe_dump_all(docs))
    return config


def metric(gw: Proc, name: str) -> float:
    """The first sample of the gateway's metric line starting with `name` (0 when absent)."""
    for line in httpx.get(f"{gw.url}/metrics", timeout=5).text.splitlines():
        if line.startswith(name):
            return float(line.split()[-1])
    return 0.0


def generation(gw: Proc, key: str, rid: str) -> dict[str, Any]:
    """The caller's metered record of request `rid` (GET /v1/generation), which must exist."""
    answer = httpx.get(
        f"{gw.url}/v1/generation",
        params={"id": rid},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]  # type: ignore[no-any-return]
