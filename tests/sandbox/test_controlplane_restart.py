"""Control-plane failures (issue 17, docs/control-plane-faults.md): kube-apiserver, and
separately etcd, stop under a running operator and a cluster-mode gateway that serves an
attested pool, and start again. Real parts only: the sandbox's etcd and apiserver (crashed
with SIGKILL and started again by the sandbox's own `stop_component`/`start_component`), the
operator process, the runner's simulated-TEE miner pods and a gateway process watching the
cluster.

What must hold: while the control plane is away the gateway keeps routing from the last
inventory it had; once the admission records' leases run out without renewal it fails closed
(503, OpenAI-shaped); when the component is back, the operator and the gateway's watches
recover with nobody touching them (the pool is routed again, and a spec edit made after the
restart reaches the gateway as a new endpoint)."""

from __future__ import annotations

import base64
import datetime as dt
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from teeroute_sandbox import daemons
from teeroute_sandbox.cluster import Sandbox
from teeroute_sandbox.restclient import KubeRest
from teeroute_sandbox.testing import wait_for
from tests import gateway_key
from tests.gateway.procs import free_port, started
from tests.operator.conftest import OperatorProcess, crds, vendor  # noqa: F401 - crds: a fixture
from tests.operator.test_attestation import API, start_pool
from tests.operator.test_forged_admission import _create_key

pytestmark = pytest.mark.sandbox

Obj = dict[str, Any]
POOL = "steady"
MODEL = "steady-model"
MARGIN_S = 6.0
"""Lease time left (at least) when the outage begins, so the 'still serving' checks run
inside it (the pools here renew every 3 s for 12 s)."""
KUBE_RECOVERY_S = 180.0
"""After an apiserver crash, kube-controller-manager's own watches took up to ~90 s here to
create the new replica's pod (the operator had applied the edit within a second)."""
SLACK_S = 10.0
"""The gateway checks each endpoint's lease expiry on every request, so it fails closed at
the expiry itself; this much longer is allowed for a loaded machine."""


@pytest.fixture(scope="module")
def restart_operator(
    sandbox: Sandbox,
    crds: None,  # noqa: F811 - the fixture imported above
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    process = OperatorProcess(sandbox, tmp_path_factory.mktemp("operator") / "operator.log")
    process.start()
    yield process
    process.stop()


@pytest.fixture
def gateway(
    sandbox: Sandbox, namespace: str, restart_operator: OperatorProcess, tmp_path: Path
) -> Iterator[tuple[str, str]]:
    """A gateway in cluster mode for this namespace, pinning the operator's key: URL, API key."""
    env = {
        "KUBECONFIG": str(sandbox.kubeconfig),
        "TEEROUTE_GATEWAY_LEDGER": f"sqlite:///{tmp_path / 'ledger.db'}",
        "TEEROUTE_GATEWAY_NAMESPACES": namespace,
        "TEEROUTE_GATEWAY_GATEWAY_KEY_FILE": str(
            gateway_key.write_pem(tmp_path / "gateway-key.pem")
        ),
        "TEEROUTE_GATEWAY_OPERATOR_KEY": base64.b64encode(restart_operator.release_public).decode(),
    }
    key = _create_key(env)
    port = free_port()
    argv = [sys.executable, "-m", "teeroute.cli", "gateway", "serve", "--port", str(port)]
    with started(argv, port, tmp_path / "gateway.log", "/healthz", env) as proc:
        yield proc.url, key


def route(pool: str) -> Obj:
    return {
        "apiVersion": "teeroute.dev/v1alpha1",
        "kind": "Route",
        "metadata": {"name": pool},
        "spec": {
            "model": MODEL,
            "backends": [{"pool": pool}],
            "constraints": {"allowedTee": ["simulated"]},
        },
    }


def routed(gateway: str) -> dict[str, dt.datetime]:
    """The endpoints the gateway would route the model to now, with their leases' expiry."""
    answer = httpx.get(f"{gateway}/v1/attestations", params={"model": MODEL}, timeout=5)
    if answer.status_code != 200:
        return {}
    return {
        e["endpoint"]: dt.datetime.fromisoformat(e["expires_at"])
        for e in answer.json()["data"]
        if e.get("expires_at")
    }


def chat(gateway: str, key: str) -> httpx.Response:
    return httpx.post(
        f"{gateway}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
        timeout=20,
    )


def seconds_until(when: dt.datetime) -> float:
    return (when - dt.datetime.now(dt.UTC)).total_seconds()


def serving_pool(kube: KubeRest, sandbox: Sandbox, ns: str, gateway: str, key: str) -> None:
    """An attested one-replica pool behind a Route, answered through the gateway."""
    vendor(sandbox).install(kube, [ns])
    start_pool(kube, ns, POOL, 1)
    kube.post(f"{API}/{ns}/routes", route(POOL))
    wait_for(lambda: routed(gateway), timeout_s=60, what="the gateway to route the pool")
    assert chat(gateway, key).status_code == 200


def fresh_leases(gateway: str) -> dict[str, dt.datetime] | None:
    """The routed endpoints once every lease has a few seconds left (just renewed), so that
    requests right after the outage begins are inside them."""
    found = routed(gateway)
    return found if found and all(seconds_until(e) > MARGIN_S for e in found.values()) else None


def refused(gateway: str, key: str) -> tuple[httpx.Response, dt.datetime] | None:
    answer = chat(gateway, key)
    return (answer, dt.datetime.now(dt.UTC)) if answer.status_code != 200 else None


@pytest.mark.parametrize("component", ["kube-apiserver", "etcd"])
def test_control_plane_outage_serves_last_inventory_fails_closed_and_recovers(
    component: str,
    kube: KubeRest,
    sandbox: Sandbox,
    namespace: str,
    restart_operator: OperatorProcess,
    gateway: tuple[str, str],
) -> None:
    url, key = gateway
    serving_pool(kube, sandbox, namespace, url, key)
    leases = wait_for(lambda: fresh_leases(url), timeout_s=30, what="freshly renewed leases")
    sandbox.stop_component(component)
    try:
        held = routed(url)  # nothing can renew them from here on
        assert held.keys() == leases.keys(), "the outage cost the gateway its inventory"
        assert chat(url, key).status_code == 200, "the last good inventory stopped serving"
        ends = max(held.values())
        answer, when = wait_for(
            lambda: refused(url, key),
            timeout_s=seconds_until(ends) + SLACK_S,
            interval_s=0.5,
            what="the gateway to fail closed once the leases ran out",
        )
        assert when >= ends - dt.timedelta(seconds=1), f"failed closed before {ends}"
        assert answer.status_code == 503, answer.text
        error = answer.json()["error"]
        assert error["type"] == "service_unavailable" and error["message"]
        assert routed(url) == {}
    finally:
        sandbox.start_component(component)

    kube.patch(f"{API}/{namespace}/minerpools/{POOL}", {"spec": {"replicas": 2}})
    wait_for(lambda: routed(url), timeout_s=90, what="the pool to be routed again")
    assert chat(url, key).status_code == 200
    both = wait_for(
        lambda: found if len(found := routed(url)) == 2 else None,
        timeout_s=KUBE_RECOVERY_S,
        what="the replica added after the restart to reach the gateway",
    )
    assert leases.keys() < both.keys()


@pytest.mark.parametrize("component", ["etcd", "kube-apiserver"])
def test_a_restarted_component_runs_anew_with_the_cluster_data(
    component: str, kube: KubeRest, sandbox: Sandbox, namespace: str
) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    kube.post(path, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kept"}})
    before = daemons.running(sandbox.layout, component)
    sandbox.restart(component)
    after = daemons.running(sandbox.layout, component)
    assert after is not None and after != before
    wait_for(lambda: kube.get_or_none(f"{path}/kept"), what="the ConfigMap after the restart")
