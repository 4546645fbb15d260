"""MinerPool -> the objects that run it (pure: manifests as dicts, no I/O).

A pool run by the operator gets a Deployment (agent + engine containers on confidential
nodes; a relay pool's pods run the agent alone, its engine being the upstream API at
spec.relay.url), a Service *without a selector* whose EndpointSlices the attestation sweeper writes
with attested endpoints only, and a PodDisruptionBudget. A pool of external endpoints gets
only the Service. All are owned by the pool, so deleting it deletes them.

`release_key` is the operator's release public key (raw 32 bytes; empty: it has none): the
agents pin it (TEEROUTE_AGENT_RELEASE_KEY) and accept secret releases signed by it alone.
`gateway_keys` are the gateway's public keys (TEEROUTE_OPERATOR_GATEWAY_KEYS, as given): the
agents pin them (TEEROUTE_AGENT_GATEWAY_KEYS) and answer inference to requests they signed
alone; empty: the agents answer no inference. A pool with `sealing: required` starts its
agents refusing plain requests (TEEROUTE_AGENT_REQUIRE_SEALED).

A pool run by the operator also gets a NetworkPolicy (`build_network_policy`): its pods take
connections on the agent's port only from the gateway's and the operator's pods. It is defence
in depth (a namespace editor can delete it, and only a CNI that enforces NetworkPolicies
applies it); the gateway's signed authorization is what the agent checks.
"""

from __future__ import annotations

import base64
from typing import Any

from teeroute.api import API_VERSION
from teeroute.api.minerpool import Images, MinerPool, Placement
from teeroute_operator import profiles

Obj = dict[str, Any]
MANAGED_BY = "teeroute-operator"
POOL_LABEL = "teeroute.dev/pool"
AGENT_PORT = 8443
ENGINE_PORT = 8000
RUN_AS = 65532
SIMULATED_TEE_SECRET = "teeroute-simulated-tee"  # noqa: S105 - a Secret's name
"""Simulated TEE only: the Secret in the pool's namespace with each node's chip key and
certificate (`<node>.key`, `<node>.crt`), as a real TEE has them fused in."""
SIMULATED_TEE_DIR = "/etc/teeroute/simulated-tee"
SECRETS_MOUNT = "/run/teeroute"
SECRETS_DIR = f"{SECRETS_MOUNT}/secrets"
"""Where the agent writes released secrets (other than the engine's API key, which it keeps in
memory) for the engine to read: a memory-backed emptyDir, never on the node's disk. The agent
creates the directory itself (0700, its own), inside the volume."""
RELEASE_KEY_ENV = "TEEROUTE_AGENT_RELEASE_KEY"
"""The agent's pinned release key: base64 of the operator's raw Ed25519 public key."""
GATEWAY_KEYS_ENV = "TEEROUTE_AGENT_GATEWAY_KEYS"
"""The gateway keys the agent pins: standard base64 of raw Ed25519 keys, comma-separated."""
REQUIRE_SEALED_ENV = "TEEROUTE_AGENT_REQUIRE_SEALED"
GATEWAY_LABEL = {"app.kubernetes.io/name": "teeroute-gateway"}
OPERATOR_LABEL = {"app.kubernetes.io/name": "teeroute-operator"}
"""The pods allowed to reach an agent (`build_network_policy`), in any namespace."""
POOL_ENV = "TEEROUTE_AGENT_POOL"
"""The pool the agent serves, "<namespace>/<name>": bound into its evidence (the sweeper
admits it to this pool only) and the only pool whose secret releases it accepts."""

_RESTRICTED = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
}


def labels(pool: MinerPool) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "teeroute-miner",
        "app.kubernetes.io/instance": pool.metadata.name,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        POOL_LABEL: pool.metadata.name,
    }


def pool_identity(pool: MinerPool) -> str:
    """What an agent of the pool binds into its evidence: "<namespace>/<name>"."""
    return f"{pool.metadata.namespace}/{pool.metadata.name}"


def selector(pool: MinerPool) -> dict[str, str]:
    return {"app.kubernetes.io/name": "teeroute-miner", POOL_LABEL: pool.metadata.name}


def owner_reference(pool: MinerPool) -> Obj:
    return {
        "apiVersion": API_VERSION,
        "kind": "MinerPool",
        "name": pool.metadata.name,
        "uid": pool.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(pool: MinerPool) -> Obj:
    return {
        "name": pool.metadata.name,
        "namespace": pool.metadata.namespace,
        "labels": labels(pool),
        "ownerReferences": [owner_reference(pool)],
    }


def children(pool: MinerPool, *, release_key: bytes, gateway_keys: str = "") -> list[Obj]:
    if pool.spec.endpoints is not None:
        return [build_service(pool)]
    return [
        build_deployment(pool, release_key=release_key, gateway_keys=gateway_keys),
        build_service(pool),
        build_pdb(pool),
        build_network_policy(pool),
    ]


def build_network_policy(pool: MinerPool) -> Obj:
    """Ingress to the pool's pods: the agent's port, from the gateway's and the operator's
    pods (any namespace) only; everything else, the engine's port included, is denied."""
    peers = [
        {"namespaceSelector": {}, "podSelector": {"matchLabels": dict(labels)}}
        for labels in (GATEWAY_LABEL, OPERATOR_LABEL)
    ]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(pool),
        "spec": {
            "podSelector": {"matchLabels": selector(pool)},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": peers, "ports": [{"protocol": "TCP", "port": AGENT_PORT}]}],
        },
    }


def build_service(pool: MinerPool) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(pool),
        "spec": {
            "type": "ClusterIP",
            "ports": [
                {"name": "agent", "port": AGENT_PORT, "targetPort": AGENT_PORT, "protocol": "TCP"}
            ],
        },
    }


def build_pdb(pool: MinerPool) -> Obj:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(pool),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(pool)}},
    }


def build_deployment(pool: MinerPool, *, release_key: bytes, gateway_keys: str = "") -> Obj:
    spec = pool.spec
    gpus = spec.resources.gpus if spec.resources else 0
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(pool),
        "spec": {
            "replicas": spec.desired_replicas,
            "selector": {"matchLabels": selector(pool)},
            # GPUs are scarce: replace in place rather than surge a pod nothing can host.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": (
                    {"maxSurge": 0, "maxUnavailable": 1}
                    if gpus
                    else {"maxSurge": 1, "maxUnavailable": 0}
                ),
            },
            "template": {
                "metadata": {
                    "labels": labels(pool),
                    "annotations": {"teeroute.dev/tee": spec.tee.type},
                },
                "spec": _pod_spec(pool, gpus, release_key, gateway_keys),
            },
        },
    }


def _operated(pool: MinerPool) -> tuple[Images, Placement]:
    """Images and placement of a pool the operator runs (the CRD requires both)."""
    if pool.spec.images is None or pool.spec.placement is None:
        raise ValueError(
            f"MinerPool {pool.metadata.name} lists external endpoints: "
            "the operator runs no pods for it"
        )
    return pool.spec.images, pool.spec.placement


def _pod_spec(pool: MinerPool, gpus: int, release_key: bytes, gateway_keys: str) -> Obj:
    images, placement = _operated(pool)
    where = profiles.scheduling(
        placement, pool.spec.tee.type, gpu=gpus > 0 or pool.spec.tee.gpu.required
    )
    spec: Obj = {
        "automountServiceAccountToken": False,  # miners never talk to the apiserver
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "nodeSelector": where.node_selector,
        "tolerations": where.tolerations,
        "containers": [_agent(pool, images, release_key, gateway_keys)],
        "volumes": [
            {"name": "tmp", "emptyDir": {}},
            {"name": "secrets", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
        ],
    }
    if images.engine is not None and pool.spec.relay is None:
        spec["containers"].append(
            _engine(pool, images.engine, images.pull_policy, (gpus, where.gpu_resource))
        )
        spec["volumes"].append({"name": "model-cache", "emptyDir": {}})
    if pool.spec.tee.type == "simulated":
        spec["volumes"].append(
            {
                "name": "simulated-tee",
                "secret": {"secretName": SIMULATED_TEE_SECRET, "defaultMode": 0o440},
            }
        )
    if where.affinity:
        spec["affinity"] = where.affinity
    if where.runtime_class_name:
        spec["runtimeClassName"] = where.runtime_class_name
    return spec


def _field_env(name: str, path: str) -> Obj:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def _agent(pool: MinerPool, images: Images, release_key: bytes, gateway_keys: str) -> Obj:
    health = {"httpGet": {"path": "/healthz", "port": "agent"}}
    env = [
        _field_env("POD_NAME", "metadata.name"),
        _field_env("POD_NAMESPACE", "metadata.namespace"),
        _field_env("NODE_NAME", "spec.nodeName"),
        {"name": "TEEROUTE_POOL", "value": pool.metadata.name},
        {"name": POOL_ENV, "value": pool_identity(pool)},
        {"name": "TEEROUTE_TEE", "value": pool.spec.tee.type},
        {"name": "TEEROUTE_AGENT_PORT", "value": str(AGENT_PORT)},
        {"name": "TEEROUTE_ENGINE_URL", "value": engine_url(pool)},
        {"name": "TEEROUTE_SIMULATED_DIR", "value": SIMULATED_TEE_DIR},
        {"name": "TEEROUTE_AGENT_SECRETS_DIR", "value": SECRETS_DIR},
        # a relay's upstream API has no /health and answers only once its key was released
        {"name": "TEEROUTE_ENGINE_HEALTH", "value": str(pool.spec.relay is None).lower()},
    ]
    if release_key:
        # A public key: the agent opens only releases signed by its private half.
        env.append({"name": RELEASE_KEY_ENV, "value": base64.b64encode(release_key).decode()})
    if gateway_keys:
        # Public keys: the agent answers inference only to requests their private halves signed.
        env.append({"name": GATEWAY_KEYS_ENV, "value": gateway_keys})
    if pool.spec.sealing == "required":
        env.append({"name": REQUIRE_SEALED_ENV, "value": "true"})
    return {
        "name": "agent",
        "image": images.agent,
        "imagePullPolicy": images.pull_policy,
        "ports": [{"name": "agent", "containerPort": AGENT_PORT, "protocol": "TCP"}],
        "env": env,
        # The pod is ready when the agent is, and the agent when the engine answers it.
        "readinessProbe": {**health, "periodSeconds": 5, "failureThreshold": 2},
        "livenessProbe": {**health, "periodSeconds": 10, "failureThreshold": 6},
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"memory": "256Mi"},
        },
        "securityContext": dict(_RESTRICTED),
        "volumeMounts": _agent_mounts(pool),
    }


def engine_url(pool: MinerPool) -> str:
    """Where the agent forwards inference: the relay's upstream, else the engine beside it
    on loopback."""
    if pool.spec.relay is not None:
        return pool.spec.relay.url
    return f"http://127.0.0.1:{ENGINE_PORT}"


def _agent_mounts(pool: MinerPool) -> list[Obj]:
    mounts: list[Obj] = [
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - a path in the pod
        {"name": "secrets", "mountPath": SECRETS_MOUNT},
    ]
    if pool.spec.tee.type == "simulated":
        mounts.append({"name": "simulated-tee", "mountPath": SIMULATED_TEE_DIR, "readOnly": True})
    return mounts


def _engine(pool: MinerPool, image: str, pull_policy: str, gpus: tuple[int, str]) -> Obj:
    """`gpus`: how many, and the resource they are requested as (pgpu under Kata)."""
    resources = pool.spec.resources
    cpu, memory = (resources.cpu, resources.memory) if resources else ("1", "2Gi")
    amounts: Obj = {"cpu": cpu, "memory": memory}
    count, gpu_resource = gpus
    if count:
        amounts[gpu_resource] = str(count)
    model = pool.spec.models[0].name
    return {
        "name": "engine",
        "image": image,
        "imagePullPolicy": pull_policy,
        # Loopback only: nothing but the agent beside it may reach the engine.
        "args": ["--model", model, "--host", "127.0.0.1", "--port", str(ENGINE_PORT)],
        "env": [
            {"name": "HF_HOME", "value": "/var/cache/engine"},
            {"name": "HOME", "value": "/tmp"},  # noqa: S108 - a path in the pod
        ],
        "resources": {"requests": amounts, "limits": amounts},
        "securityContext": dict(_RESTRICTED),
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - a path in the pod
            {"name": "model-cache", "mountPath": "/var/cache/engine"},
            {"name": "secrets", "mountPath": SECRETS_MOUNT, "readOnly": True},
        ],
    }
