"""Confidential Containers runtime classes as a placement option: what the models accept and
refuse (naming the field), and what lands in the Deployment's pod spec."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from teeroute.api import MinerPool
from teeroute.api.minerpool import spec_problems
from teeroute.api.runtime_class import COCO_TEE, coco_default
from teeroute_operator import builders

from ..cases import valid_pool

FIELD = "spec.placement.runtimeClassName"


def body(tee: str, profile: str, runtime_class: str | None = None, gpus: int = 0) -> Any:
    pool = valid_pool("cc")
    pool["metadata"].update(namespace="ns", uid="uid-1")
    spec = pool["spec"]
    spec["tee"] = {"type": tee}
    spec["placement"] = {"profile": profile}
    if runtime_class is not None:
        spec["placement"]["runtimeClassName"] = runtime_class
    if gpus:
        spec["resources"] = {"gpus": gpus}
    return pool


def pod_of(pool: dict[str, Any]) -> dict[str, Any]:
    deployment = builders.build_deployment(MinerPool.model_validate(pool), release_key=b"")
    return deployment["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def engine_limits(pod: dict[str, Any]) -> dict[str, str]:
    (engine,) = [c for c in pod["containers"] if c["name"] == "engine"]
    return engine["resources"]["limits"]  # type: ignore[no-any-return]


ACCEPTED = [
    ("sev-snp", "coco", "kata-qemu-snp", 0),
    ("tdx", "coco", "kata-qemu-tdx", 0),
    ("sev-snp", "coco", "kata-qemu-nvidia-gpu-snp", 1),
    ("tdx", "coco", "kata-qemu-nvidia-gpu-tdx", 8),
    ("simulated", "kind", "kata-qemu-coco-dev", 0),
    ("tdx", "gke", "nvidia", 1),
]


@pytest.mark.parametrize(("tee", "profile", "runtime_class", "gpus"), ACCEPTED)
def test_each_runtime_class_lands_in_the_pod_spec(
    tee: str, profile: str, runtime_class: str, gpus: int
) -> None:
    pod = pod_of(body(tee, profile, runtime_class, gpus))
    assert pod["runtimeClassName"] == runtime_class


@pytest.mark.parametrize(
    ("tee", "gpus", "expected"),
    [
        ("sev-snp", 0, "kata-qemu-snp"),
        ("tdx", 0, "kata-qemu-tdx"),
        ("sev-snp", 2, "kata-qemu-nvidia-gpu-snp"),
        ("tdx", 1, "kata-qemu-nvidia-gpu-tdx"),
    ],
)
def test_profile_coco_picks_the_class_from_the_tee_and_gpus(
    tee: str, gpus: int, expected: str
) -> None:
    pod = pod_of(body(tee, "coco", gpus=gpus))
    assert pod["runtimeClassName"] == expected
    # the RuntimeClass places the pod on the hosts that run it: no cloud labels are required,
    # only (for GPUs) the GPU Operator's word that the GPUs are in confidential-computing mode
    cc_ready = {"nvidia.com/cc.ready.state": "true"} if gpus else {}
    assert pod["nodeSelector"] == cc_ready


def test_gpus_passed_into_a_kata_vm_are_requested_as_passthrough_gpus() -> None:
    limits = engine_limits(pod_of(body("tdx", "coco", gpus=2)))
    assert limits["nvidia.com/pgpu"] == "2"
    assert "nvidia.com/gpu" not in limits


def test_gpus_on_a_confidential_vm_node_stay_plain_gpus() -> None:
    limits = engine_limits(pod_of(body("tdx", "gke", "nvidia", gpus=1)))
    assert limits["nvidia.com/gpu"] == "1"
    assert "nvidia.com/pgpu" not in limits


def test_no_runtime_class_outside_coco_leaves_the_cluster_default() -> None:
    assert "runtimeClassName" not in pod_of(body("sev-snp", "aks"))


REFUSED = [
    ("typo", "sev-snp", "coco", "kata-qemu-snpp", 0),
    ("gvisor-is-no-tee", "sev-snp", "aks", "gvisor", 0),
    ("snp-class-on-a-tdx-pool", "tdx", "coco", "kata-qemu-snp", 0),
    ("tdx-class-on-an-snp-pool", "sev-snp", "coco", "kata-qemu-nvidia-gpu-tdx", 1),
    ("coco-dev-claims-hardware", "sev-snp", "coco", "kata-qemu-coco-dev", 0),
    ("gpu-class-without-gpus", "sev-snp", "coco", "kata-qemu-nvidia-gpu-snp", 0),
    ("cpu-class-with-gpus", "tdx", "coco", "kata-qemu-tdx", 1),
    ("kata-on-an-aks-cvm-node", "sev-snp", "aks", "kata-qemu-snp", 0),
    ("kata-on-a-gke-confidential-node", "tdx", "gke", "kata-qemu-tdx", 0),
    ("coco-profile-without-kata", "tdx", "coco", "nvidia", 1),
    ("simulated-under-coco", "simulated", "coco", None, 0),
]


@pytest.mark.parametrize(
    ("case", "tee", "profile", "runtime_class", "gpus"), REFUSED, ids=[c[0] for c in REFUSED]
)
def test_a_wrong_runtime_class_is_refused(
    case: str, tee: str, profile: str, runtime_class: str | None, gpus: int
) -> None:
    with pytest.raises(ValidationError) as refused:
        MinerPool.model_validate(body(tee, profile, runtime_class, gpus))
    assert refused.value.errors(), case


def test_a_typo_is_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError) as refused:
        MinerPool.model_validate(body("sev-snp", "coco", "kata-qemu-snpp"))
    (error,) = refused.value.errors()
    assert ".".join(str(p) for p in error["loc"]) == FIELD
    assert "kata-qemu-snp" in error["msg"]  # the allowed values are listed


def test_cross_field_refusals_name_the_runtime_class() -> None:
    with pytest.raises(ValidationError) as refused:
        MinerPool.model_validate(body("tdx", "coco", "kata-qemu-snp"))
    assert "runtime class must match tee.type" in str(refused.value)


def test_every_coco_class_has_a_tee_and_the_default_agrees_with_it() -> None:
    for tee in ("sev-snp", "tdx"):
        for gpu in (False, True):
            chosen = coco_default(tee, gpu)
            assert chosen is not None
            assert COCO_TEE[chosen] == tee
    assert coco_default("simulated", False) is None


def test_spec_problems_is_empty_for_every_accepted_placement() -> None:
    for tee, profile, runtime_class, gpus in ACCEPTED:
        spec = MinerPool.model_validate(body(tee, profile, runtime_class, gpus)).spec
        assert spec_problems(spec) == []
