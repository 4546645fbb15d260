"""RuntimeClasses a MinerPool's pods may run under (`spec.placement.runtimeClassName`).

Two kinds. `nvidia` is the NVIDIA GPU Operator's runtime for GPU containers on a node that is
itself a confidential VM (the aks and gke profiles): the node's launch measurement covers the
node image, not the pod. The `kata-qemu-*` classes are Confidential Containers (CoCo): each pod
boots its own confidential VM (Kata Containers under QEMU) on a host with CoCo installed, so
the TEE's evidence is the pod's own, and the Kata guest (firmware, kernel, initrd with the
kata-agent) is what the launch measurement covers. `kata-qemu-coco-dev` boots the same guest
without a TEE (test clusters, with the simulated TEE). See docs/confidential-containers.md.

The rules below are written twice, once as CEL (the apiserver, at apply time) and once in
Python (`problems`, for objects that never passed through an apiserver); tests hold them to
the same cases. The placement profile `coco` picks the class from the TEE type and GPUs
(`coco_default`) when the pool names none.
"""

from __future__ import annotations

from typing import Any, Literal

from teeroute.api.common import cel

RuntimeClassName = Literal[
    "kata-qemu-snp",
    "kata-qemu-tdx",
    "kata-qemu-nvidia-gpu-snp",
    "kata-qemu-nvidia-gpu-tdx",
    "kata-qemu-coco-dev",
    "nvidia",
]

COCO_TEE: dict[str, str] = {
    "kata-qemu-snp": "sev-snp",
    "kata-qemu-nvidia-gpu-snp": "sev-snp",
    "kata-qemu-tdx": "tdx",
    "kata-qemu-nvidia-gpu-tdx": "tdx",
    "kata-qemu-coco-dev": "simulated",
}
"""Each Confidential Containers class and the TEE its pod VMs run in."""
COCO_GPU = frozenset({"kata-qemu-nvidia-gpu-snp", "kata-qemu-nvidia-gpu-tdx"})
"""The classes that pass GPUs (in confidential-computing mode) into the pod's VM."""
COCO_HARDWARE = frozenset(COCO_TEE) - {"kata-qemu-coco-dev"}
"""The classes whose pod VMs are hardware TEEs: these, and only these, go with profile coco."""

TEE_MESSAGE = (
    "a kata-qemu runtime class must match tee.type: *-snp with sev-snp, *-tdx with tdx, "
    "kata-qemu-coco-dev with simulated"
)
GPU_MESSAGE = (
    "kata-qemu-nvidia-gpu-* classes pass GPUs into the pod's VM and the other kata-qemu "
    "classes none: use one exactly when resources.gpus is at least 1"
)
PROFILE_MESSAGE = (
    "profile coco runs pods under kata-qemu-snp, -tdx or -nvidia-gpu-snp/-tdx (default: "
    "picked from tee.type and GPUs), and those classes need profile coco (aks and gke nodes "
    "are confidential VMs themselves and run no Kata)"
)

_NAME = "self.placement.runtimeClassName"
_NAMED = f"!has(self.placement) || !has({_NAME})"
_GPUS = "(has(self.resources) && self.resources.gpus >= 1)"
_HARDWARE = "[" + ", ".join(f"'{c}'" for c in sorted(COCO_HARDWARE)) + "]"
CEL_RULES: list[tuple[str, str]] = [
    (
        f"{_NAMED} || !{_NAME}.startsWith('kata-qemu-') || ({_NAME}.endsWith('-snp') ? "
        f"self.tee.type == 'sev-snp' : {_NAME}.endsWith('-tdx') ? self.tee.type == 'tdx' : "
        "self.tee.type == 'simulated')",
        TEE_MESSAGE,
    ),
    (
        f"{_NAMED} || !{_NAME}.startsWith('kata-qemu-') || "
        f"{_NAME}.contains('-nvidia-gpu-') == {_GPUS}",
        GPU_MESSAGE,
    ),
    (
        f"!has(self.placement) || (has({_NAME}) ? ({_NAME} in {_HARDWARE}) == "
        "(self.placement.profile == 'coco') : true)",
        PROFILE_MESSAGE,
    ),
]
"""(rule, message) pairs for MinerPoolSpec's x-kubernetes-validations; each names
spec.placement.runtimeClassName."""


def coco_default(tee: str, gpu: bool) -> str | None:
    """The class profile coco uses when the pool names none (None: no TEE to run in)."""
    if tee not in ("sev-snp", "tdx"):
        return None
    return f"kata-qemu-{'nvidia-gpu-' if gpu else ''}{'snp' if tee == 'sev-snp' else 'tdx'}"


def problems(profile: str, runtime_class: str | None, tee: str, gpus: int) -> list[str]:
    """The CEL rules above, in Python: what is wrong with this placement (empty: nothing)."""
    if runtime_class is None:
        return []
    found = []
    if runtime_class in COCO_TEE and COCO_TEE[runtime_class] != tee:
        found.append(TEE_MESSAGE)
    if runtime_class in COCO_TEE and (runtime_class in COCO_GPU) != (gpus >= 1):
        found.append(GPU_MESSAGE)
    if (runtime_class in COCO_HARDWARE) != (profile == "coco"):
        found.append(PROFILE_MESSAGE)
    return found


def cel_rules() -> list[dict[str, Any]]:
    """The rules as x-kubernetes-validations entries."""
    return [
        cel(rule, message, field_path=".placement.runtimeClassName") for rule, message in CEL_RULES
    ]
