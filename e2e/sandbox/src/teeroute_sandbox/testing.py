"""pytest fixtures for tests that need a real cluster: load with
`pytest_plugins = ["teeroute_sandbox.testing"]` in a conftest.

- `sandbox` (session): brings the test sandbox up (building binaries if the cache is
  empty) and moves the test process into its network namespace, so the apiserver, pod
  IPs and subprocesses such as kubectl all work directly. It is torn down at the end
  unless it was already running or TEEROUTE_KEEP_SANDBOX=1 (faster local iterations).
- `kube` (session): a JSON client with admin rights; `kubectl` runs the built kubectl.
- `namespace`: a fresh namespace per test, deleted afterwards.
- `wait_for(fn, …)`: poll until `fn()` returns something truthy; fail naming what.
- `runner_ready(pod)`: the runner's processes say the pod is ready (not just kwok).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from teeroute_sandbox import netns
from teeroute_sandbox.cluster import Sandbox
from teeroute_sandbox.restclient import ApiError, KubeRest
from teeroute_sandbox.settings import SandboxSettings

T = TypeVar("T")
TEST_SANDBOX = os.environ.get("TEEROUTE_TEST_SANDBOX", "teeroute-test")


def wait_for(
    fn: Callable[[], T],
    timeout_s: float = 30.0,
    interval_s: float = 0.2,
    what: str = "the condition",
) -> T:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while True:
        try:
            value = fn()
        except (ApiError, OSError) as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout_s:.0f} s waiting for {what}; last result: {last!r}"
            )
        time.sleep(interval_s)


def runner_ready(pod: dict[str, Any]) -> bool:
    """Ready as reported by the runner's own processes.

    kwok marks every pod on its nodes Ready the moment it assigns an IP, before the runner
    has created the pod's network or started anything; only statuses carrying the runner's
    `sandbox://` container IDs describe real processes.
    """
    status = pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    conditions = status.get("conditions") or []
    return (
        bool(statuses)
        and all(
            str(s.get("containerID", "")).startswith("sandbox://") and s.get("ready")
            for s in statuses
        )
        and any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
    )


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox(SandboxSettings(name=TEST_SANDBOX))
    was_up = box.status().healthy
    box.up()
    netns.enter(box.netns)
    yield box
    if not was_up and not os.environ.get("TEEROUTE_KEEP_SANDBOX"):
        box.down()


@pytest.fixture(scope="session")
def kube(sandbox: Sandbox) -> Iterator[KubeRest]:
    client = KubeRest(sandbox.kubeconfig)
    yield client
    client.close()


@pytest.fixture(scope="session")
def kubectl(sandbox: Sandbox) -> Callable[..., subprocess.CompletedProcess[str]]:
    binary = sandbox.layout.root / "bin" / "kubectl"

    def run(*args: str, check: bool = True, stdin: str | None = None) -> Any:
        done = subprocess.run(
            [str(binary), f"--kubeconfig={sandbox.kubeconfig}", *args],
            capture_output=True,
            text=True,
            input=stdin,
            timeout=120,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr}")
        return done

    return run


@pytest.fixture
def namespace(kube: KubeRest, request: pytest.FixtureRequest) -> Iterator[str]:
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{stem}-{secrets.token_hex(3)}"
    kube.post(
        "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )
    # The apiserver refuses pods until kube-controller-manager has made the namespace's default
    # ServiceAccount; after an apiserver crash (tests/sandbox/test_controlplane_restart.py) that
    # controller took ~90 s to come back, and pods posted at once got 403.
    wait_for(
        lambda: _exists(kube, f"/api/v1/namespaces/{name}/serviceaccounts/default"),
        timeout_s=180,
        what=f"namespace {name}'s default ServiceAccount",
    )
    yield name
    with contextlib.suppress(ApiError):
        kube.delete(f"/api/v1/namespaces/{name}")


def _exists(kube: KubeRest, path: str) -> bool:
    try:
        kube.get(path)
    except ApiError as exc:
        if exc.status == 404:
            return False
        raise
    return True
