"""The operator as a real process against the sandbox, for tests to start, kill and restart.
It signs secret releases with a release key of its own (a file made once per process object),
and the pods it runs pin that key."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from teeroute_operator import release_key
from teeroute_sandbox.cluster import Sandbox
from teeroute_sandbox.restclient import KubeRest
from teeroute_sandbox.simtee import SimulatedVendor
from teeroute_sandbox.testing import wait_for
from tests import gateway_key

ROOT = Path(__file__).resolve().parents[2]


def vendor(sandbox: Sandbox) -> SimulatedVendor:
    """The sandbox's simulated TEE vendor (root CA and per-node chips)."""
    return SimulatedVendor(sandbox.layout.root / "simulated-tee")


class OperatorProcess:
    def __init__(
        self,
        sandbox: Sandbox,
        log: Path,
        metrics_port: int = 0,
        kubeconfig: Path | None = None,
        **settings: str,
    ) -> None:
        """`kubeconfig`: whose credentials it runs with (default: the sandbox admin's);
        `settings`: more of its environment (TEEROUTE_OPERATOR_… variables)."""
        self.sandbox = sandbox
        self.log = log
        self.metrics_port = metrics_port
        self.kubeconfig = kubeconfig or sandbox.kubeconfig
        self.settings = settings
        self.proc: subprocess.Popen[bytes] | None = None
        self.release_key_file = log.with_name("release-key.pem")
        self.release_public = (
            release_key.load(self.release_key_file).public
            if self.release_key_file.exists()
            else release_key.create(self.release_key_file)
        )
        """The release key's public half: what the operator's agents pin."""

    def start(self) -> None:
        trust = vendor(self.sandbox)
        trust.root_pem()  # made once per sandbox
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "TEEROUTE_OPERATOR_LIVENESS_PORT": "0",
            "TEEROUTE_OPERATOR_METRICS_PORT": str(self.metrics_port),
            "TEEROUTE_OPERATOR_RESYNC_SECONDS": "5",
            "TEEROUTE_OPERATOR_TRUST_DIR": str(trust.trust_dir),
            "TEEROUTE_OPERATOR_ALLOW_SIMULATED_TEE": "true",
            "TEEROUTE_OPERATOR_RELEASE_KEY_FILE": str(self.release_key_file),
            # remote miners in these tests are agents on the sandbox's loopback, over http
            "TEEROUTE_OPERATOR_EXTERNAL_SCHEMES": "https,http",
            "TEEROUTE_OPERATOR_EXTERNAL_ALLOW_LOOPBACK": "true",
            # its pods' agents answer the tests' gateways (tests.gateway_key) and no one else
            "TEEROUTE_OPERATOR_GATEWAY_KEYS": gateway_key.PUBLIC_B64,
            **self.settings,
        }
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "teeroute_operator"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        """kill -9: no cleanup, no chance to finish what it was doing."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="session")
def crds(kubectl: Any, kube: Any) -> None:
    kubectl("apply", "-f", str(ROOT / "crds"))
    kubectl(
        "wait",
        "--for=condition=Established",
        "crd/minerpools.teeroute.dev",
        "crd/routes.teeroute.dev",
        "--timeout=60s",
    )
    wait_for(lambda: kube.get("/apis/teeroute.dev/v1alpha1"), what="the teeroute API")


@pytest.fixture(scope="module")
def operator(
    sandbox: Sandbox, crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    process = OperatorProcess(sandbox, tmp_path_factory.mktemp("operator") / "operator.log")
    process.start()
    yield process
    process.stop()


@pytest.fixture(autouse=True)
def simulated_chips(request: pytest.FixtureRequest) -> None:
    """Sandbox tests with a namespace get the simulated chips' Secret in it, as the chart
    provides it on a kind cluster, so simulated-TEE agents can start."""
    if request.node.get_closest_marker("sandbox") is None:
        return
    if "namespace" not in request.fixturenames:
        return
    sandbox: Sandbox = request.getfixturevalue("sandbox")
    kube: KubeRest = request.getfixturevalue("kube")
    namespace: str = request.getfixturevalue("namespace")
    vendor(sandbox).install(kube, [namespace])
