"""CustomResourceDefinitions behave as on any cluster: structural schema, pruning,
validation and the status subresource (the operator's CRDs depend on all four)."""

from __future__ import annotations

from typing import Any

import pytest

from teeroute_sandbox.restclient import ApiError, KubeRest
from teeroute_sandbox.testing import wait_for

pytestmark = pytest.mark.sandbox

GROUP = "sandbox.teeroute.dev"
CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"widgets.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {
                                    "size": {"type": "integer", "minimum": 1},
                                    "color": {"type": "string", "enum": ["red", "blue"]},
                                },
                            },
                            "status": {
                                "type": "object",
                                "properties": {"observedGeneration": {"type": "integer"}},
                            },
                        },
                    }
                },
            }
        ],
    },
}


@pytest.fixture(scope="module")
def widgets(kube: KubeRest) -> str:
    if (
        kube.get_or_none(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.{GROUP}")
        is None
    ):
        kube.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", CRD)

    def established() -> bool:
        crd = kube.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.{GROUP}")
        return any(
            c["type"] == "Established" and c["status"] == "True"
            for c in (crd.get("status") or {}).get("conditions") or []
        )

    wait_for(established, what="the CRD to be established")
    wait_for(lambda: kube.get(f"/apis/{GROUP}/v1"), what="the API group to be served")
    return f"/apis/{GROUP}/v1"


def widget(name: str, spec: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": spec,
        **extra,
    }


def test_unknown_fields_are_pruned(kube: KubeRest, namespace: str, widgets: str) -> None:
    path = f"{widgets}/namespaces/{namespace}/widgets"
    kube.post(path, widget("w", {"size": 2, "shape": "round"}, junk={"x": 1}))
    stored = kube.get(f"{path}/w")
    assert stored["spec"] == {"size": 2}
    assert "junk" not in stored


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"size": 0}, "spec.size"),
        ({"size": 1, "color": "green"}, "spec.color"),
        ({}, "spec.size"),
        ({"size": "big"}, "spec.size"),
    ],
)
def test_invalid_objects_are_rejected_naming_the_field(
    kube: KubeRest, namespace: str, widgets: str, spec: dict[str, Any], field: str
) -> None:
    with pytest.raises(ApiError) as rejected:
        kube.post(f"{widgets}/namespaces/{namespace}/widgets", widget("bad", spec))
    assert rejected.value.status == 422
    assert field in str(rejected.value)


def test_status_subresource_is_separate_from_spec(
    kube: KubeRest, namespace: str, widgets: str
) -> None:
    path = f"{widgets}/namespaces/{namespace}/widgets"
    created = kube.post(path, widget("w", {"size": 1}, status={"observedGeneration": 99}))
    assert "status" not in created  # status is ignored on create
    kube.patch(f"{path}/w/status", {"status": {"observedGeneration": 1}})
    kube.patch(f"{path}/w", {"spec": {"size": 3}, "status": {"observedGeneration": 7}})
    stored = kube.get(f"{path}/w")
    assert stored["spec"]["size"] == 3
    assert stored["status"] == {"observedGeneration": 1}  # spec writes cannot touch status
    assert stored["metadata"]["generation"] == 2  # status writes do not bump generation
