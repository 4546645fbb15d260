"""The sandbox is a real control plane whose nodes look like confidential node pools."""

from __future__ import annotations

import json
from typing import Any

import pytest

from teeroute_sandbox import nodepools
from teeroute_sandbox.restclient import KubeRest
from teeroute_sandbox.runner.plan import quantity

pytestmark = pytest.mark.sandbox


def test_nodes_are_ready_with_their_pools_labels_and_taints(kube: KubeRest) -> None:
    nodes = {n["metadata"]["name"]: n for n in kube.get("/api/v1/nodes")["items"]}
    for pool in nodepools.POOLS:
        for name in pool.node_names:
            node = nodes[name]
            ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
            assert ready == "True", name
            assert pool.labels.items() <= node["metadata"]["labels"].items()
            assert node["spec"].get("taints", []) == list(pool.taints)
            allocatable = {k: quantity(v) for k, v in node["status"]["allocatable"].items()}
            assert allocatable == {k: quantity(v) for k, v in pool.allocatable.items()}


def test_kubectl_lists_the_pools_and_reports_the_server_version_we_built(kubectl: Any) -> None:
    listing = json.loads(kubectl("get", "nodes", "-o", "json").stdout)
    pools = {n["metadata"]["labels"]["teeroute.dev/sandbox-pool"] for n in listing["items"]}
    assert pools == {p.name for p in nodepools.POOLS}
    version = json.loads(kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == "v1.33.5"
    assert version["clientVersion"]["gitVersion"] == "v1.33.5"


def test_kubernetes_service_points_at_the_apiserver(kube: KubeRest) -> None:
    svc = kube.get("/api/v1/namespaces/default/services/kubernetes")
    assert svc["spec"]["clusterIP"] == "10.96.0.1"
    slices = kube.get(
        "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices",
        labelSelector="kubernetes.io/service-name=kubernetes",
    )["items"]
    assert [e["addresses"] for e in slices[0]["endpoints"]] == [["10.95.0.1"]]
