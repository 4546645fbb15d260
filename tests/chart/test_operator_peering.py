"""Two operator replicas, as the chart runs them with operator.replicas 2 (its kopf peering
CRDs, its peering object, TEEROUTE_OPERATOR_PEERING), serve the cluster: one is active, the
other stands by, and when the active one stops the other takes over. Real operator processes
against the sandbox, watching the test's namespace (a KopfPeering there)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from teeroute_sandbox.cluster import Sandbox
from teeroute_sandbox.restclient import KubeRest
from teeroute_sandbox.testing import wait_for
from tests.chart.helm import Helm, preset_values
from tests.operator.cases import valid_route
from tests.operator.conftest import OperatorProcess

pytestmark = pytest.mark.sandbox
API = "/apis/teeroute.dev/v1alpha1/namespaces"


def _served(kube: KubeRest, namespace: str, generation: int) -> bool:
    body = kube.get(f"{API}/{namespace}/routes/peered")
    return (body.get("status") or {}).get("observedGeneration") == generation


def _peering(helm: Helm, kubectl: Any, namespace: str) -> str:
    """The chart's peering CRDs and its KopfPeering for an operator of `namespace`."""
    values = {"operator": {"replicas": 2, "namespaces": [namespace]}}
    objects = helm.objects("kind", *preset_values("kind"), values, namespace=namespace)
    crds = [o for o in objects if o["kind"] == "CustomResourceDefinition"]
    for obj in crds:
        kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=_dump(obj))
    kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        *(f"crd/{c['metadata']['name']}" for c in crds),
    )
    (peering,) = [o for o in objects if o["kind"] == "KopfPeering"]
    kubectl("apply", "-f", "-", stdin=_dump(peering))
    deployment = next(
        o for o in objects if o["kind"] == "Deployment" and "operator" in o["metadata"]["name"]
    )
    env = {
        e["name"]: e.get("value")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["TEEROUTE_OPERATOR_PEERING"] == peering["metadata"]["name"]
    return str(peering["metadata"]["name"])


def _active(replica: OperatorProcess) -> bool:
    """kopf's last word on pausing: a replica starts paused, logs "Resuming" when it finds
    no peer above it and "Pausing" when one appears (its peering log lines)."""
    said = re.findall(r"(Pausing|Resuming) (?:operations|all)", replica.log.read_text())
    return bool(said) and said[-1] == "Resuming"


def _dump(obj: dict[str, Any]) -> str:
    return yaml.safe_dump(obj)


def _peers(kube: KubeRest, namespace: str, name: str) -> dict[str, Any]:
    body = kube.get(f"/apis/kopf.dev/v1/namespaces/{namespace}/kopfpeerings/{name}")
    return dict(body.get("status") or {})


def test_two_operator_replicas_serve_and_fail_over(
    helm: Helm, sandbox: Sandbox, kube: KubeRest, kubectl: Any, namespace: str, tmp_path: Path
) -> None:
    name = _peering(helm, kubectl, namespace)
    settings = {"TEEROUTE_OPERATOR_PEERING": name, "TEEROUTE_OPERATOR_NAMESPACES": namespace}
    replicas = [
        OperatorProcess(sandbox, tmp_path / f"operator-{i}.log", **settings) for i in range(2)
    ]
    for replica in replicas:
        replica.start()
    try:
        wait_for(
            lambda: len(_peers(kube, namespace, name)) == 2,
            timeout_s=60,
            what="both replicas in the peering object",
        )
        kube.post(f"{API}/{namespace}/routes", valid_route("peered", ("absent",)))
        wait_for(lambda: _served(kube, namespace, 1), timeout_s=60, what="a replica to serve")
        (active,) = wait_for(
            lambda: len(a := [r for r in replicas if _active(r)]) == 1 and a,
            timeout_s=30,
            what="exactly one active replica",
        )
        active.stop()
        kube.patch(f"{API}/{namespace}/routes/peered", {"spec": {"model": "llama-2"}})
        wait_for(
            lambda: _served(kube, namespace, 2), timeout_s=120, what="the standby to take over"
        )
    finally:
        for replica in replicas:
            replica.stop()
