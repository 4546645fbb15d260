"""Manifests from MinerPools (pure builders, no cluster)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from teeroute.api import MinerPool
from teeroute_operator import builders, profiles

from ..cases import ENDPOINTS, valid_pool


def make(**spec: Any) -> MinerPool:
    body = valid_pool("p")
    body["metadata"].update(namespace="ns", uid="uid-1", generation=3)
    body["spec"].update(spec)
    return MinerPool.model_validate(body)


def deployment(pool: MinerPool, release_key: bytes = b"") -> dict[str, Any]:
    return builders.build_deployment(pool, release_key=release_key)


def children(pool: MinerPool) -> list[dict[str, Any]]:
    return builders.children(pool, release_key=b"")


def containers(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}


def test_operator_pool_gets_deployment_service_pdb_and_network_policy_owned_by_it() -> None:
    kinds = [c["kind"] for c in children(make())]
    assert kinds == ["Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy"]
    for child in children(make()):
        assert child["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "teeroute.dev/v1alpha1",
                "kind": "MinerPool",
                "name": "p",
                "uid": "uid-1",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert child["metadata"]["labels"]["teeroute.dev/pool"] == "p"


def test_external_pool_gets_only_a_selectorless_service() -> None:
    pool = make(images=None, placement=None, replicas=None, endpoints=ENDPOINTS)
    (service,) = children(pool)
    assert service["kind"] == "Service"
    assert "selector" not in service["spec"]


def test_service_has_no_selector_so_only_the_sweeper_fills_its_endpoints() -> None:
    assert "selector" not in builders.build_service(make())["spec"]


def test_pods_are_locked_down() -> None:
    pod = deployment(make())["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    for container in pod["containers"]:
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
        assert sc["capabilities"] == {"drop": ["ALL"]}


def test_engine_listens_on_loopback_and_agent_is_probed() -> None:
    parts = containers(deployment(make()))
    args = parts["engine"]["args"]
    assert args[args.index("--host") + 1] == "127.0.0.1"
    assert "ports" not in parts["engine"]
    assert parts["agent"]["readinessProbe"]["httpGet"]["path"] == "/healthz"


def test_gpu_pool_requests_gpus_and_replaces_without_surge() -> None:
    pool = make(
        tee={"type": "sev-snp", "gpu": {"required": True}},
        placement={"profile": "aks"},
        resources={"gpus": 2, "cpu": "8", "memory": "64Gi"},
    )
    built = deployment(pool)
    engine = containers(built)["engine"]
    assert engine["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert built["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}


@pytest.mark.parametrize(
    ("profile", "tee", "gpu", "selector", "taint_keys"),
    [
        (
            "aks",
            "sev-snp",
            True,
            {
                "kubernetes.azure.com/security-type": "ConfidentialVM",
                "kubernetes.azure.com/accelerator": "nvidia",
            },
            ["sku"],
        ),
        ("aks", "sev-snp", False, {"kubernetes.azure.com/security-type": "ConfidentialVM"}, []),
        (
            "gke",
            "tdx",
            True,
            {
                "cloud.google.com/gke-confidential-nodes-instance-type": "TDX",
                "cloud.google.com/gke-gpu": "true",
            },
            ["nvidia.com/gpu"],
        ),
        (
            "gke",
            "sev-snp",
            False,
            {"cloud.google.com/gke-confidential-nodes-instance-type": "SEV_SNP"},
            [],
        ),
        ("kind", "simulated", False, {"teeroute.dev/simulated-tee": "true"}, []),
    ],
)
def test_profiles_find_the_confidential_nodes(
    profile: str, tee: str, gpu: bool, selector: dict[str, str], taint_keys: list[str]
) -> None:
    found = profiles.profile_defaults(profile, tee, gpu)
    assert found.node_selector == selector
    assert [t["key"] for t in found.tolerations] == taint_keys


def test_placement_overrides_merge_over_the_profile() -> None:
    pool = make(
        tee={"type": "tdx"},
        placement={
            "profile": "gke",
            "nodeSelector": {
                "cloud.google.com/gke-nodepool": "tdx-a",
                "cloud.google.com/gke-confidential-nodes-instance-type": "TDX",
            },
            "tolerations": [
                {"key": "dedicated", "operator": "Equal", "value": "miners", "effect": "NoSchedule"}
            ],
            "runtimeClassName": "nvidia",
        },
    )
    pod = deployment(pool)["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {
        "cloud.google.com/gke-confidential-nodes-instance-type": "TDX",
        "cloud.google.com/gke-nodepool": "tdx-a",
    }
    assert pod["tolerations"] == [{"key": "dedicated", "value": "miners", "effect": "NoSchedule"}]
    assert pod["runtimeClassName"] == "nvidia"


def test_replicas_default_to_one() -> None:
    assert deployment(make(replicas=None))["spec"]["replicas"] == 1


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container["env"]}


def test_the_agent_forwards_to_the_engine_beside_it_on_loopback() -> None:
    agent = containers(deployment(make()))["agent"]
    assert env_of(agent)["TEEROUTE_ENGINE_URL"] == "http://127.0.0.1:8000"


def test_a_relay_pool_runs_the_agent_alone_in_front_of_the_upstream() -> None:
    pool = make(
        images={"agent": "teeroute.dev/agent:0.1.0"},
        relay={"url": "https://api.provider.example/openai"},
    )
    pod = deployment(pool)["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["agent"]
    assert env_of(pod["containers"][0])["TEEROUTE_ENGINE_URL"] == (
        "https://api.provider.example/openai"
    )
    assert "model-cache" not in {v["name"] for v in pod["volumes"]}


def test_released_secrets_live_in_memory_shared_read_only_with_the_engine() -> None:
    pod = deployment(make())["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "secrets")
    assert volume["emptyDir"]["medium"] == "Memory"
    parts = {c["name"]: c for c in pod["containers"]}
    agent_mount = next(m for m in parts["agent"]["volumeMounts"] if m["name"] == "secrets")
    engine_mount = next(m for m in parts["engine"]["volumeMounts"] if m["name"] == "secrets")
    assert not agent_mount.get("readOnly") and engine_mount["readOnly"] is True
    secrets_dir = env_of(parts["agent"])["TEEROUTE_AGENT_SECRETS_DIR"]
    assert secrets_dir.startswith(agent_mount["mountPath"] + "/")


RELEASE_KEY = bytes(range(32))


def test_agents_pin_the_operators_release_key_when_it_has_one() -> None:
    agent = containers(deployment(make(), RELEASE_KEY))["agent"]
    assert env_of(agent)["TEEROUTE_AGENT_RELEASE_KEY"] == base64.b64encode(RELEASE_KEY).decode()
    relay = make(images={"agent": "a:1"}, relay={"url": "https://api.provider.example/v1"})
    (only,) = deployment(relay, RELEASE_KEY)["spec"]["template"]["spec"]["containers"]
    assert env_of(only)["TEEROUTE_AGENT_RELEASE_KEY"] == base64.b64encode(RELEASE_KEY).decode()
    assert "TEEROUTE_AGENT_RELEASE_KEY" not in env_of(containers(deployment(make()))["engine"])


def test_without_a_release_key_agents_pin_none() -> None:
    for container in containers(deployment(make())).values():
        assert "TEEROUTE_AGENT_RELEASE_KEY" not in env_of(container)
    assert (
        containers(deployment(make(), RELEASE_KEY))["engine"]
        == (containers(deployment(make()))["engine"])
    )


def test_a_pool_of_external_endpoints_gets_no_pods_whatever_the_key() -> None:
    pool = make(images=None, placement=None, replicas=None, endpoints=ENDPOINTS)
    assert builders.children(pool, release_key=RELEASE_KEY) == children(pool)
