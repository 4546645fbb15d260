"""Placement profiles: where each cloud puts confidential nodes (pure).

A profile turns (TEE type, GPU or not) into the nodeSelector and tolerations of that cloud's
confidential node pools (labels documented in e2e/sandbox/NODE-POOLS.md). The pool's own
placement fields are merged over the result: nodeSelector keys override, tolerations add,
runtimeClassName replaces. Profile coco selects no nodes itself: its Confidential Containers
RuntimeClass (picked from the TEE type and GPUs) carries the nodeSelector of the hosts that
run it, which the apiserver adds to the pod (RuntimeClass scheduling).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from teeroute.api.minerpool import Placement
from teeroute.api.runtime_class import COCO_GPU, coco_default

Obj = dict[str, Any]

AKS_CVM = {"kubernetes.azure.com/security-type": "ConfidentialVM"}
AKS_GPU = {"kubernetes.azure.com/accelerator": "nvidia"}
AKS_GPU_TAINT = {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}
GKE_CONFIDENTIAL = "cloud.google.com/gke-confidential-nodes-instance-type"
GKE_TEE = {"sev-snp": "SEV_SNP", "tdx": "TDX"}
GKE_GPU = {"cloud.google.com/gke-gpu": "true"}
GKE_GPU_TAINT = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
KIND_SIMULATED = {"teeroute.dev/simulated-tee": "true"}
GPU_CC_READY = {"nvidia.com/cc.ready.state": "true"}
"""Set by the NVIDIA GPU Operator once the node's GPUs are in confidential-computing mode
(nvidia.com/cc.mode on or ppcie); the Kata GPU RuntimeClasses may add it too."""
GPU_RESOURCE = "nvidia.com/gpu"
PASSTHROUGH_GPU_RESOURCE = "nvidia.com/pgpu"
"""What the GPU Operator's sandbox device plugin advertises for GPUs passed into Kata VMs."""


@dataclass(frozen=True)
class Scheduling:
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[Obj] = field(default_factory=list)
    affinity: Obj = field(default_factory=dict)
    runtime_class_name: str | None = None

    @property
    def gpu_resource(self) -> str:
        """The extended resource the engine requests its GPUs as."""
        if self.runtime_class_name in COCO_GPU:
            return PASSTHROUGH_GPU_RESOURCE
        return GPU_RESOURCE


def profile_defaults(profile: str, tee: str, gpu: bool) -> Scheduling:
    if profile == "aks":
        return Scheduling(
            {**AKS_CVM, **(AKS_GPU if gpu else {})}, [dict(AKS_GPU_TAINT)] if gpu else []
        )
    if profile == "gke":
        selector = {GKE_CONFIDENTIAL: GKE_TEE[tee], **(GKE_GPU if gpu else {})}
        return Scheduling(selector, [dict(GKE_GPU_TAINT)] if gpu else [])
    if profile == "coco":
        selector = dict(GPU_CC_READY) if gpu else {}
        return Scheduling(selector, runtime_class_name=coco_default(tee, gpu))
    return Scheduling(dict(KIND_SIMULATED) if tee == "simulated" else {})


def scheduling(placement: Placement, tee: str, gpu: bool) -> Scheduling:
    base = profile_defaults(placement.profile, tee, gpu)
    extra = [t.model_dump(by_alias=True, exclude_defaults=True) for t in placement.tolerations]
    return Scheduling(
        node_selector={**base.node_selector, **placement.node_selector},
        tolerations=base.tolerations + [t for t in extra if t not in base.tolerations],
        affinity=dict(placement.affinity),
        runtime_class_name=placement.runtime_class_name or base.runtime_class_name,
    )
