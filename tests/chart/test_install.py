"""`helm install` of the kind preset into the sandbox, as a user (and `make demo`) does it:
the operator and gateway run from their images (teeroute.dev/*:0.1.0 in the OCI image store,
`teeroute images build`) through the sandbox runner and become Ready; `helm upgrade` with a
changed value rolls the gateway out; `helm uninstall` leaves only the CRDs."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from teeroute_operator import release_key
from teeroute_sandbox.cluster import Sandbox
from teeroute_sandbox.restclient import KubeRest
from teeroute_sandbox.settings import default_image_store
from teeroute_sandbox.simtee import SimulatedVendor
from teeroute_sandbox.testing import runner_ready, wait_for
from tests import gateway_key
from tests.chart.helm import CHART, Helm

pytestmark = pytest.mark.sandbox
RELEASE = "teeroute"
IMAGES = ("teeroute.dev/operator:0.1.0", "teeroute.dev/gateway:0.1.0")
CRDS = (
    "minerpools.teeroute.dev",
    "routes.teeroute.dev",
    "clusterkopfpeerings.kopf.dev",
    "kopfpeerings.kopf.dev",
)
NAMESPACED = (
    "deployments",
    "services",
    "serviceaccounts",
    "configmaps",
    "networkpolicies",
    "poddisruptionbudgets",
)


def _images_in_store() -> set[str]:
    index = default_image_store() / "index.json"
    if not index.is_file():
        return set()
    manifests = json.loads(index.read_text()).get("manifests", [])
    return {
        m.get("annotations", {}).get("org.opencontainers.image.ref.name", "") for m in manifests
    }


def _secret(kubectl: Any, namespace: str, name: str, key: str, path: Path) -> None:
    kubectl("-n", namespace, "create", "secret", "generic", name, f"--from-file={key}={path}")


def _keys(kubectl: Any, namespace: str, tmp: Path) -> str:
    """The release key's and gateway key's Secrets; returns the release key's public half."""
    public = release_key.create(tmp / "release-key.pem")
    _secret(kubectl, namespace, "teeroute-release-key", "release-key.pem", tmp / "release-key.pem")
    pem = gateway_key.PRIVATE.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp / "gateway-key.pem").write_bytes(pem)
    _secret(kubectl, namespace, "teeroute-gateway-key", "gateway-key.pem", tmp / "gateway-key.pem")
    return base64.b64encode(public).decode()


def _adopt_crds(kubectl: Any, namespace: str) -> None:
    """CRDs other tests applied (crds/, the chart's kopf CRDs) become the release's, as
    docs/helm.md tells users who applied crds/ before installing."""
    for crd in CRDS:
        if kubectl("get", "crd", crd, check=False).returncode == 0:
            kubectl("label", "crd", crd, "app.kubernetes.io/managed-by=Helm", "--overwrite")
            kubectl(
                "annotate",
                "crd",
                crd,
                f"meta.helm.sh/release-name={RELEASE}",
                f"meta.helm.sh/release-namespace={namespace}",
                "--overwrite",
            )


def _ready_pods(kube: KubeRest, namespace: str, component: str) -> list[dict[str, Any]]:
    pods = kube.get(
        f"/api/v1/namespaces/{namespace}/pods",
        labelSelector=f"app.kubernetes.io/name=teeroute-{component},app.kubernetes.io/instance={RELEASE}",
    )["items"]
    return [p for p in pods if runner_ready(p) and not p["metadata"].get("deletionTimestamp")]


def _release_objects(kube: KubeRest, namespace: str) -> list[str]:
    found = []
    for plural in NAMESPACED:
        group = {
            "deployments": "apis/apps/v1",
            "networkpolicies": "apis/networking.k8s.io/v1",
            "poddisruptionbudgets": "apis/policy/v1",
        }.get(plural, "api/v1")
        items = kube.get(
            f"/{group}/namespaces/{namespace}/{plural}",
            labelSelector=f"app.kubernetes.io/instance={RELEASE}",
        )["items"]
        found += [f"{plural}/{i['metadata']['name']}" for i in items]
    for plural in ("clusterroles", "clusterrolebindings"):
        items = kube.get(
            f"/apis/rbac.authorization.k8s.io/v1/{plural}",
            labelSelector=f"app.kubernetes.io/instance={RELEASE}",
        )["items"]
        found += [f"{plural}/{i['metadata']['name']}" for i in items]
    return found


def test_install_upgrade_uninstall_the_kind_preset(
    helm: Helm, sandbox: Sandbox, kube: KubeRest, kubectl: Any, namespace: str, tmp_path: Path
) -> None:
    missing = set(IMAGES) - _images_in_store()
    assert not missing, (
        f"{sorted(missing)} not in {default_image_store()}: run `teeroute images build`"
    )
    operator_key = _keys(kubectl, namespace, tmp_path)
    root = tmp_path / "root.pem"
    root.write_bytes(SimulatedVendor(sandbox.layout.root / "simulated-tee").root_pem())
    _adopt_crds(kubectl, namespace)
    common = ["--kubeconfig", str(sandbox.kubeconfig), "-n", namespace]
    helm.run(
        "install",
        RELEASE,
        str(CHART),
        *common,
        "-f",
        str(CHART / "values-kind.yaml"),
        "--set",
        f"gateway.operatorKey={operator_key}",
        "--set",
        f"operator.gatewayKeys[0]={gateway_key.PUBLIC_B64}",
        "--set-file",
        f"simulatedTee.rootPem={root}",
    )
    try:
        for component in ("operator", "gateway"):
            wait_for(
                lambda c=component: _ready_pods(kube, namespace, c),
                timeout_s=240,
                interval_s=1,
                what=f"the {component} Ready",
            )
        (before,) = _ready_pods(kube, namespace, "gateway")
        helm.run(
            "upgrade",
            RELEASE,
            str(CHART),
            *common,
            "--reuse-values",
            "--set",
            "gateway.accessLog=true",
        )
        after = wait_for(
            lambda: [
                p
                for p in _ready_pods(kube, namespace, "gateway")
                if p["metadata"]["name"] != before["metadata"]["name"]
            ],
            timeout_s=240,
            interval_s=1,
            what="the upgraded gateway Ready",
        )
        env = {e["name"]: e.get("value") for e in after[0]["spec"]["containers"][0]["env"]}
        assert env["TEEROUTE_GATEWAY_ACCESS_LOG"] == "true"
    finally:
        subprocess.run(
            [str(helm.binary), "uninstall", RELEASE, *common, "--wait"],
            capture_output=True,
            timeout=180,
        )
    wait_for(
        lambda: _release_objects(kube, namespace) == [],
        timeout_s=120,
        what="nothing of the release left",
    )
    for crd in CRDS:
        assert kube.get_or_none(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd}")
