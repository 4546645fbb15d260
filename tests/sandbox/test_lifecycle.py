"""The sandbox's whole life through the `teeroute sandbox` CLI, from an empty binary
cache to a teardown that leaves no process behind. Uses an instance of its own, beside
the session's sandbox."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from teeroute_sandbox import netns, nodepools
from teeroute_sandbox.testing import wait_for

pytestmark = [pytest.mark.sandbox, pytest.mark.build]

NAME = "tr-lifecycle"


class Cli:
    def __init__(self, tmp: Path) -> None:
        self.env = {
            **os.environ,
            "TEEROUTE_CACHE_DIR": str(tmp / "cache"),
            "TEEROUTE_SANDBOX_STATE": str(tmp / "state"),
        }
        self.state = tmp / "state" / "sandbox" / NAME

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "teeroute.cli", "sandbox", *args, "--name", NAME]
            if args[0] != "exec"
            else [
                sys.executable,
                "-m",
                "teeroute.cli",
                "sandbox",
                "exec",
                "--name",
                NAME,
                *args[1:],
            ],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"sandbox {args} failed ({done.returncode}): {done.stderr}")
        return done

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self(*("exec", "--", "kubectl", *args, "-o", "json")).stdout)

    def pids(self) -> dict[str, int]:
        status = json.loads(self("status", "--json", check=False).stdout)
        return {name: c["pid"] for name, c in status["components"].items()}


def namespace_inodes(prefix: str) -> set[int]:
    return {(netns.NETNS_DIR / n).stat().st_ino for n in netns.names(prefix)}


def processes_in(inodes: set[int], marker: str, started_by: float | None = None) -> list[str]:
    """Processes in any of those network namespaces, or whose command line names our
    state or cache directory; with `started_by` (seconds since boot), only those started by
    then: a namespace's inode number is reused once it is gone, and another sandbox on the
    same machine may make a namespace with it (its processes are not our leftovers)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            net = (proc / "ns" / "net").stat().st_ino
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if started_by is not None and int(stat[19]) / os.sysconf("SC_CLK_TCK") > started_by:
            continue
        if net in inodes or marker in cmdline:
            found.append(f"{proc.name}: {cmdline[:120]}")
    return found


def since_boot() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


def test_sandbox_life_from_empty_cache_to_clean_teardown(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    not_up = cli("exec", "--", "true", check=False)
    assert not_up.returncode == 6
    assert "is not up" in not_up.stderr
    assert cli("status", check=False).returncode == 1

    started = time.monotonic()
    up = cli("up")
    cold = time.monotonic() - started
    assert up.stdout.strip() == str(cli.state / "kubeconfig")
    assert "building" in up.stderr  # the cache was empty: it built, and said so
    assert len(list((tmp_path / "cache" / "bin").iterdir())) >= 3

    nodes = cli.kubectl_json("get", "nodes")["items"]
    assert len(nodes) == sum(len(p.node_names) for p in nodepools.POOLS)
    for node in nodes:
        conditions = {c["type"]: c["status"] for c in node["status"]["conditions"]}
        assert conditions["Ready"] == "True"
    version = cli.kubectl_json("version")
    assert version["serverVersion"]["gitVersion"] == "v1.33.5"

    pids = cli.pids()
    assert all(pids.values()), pids
    cli("up")  # idempotent: nothing restarted
    assert cli.pids() == pids

    os.kill(pids["kube-scheduler"], signal.SIGKILL)  # repair: `up` restarts what died
    wait_for(lambda: cli.pids()["kube-scheduler"] is None, what="the scheduler to die")
    cli("up")
    repaired = cli.pids()
    assert repaired["kube-scheduler"] not in (None, pids["kube-scheduler"])
    assert {k: v for k, v in repaired.items() if k != "kube-scheduler"} == {
        k: v for k, v in pids.items() if k != "kube-scheduler"
    }

    overrides = {
        "spec": {
            "nodeSelector": {nodepools.SIMULATED_TEE_LABEL: "true"},
            "securityContext": {"runAsUser": 65532},
        }
    }
    cli(
        "exec",
        "--",
        "kubectl",
        "run",
        "probe",
        "--image=teeroute.dev/sandbox-probe:dev",
        f"--overrides={json.dumps(overrides)}",
    )
    wait_for(lambda: len(netns.names(f"{NAME}-pod-")) == 1, what="the runner to start the pod")
    inodes = namespace_inodes(NAME)
    wait_for(lambda: processes_in(inodes, str(tmp_path)), what="the pod's process")

    started, before_down = time.monotonic(), since_boot()
    cli("down")
    down_s = time.monotonic() - started
    assert processes_in(inodes, str(tmp_path), started_by=before_down) == []
    assert netns.names(NAME) == []
    assert sorted(p.name for p in cli.state.iterdir()) == ["lock", "logs"]
    print(f"\nlifecycle: up from empty binary cache {cold:.1f} s, down {down_s:.1f} s")

    started = time.monotonic()  # warm start: binaries cached, state fresh
    cli("up")
    print(f"lifecycle: warm up {time.monotonic() - started:.1f} s")
    cli("down")
    assert netns.names(NAME) == []
