"""Real engine simulator processes on free loopback ports, for the HTTP tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

START_TIMEOUT_S = 30


@dataclass(frozen=True)
class Engine:
    url: str
    process: subprocess.Popen[bytes]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def running(argv: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[Engine]:
    """Start `argv` plus `--port P` with only `env` of the TEEROUTE_ENGINE_ variables, wait
    for /health; stop it afterwards."""
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TEEROUTE_ENGINE_")}
    environment.update(env or {})
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*argv, "--port", str(port)], stdout=output, stderr=subprocess.STDOUT, env=environment
        )
    engine = Engine(f"http://127.0.0.1:{port}", process)
    try:
        _wait_healthy(engine, log)
        yield engine
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_healthy(engine: Engine, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if engine.process.poll() is not None:
            pytest.fail(f"engine-sim exited with {engine.process.returncode}: {log.read_text()}")
        try:
            if httpx.get(f"{engine.url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    pytest.fail(f"engine-sim did not become healthy: {log.read_text()}")


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """`python -m teeroute_engine_sim` with two models, unpaced."""
    argv = [sys.executable, "-m", "teeroute_engine_sim", "--model", "sim-model"]
    log = tmp_path_factory.mktemp("engine") / "engine.log"
    with running([*argv, "--model", "other-model", "--host", "127.0.0.1"], log) as started:
        yield started
