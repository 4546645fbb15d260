"""API paths of the kinds teeroute reads and writes."""

from __future__ import annotations

from typing import Any

RESOURCES: dict[tuple[str, str], str] = {
    ("v1", "Pod"): "pods",
    ("v1", "Service"): "services",
    ("v1", "Event"): "events",
    ("v1", "Secret"): "secrets",
    ("v1", "ConfigMap"): "configmaps",
    ("apps/v1", "Deployment"): "deployments",
    ("apps/v1", "ReplicaSet"): "replicasets",
    ("policy/v1", "PodDisruptionBudget"): "poddisruptionbudgets",
    ("discovery.k8s.io/v1", "EndpointSlice"): "endpointslices",
    ("networking.k8s.io/v1", "NetworkPolicy"): "networkpolicies",
    ("teeroute.dev/v1alpha1", "MinerPool"): "minerpools",
    ("teeroute.dev/v1alpha1", "Route"): "routes",
}


def collection(api_version: str, kind: str, namespace: str | None) -> str:
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    plural = RESOURCES[(api_version, kind)]
    return f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"


def of(obj: dict[str, Any]) -> str:
    """The path of an object (namespaced kinds only)."""
    meta = obj["metadata"]
    return f"{collection(obj['apiVersion'], obj['kind'], meta['namespace'])}/{meta['name']}"
