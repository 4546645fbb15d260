"""Simulated nodes that look like real confidential node pools (pure data, no I/O).

Labels, taints and allocatable resources follow what AKS and GKE put on such nodes; the
sources are in e2e/sandbox/NODE-POOLS.md. kwok keeps the nodes Ready (annotation
`kwok.x-k8s.io/node: fake`); each gets a /24 of the pod range, from which kwok assigns pod
addresses.
"""

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import dataclass
from typing import Any

KWOK_ANNOTATION = {"kwok.x-k8s.io/node": "fake"}
SIMULATED_TEE_LABEL = "teeroute.dev/simulated-tee"
"""Set on kind-style nodes through kind's `labels:` node config: the only pool where the
simulated TEE is offered. Real pools are found by their cloud's own labels."""


@dataclass(frozen=True)
class NodePool:
    name: str
    node_names: tuple[str, ...]
    labels: dict[str, str]
    taints: tuple[dict[str, str], ...]
    capacity: dict[str, str]
    allocatable: dict[str, str]
    provider_id: str
    """Format string taking `{node}`."""
    internal_ip_base: str
    os_image: str


_LINUX = {
    "kubernetes.io/os": "linux",
    "kubernetes.io/arch": "amd64",
    "beta.kubernetes.io/os": "linux",
    "beta.kubernetes.io/arch": "amd64",
}

AKS_CVM_GPU = NodePool(
    name="aks-cvmgpu",
    node_names=("aks-cvmgpu-31415926-vmss000000", "aks-cvmgpu-31415926-vmss000001"),
    labels={
        **_LINUX,
        "agentpool": "cvmgpu",
        "kubernetes.azure.com/agentpool": "cvmgpu",
        "kubernetes.azure.com/mode": "user",
        "kubernetes.azure.com/role": "agent",
        "kubernetes.azure.com/cluster": "MC_teeroute_sandbox_eastus2",
        "kubernetes.azure.com/security-type": "ConfidentialVM",
        "kubernetes.azure.com/accelerator": "nvidia",
        # A CVM pool on Kubernetes 1.34-1.38 defaults to Ubuntu 24.04 (20.04 up to 1.33; no
        # 22.04 for CVM): NODE-POOLS.md section 1a.
        "kubernetes.azure.com/os-sku": "Ubuntu",
        "kubernetes.azure.com/os-sku-requested": "Ubuntu",
        "kubernetes.azure.com/os-sku-effective": "Ubuntu2404",
        "kubernetes.azure.com/node-image-version": "AKSUbuntu-2404gen2cvmcontainerd-202511.07.0",
        "kubernetes.azure.com/nodepool-type": "VirtualMachineScaleSets",
        "kubernetes.azure.com/storageprofile": "managed",
        "node.kubernetes.io/instance-type": "Standard_NCC40ads_H100_v5",
        "topology.kubernetes.io/region": "eastus2",
        "topology.kubernetes.io/zone": "eastus2-1",
    },
    taints=({"key": "sku", "value": "gpu", "effect": "NoSchedule"},),
    capacity={
        "cpu": "40",
        "memory": "330301440Ki",
        "pods": "250",
        "nvidia.com/gpu": "1",
        "ephemeral-storage": "259966896Ki",
    },
    allocatable={
        "cpu": "39500m",
        "memory": "325000000Ki",
        "pods": "250",
        "nvidia.com/gpu": "1",
        "ephemeral-storage": "239585757Ki",
    },
    provider_id="azure:///subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/"
    "mc_teeroute_sandbox_eastus2/providers/Microsoft.Compute/virtualMachineScaleSets/"
    "aks-cvmgpu-31415926-vmss/virtualMachines/{index}",
    internal_ip_base="10.224.0.4",
    os_image="Ubuntu 24.04.3 LTS",
)

GKE_TDX_GPU = NodePool(
    name="gke-tdxgpu",
    node_names=("gke-teeroute-tdxgpu-5f3a9c1e-k2lm", "gke-teeroute-tdxgpu-5f3a9c1e-q8vz"),
    labels={
        **_LINUX,
        "cloud.google.com/gke-nodepool": "tdxgpu",
        "cloud.google.com/gke-confidential-nodes-instance-type": "TDX",
        "cloud.google.com/machine-family": "a3",
        "cloud.google.com/gke-accelerator": "nvidia-h100-80gb",
        "cloud.google.com/gke-gpu": "true",
        "cloud.google.com/gke-spot": "true",
        "cloud.google.com/gke-os-distribution": "cos",
        "cloud.google.com/gke-boot-disk": "pd-balanced",
        "cloud.google.com/gke-container-runtime": "containerd",
        "node.kubernetes.io/instance-type": "a3-highgpu-1g",
        "topology.kubernetes.io/region": "us-central1",
        "topology.kubernetes.io/zone": "us-central1-a",
    },
    taints=({"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"},),
    capacity={
        "cpu": "26",
        "memory": "245366784Ki",
        "pods": "110",
        "nvidia.com/gpu": "1",
        "ephemeral-storage": "98831908Ki",
    },
    allocatable={
        "cpu": "25865m",
        "memory": "233201664Ki",
        "pods": "110",
        "nvidia.com/gpu": "1",
        "ephemeral-storage": "47060071478",
    },
    provider_id="gce://teeroute-sandbox/us-central1-a/{node}",
    internal_ip_base="10.128.0.10",
    os_image="Container-Optimized OS from Google",
)

KIND_SIMULATED = NodePool(
    name="kind-simtee",
    node_names=("sandbox-worker", "sandbox-worker2", "sandbox-worker3"),
    labels={**_LINUX, SIMULATED_TEE_LABEL: "true"},
    taints=(),
    capacity={
        "cpu": "8",
        "memory": "16393216Ki",
        "pods": "110",
        "ephemeral-storage": "102687672Ki",
    },
    allocatable={
        "cpu": "8",
        "memory": "16393216Ki",
        "pods": "110",
        "ephemeral-storage": "102687672Ki",
    },
    provider_id="kind://docker/sandbox/{node}",
    internal_ip_base="172.18.0.3",
    os_image="Debian GNU/Linux 12 (bookworm)",
)

POOLS: tuple[NodePool, ...] = (AKS_CVM_GPU, GKE_TDX_GPU, KIND_SIMULATED)


def node_manifests(pod_cidr: str, kubelet_version: str) -> list[dict[str, Any]]:
    """Every node of every pool, each with its own /24 of `pod_cidr`."""
    subnets = ipaddress.ip_network(pod_cidr).subnets(new_prefix=24)
    next(subnets)  # keep the first /24 free: x.x.0.0 reads like a network address
    nodes = []
    for pool in POOLS:
        for index, name in enumerate(pool.node_names):
            nodes.append(node_manifest(pool, index, name, str(next(subnets)), kubelet_version))
    return nodes


def node_manifest(
    pool: NodePool, index: int, name: str, pod_cidr: str, kubelet_version: str
) -> dict[str, Any]:
    internal_ip = str(ipaddress.ip_address(pool.internal_ip_base) + index)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                **pool.labels,
                "kubernetes.io/hostname": name,
                "teeroute.dev/sandbox-pool": pool.name,
            },
            "annotations": {**KWOK_ANNOTATION, "node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {
            "podCIDR": pod_cidr,
            "podCIDRs": [pod_cidr],
            "providerID": pool.provider_id.format(node=name, index=index),
            "taints": [dict(t) for t in pool.taints],
        },
        "status": {
            "capacity": dict(pool.capacity),
            "allocatable": dict(pool.allocatable),
            "addresses": [
                {"type": "InternalIP", "address": internal_ip},
                {"type": "Hostname", "address": name},
            ],
            "nodeInfo": _node_info(pool, name, kubelet_version),
        },
    }


def _node_info(pool: NodePool, name: str, kubelet_version: str) -> dict[str, str]:
    machine = uuid.uuid5(uuid.NAMESPACE_DNS, f"{name}.sandbox.teeroute.dev")
    return {
        "kubeletVersion": kubelet_version,
        "kubeProxyVersion": "",
        "osImage": pool.os_image,
        "operatingSystem": "linux",
        "architecture": "amd64",
        "containerRuntimeVersion": "containerd://1.7.27",
        "kernelVersion": "6.8.0-1021-azure" if pool is AKS_CVM_GPU else "6.6.0",
        "bootID": str(uuid.uuid5(machine, "boot")),
        "machineID": machine.hex,
        "systemUUID": str(machine),
    }
