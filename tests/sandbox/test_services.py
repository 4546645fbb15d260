"""ClusterIP Services work in the sandbox as on a cluster: the service proxy forwards to
ready pods (round robin), and a Service left without ready pods stops answering."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from teeroute_sandbox.restclient import KubeRest
from teeroute_sandbox.testing import runner_ready as ready
from teeroute_sandbox.testing import wait_for

from . import workloads as w

pytestmark = pytest.mark.sandbox


def whoami(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return json.loads(response.read())
    except OSError:
        return None


def test_a_cluster_ip_service_reaches_its_ready_pods(kube: KubeRest, namespace: str) -> None:
    name = "svc-web"
    kube.post(
        f"/apis/apps/v1/namespaces/{namespace}/deployments",
        w.deployment(name, 2, w.POOL_PLACEMENT["kind-simtee"], w.probe_container()),
    )
    created = kube.post(f"/api/v1/namespaces/{namespace}/services", w.service(name))
    url = f"http://{created['spec']['clusterIP']}:80/whoami"

    def pod_ips() -> set[str] | None:
        items = kube.get(f"/api/v1/namespaces/{namespace}/pods", labelSelector=f"app={name}")
        ips = {p["status"]["podIP"] for p in items["items"] if ready(p)}
        return ips if len(ips) == 2 else None

    ips = wait_for(pod_ips, timeout_s=60, what="2 ready pods")
    # round robin: within a few requests both pods have answered through the Service
    seen: set[str] = set()

    def both_answered() -> bool:
        answer = whoami(url)
        if answer is not None:
            seen.add(answer["local_address"])
        return seen == ips

    wait_for(both_answered, timeout_s=30, what="both pods to answer through the Service")

    kube.patch(
        f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}", {"spec": {"replicas": 0}}
    )
    wait_for(lambda: whoami(url) is None, timeout_s=60, what="the Service to have no backend")
