"""Manifests the sandbox tests create (plain dicts, as the API takes them)."""

from __future__ import annotations

from typing import Any

from teeroute_sandbox.runner.images import PROBE_IMAGE

Obj = dict[str, Any]

POOL_PLACEMENT: dict[str, Obj] = {
    "aks-cvmgpu": {
        "nodeSelector": {"kubernetes.azure.com/security-type": "ConfidentialVM"},
        "tolerations": [
            {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}
        ],
    },
    "gke-tdxgpu": {
        "nodeSelector": {"cloud.google.com/gke-confidential-nodes-instance-type": "TDX"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    },
    "kind-simtee": {
        "nodeSelector": {"teeroute.dev/simulated-tee": "true"},
        "tolerations": [],
    },
}


def probe_container(env: dict[str, str] | None = None, **extra: Any) -> Obj:
    return {
        "name": "probe",
        "image": PROBE_IMAGE,
        "ports": [{"name": "http", "containerPort": 8080}],
        "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1},
        "securityContext": {
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "runAsNonRoot": True,
        },
        **extra,
    }


def deployment(name: str, replicas: int, placement: Obj, container: Obj) -> Obj:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    **placement,
                    "containers": [container],
                    "securityContext": {"runAsUser": 65532},
                },
            },
        },
    }


def service(name: str, port: int = 80, target: str = "http") -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "selector": {"app": name},
            "ports": [{"name": "http", "port": port, "targetPort": target}],
        },
    }


def pod(name: str, spec: Obj) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}
