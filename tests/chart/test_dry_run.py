"""The rendered manifests are what a real apiserver accepts: each preset's objects pass
`kubectl apply --dry-run=server` against the sandbox (CRDs applied first, as `helm install`
orders them), in a namespace that warns on anything short of the restricted Pod Security
Standard, and no warning comes back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml

from tests.chart.helm import PRESETS, Helm, preset_values

pytestmark = pytest.mark.sandbox

# The Prometheus Operator's ServiceMonitor kind, for the presets that turn it on: a
# stand-in with no schema (the sandbox runs no Prometheus Operator), so the dry run checks
# the object's kind, scope and metadata, not its fields.
SERVICE_MONITOR_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
    "spec": {
        "group": "monitoring.coreos.com",
        "scope": "Namespaced",
        "names": {
            "kind": "ServiceMonitor",
            "plural": "servicemonitors",
            "singular": "servicemonitor",
        },
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}

Kubectl = Callable[..., Any]


def _apply_crds(kubectl: Kubectl, crds: list[dict[str, Any]]) -> None:
    kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", "-", stdin=yaml.safe_dump_all(crds)
    )
    names = [f"crd/{c['metadata']['name']}" for c in crds]
    kubectl("wait", "--for=condition=Established", "--timeout=60s", *names)


@pytest.mark.parametrize("preset", PRESETS)
def test_rendered_manifests_pass_a_server_side_dry_run(
    helm: Helm, kubectl: Kubectl, namespace: str, preset: str
) -> None:
    kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/warn=restricted")
    objects = helm.objects(preset, *preset_values(preset), namespace=namespace)
    crds = [o for o in objects if o["kind"] == "CustomResourceDefinition"]
    rest = [o for o in objects if o["kind"] != "CustomResourceDefinition"]
    _apply_crds(kubectl, [*crds, SERVICE_MONITOR_CRD])
    done = kubectl("apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump_all(rest))
    assert len(done.stdout.strip().splitlines()) == len(rest), done.stdout
    assert "Warning" not in done.stderr, done.stderr


def test_dry_run_catches_a_pod_short_of_restricted(
    helm: Helm, kubectl: Kubectl, namespace: str
) -> None:
    """The check above can fail: a Deployment whose pod may escalate is warned about."""
    kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/warn=restricted")
    objects = helm.objects("kind", *preset_values("kind"), namespace=namespace)
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"][
        "allowPrivilegeEscalation"
    ] = True
    done = kubectl("apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(deployment))
    assert "allowPrivilegeEscalation" in done.stderr
