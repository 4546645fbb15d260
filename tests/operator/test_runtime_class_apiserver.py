"""The apiserver holds runtime classes to the same rules as the models (CEL in crds/): a typo
or a class that does not fit the pool's TEE, GPUs or profile is refused at apply time, naming
spec.placement.runtimeClassName; the accepted ones are stored as written."""

from __future__ import annotations

import pytest

from teeroute_sandbox.restclient import ApiError, KubeRest

from .unit.test_runtime_class import ACCEPTED, FIELD, REFUSED, body

API = "/apis/teeroute.dev/v1alpha1/namespaces"
pytestmark = pytest.mark.sandbox


@pytest.mark.parametrize(
    ("case", "tee", "profile", "runtime_class", "gpus"),
    [c for c in REFUSED if c[0] != "simulated-under-coco"],  # refused on spec.tee.type
    ids=[c[0] for c in REFUSED if c[0] != "simulated-under-coco"],
)
def test_apiserver_refuses_a_wrong_runtime_class_naming_the_field(
    kube: KubeRest,
    crds: None,
    namespace: str,
    case: str,
    tee: str,
    profile: str,
    runtime_class: str | None,
    gpus: int,
) -> None:
    pool = body(tee, profile, runtime_class, gpus)
    pool["metadata"] = {"name": "cc"}
    with pytest.raises(ApiError) as refused:
        kube.post(f"{API}/{namespace}/minerpools", pool)
    assert refused.value.status == 422, refused.value
    assert FIELD in str(refused.value), case


def test_apiserver_accepts_every_fitting_runtime_class(
    kube: KubeRest, crds: None, namespace: str
) -> None:
    for index, (tee, profile, runtime_class, gpus) in enumerate(ACCEPTED):
        pool = body(tee, profile, runtime_class, gpus)
        pool["metadata"] = {"name": f"cc-{index}"}
        stored = kube.post(f"{API}/{namespace}/minerpools", pool)
        assert stored["spec"]["placement"]["runtimeClassName"] == runtime_class
    default = body("tdx", "coco", gpus=1)
    default["metadata"] = {"name": "cc-default"}
    assert (
        "runtimeClassName"
        not in kube.post(f"{API}/{namespace}/minerpools", default)["spec"]["placement"]
    )
