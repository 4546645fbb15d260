"""The operator as a pod in the cluster: its own service account, least-privilege RBAC,
in-cluster credentials, non-root with a read-only root filesystem."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from teeroute_operator import release_key
from teeroute_operator.builders import RELEASE_KEY_ENV
from teeroute_sandbox.restclient import KubeRest
from teeroute_sandbox.testing import wait_for

from .cases import valid_pool
from .conftest import ROOT

pytestmark = pytest.mark.sandbox
MANIFEST = ROOT / "e2e" / "sandbox" / "operator.yaml"
RELEASE_KEY_SECRET_NAME = "teeroute-release-key"  # noqa: S105 (a name, not a secret)
SA = "system:serviceaccount:teeroute-system:teeroute-operator"


@pytest.fixture(scope="module")
def release_public(kubectl: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[bytes]:
    """The Secret the manifest mounts: a new release key; yields its public half."""
    key_file = tmp_path_factory.mktemp("release") / "release-key.pem"
    public = release_key.create(key_file)
    kubectl("create", "namespace", "teeroute-system", check=False)
    kubectl(
        "-n",
        "teeroute-system",
        "create",
        "secret",
        "generic",
        RELEASE_KEY_SECRET_NAME,
        f"--from-file=release-key.pem={key_file}",
    )
    yield public
    kubectl("-n", "teeroute-system", "delete", "secret", RELEASE_KEY_SECRET_NAME, check=False)


@pytest.fixture(scope="module")
def in_cluster_operator(
    kubectl: Any, kube: KubeRest, crds: None, release_public: bytes
) -> Iterator[None]:
    kubectl("apply", "-f", str(MANIFEST))
    kubectl(
        "-n",
        "teeroute-system",
        "rollout",
        "status",
        "deployment/teeroute-operator",
        "--timeout=90s",
    )
    yield
    kubectl("delete", "-f", str(MANIFEST), "--wait=true", "--timeout=60s", check=False)


def can(
    kube: KubeRest, verb: str, resource: str, group: str = "", namespace: str = "default"
) -> bool:
    review = kube.post(
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": SA,
                "groups": ["system:serviceaccounts"],
                "resourceAttributes": {
                    "verb": verb,
                    "resource": resource,
                    "group": group,
                    "namespace": namespace,
                },
            },
        },
    )
    return bool(review["status"].get("allowed"))


def test_in_cluster_operator_reconciles_with_its_own_credentials(
    kube: KubeRest, in_cluster_operator: None, namespace: str, release_public: bytes
) -> None:
    pods = kube.get("/api/v1/namespaces/teeroute-system/pods")["items"]
    (pod,) = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    assert pod["spec"]["serviceAccountName"] == "teeroute-operator"
    restarts = pod["status"]["containerStatuses"][0]["restartCount"]

    kube.post(
        f"/apis/teeroute.dev/v1alpha1/namespaces/{namespace}/minerpools", valid_pool("in-cluster")
    )

    def ready() -> bool:
        body = kube.get(f"/apis/teeroute.dev/v1alpha1/namespaces/{namespace}/minerpools/in-cluster")
        return any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in (body.get("status") or {}).get("conditions") or []
        )

    wait_for(ready, timeout_s=60, what="the pool to be reconciled by the in-cluster operator")
    deployment = kube.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/in-cluster")
    managers = {m["manager"] for m in deployment["metadata"]["managedFields"]}
    assert "teeroute-operator" in managers
    (container,) = [
        c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "agent"
    ]
    pinned = {e["name"]: e.get("value") for e in container["env"]}[RELEASE_KEY_ENV]
    assert pinned == release_key.public_b64(release_public)  # it read the mounted key
    pod = kube.get(f"/api/v1/namespaces/teeroute-system/pods/{pod['metadata']['name']}")
    assert pod["status"]["containerStatuses"][0]["restartCount"] == restarts  # stable


@pytest.mark.parametrize(
    ("verb", "resource", "group", "allowed"),
    [
        ("patch", "minerpools", "teeroute.dev", True),
        ("patch", "minerpools/status", "teeroute.dev", True),
        ("create", "deployments", "apps", True),
        ("delete", "services", "", True),
        ("list", "pods", "", True),
        ("patch", "pods", "", True),  # the attestation verdict annotations
        ("patch", "endpointslices", "discovery.k8s.io", True),
        ("create", "pods", "", False),
        ("delete", "pods", "", False),
        ("get", "secrets", "", False),  # granted by name, per miner namespace, if at all
        ("list", "secrets", "", False),
        ("watch", "secrets", "", False),
        ("create", "secrets", "", False),
        ("update", "secrets", "", False),
        ("patch", "secrets", "", False),
        ("delete", "secrets", "", False),
        ("create", "minerpools", "teeroute.dev", False),
        ("delete", "minerpools", "teeroute.dev", False),
        ("create", "clusterroles", "rbac.authorization.k8s.io", False),
        ("create", "pods/exec", "", False),
    ],
)
def test_operator_rbac_is_least_privilege(
    kube: KubeRest, in_cluster_operator: None, verb: str, resource: str, group: str, allowed: bool
) -> None:
    assert can(kube, verb, resource, group) is allowed
