"""Which pods are the pool's own (pure, plus one read): only those are ever challenged.

Anyone who may create pods in the miner's namespace can give a pod the pool's label. A pod is
the pool's only when its controller is a ReplicaSet whose controller is the Deployment the
operator made for the pool (matched by uid, not by name), it carries that ReplicaSet's
pod-template-hash, and its containers run exactly the images of that ReplicaSet's template
(a pod editor may change a running pod's image: such a pod is not challenged, so it is never
admitted and its slot stays out until the ReplicaSet replaces it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from teeroute.kube import Kube, paths
from teeroute_operator import builders

Obj = dict[str, Any]
TEMPLATE_HASH = "pod-template-hash"


def controller(obj: Obj) -> Obj | None:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return next((r for r in refs if isinstance(r, dict) and r.get("controller") is True), None)


def owned(pod: Obj, replicasets: Mapping[str, Obj], deployment_uid: str) -> bool:
    """The pod belongs to a ReplicaSet of the pool's Deployment and runs its template."""
    ref = controller(pod)
    if not deployment_uid or ref is None or ref.get("kind") != "ReplicaSet":
        return False
    rs = replicasets.get(str(ref.get("name")))
    if rs is None or rs["metadata"].get("uid") != ref.get("uid"):
        return False
    rs_ref = controller(rs)
    if rs_ref is None or rs_ref.get("kind") != "Deployment" or rs_ref.get("uid") != deployment_uid:
        return False
    return _labels(pod).get(TEMPLATE_HASH) == _labels(rs).get(TEMPLATE_HASH) and images(
        pod.get("spec") or {}
    ) == images(((rs.get("spec") or {}).get("template") or {}).get("spec") or {})


async def pool_pods(kube: Kube, pool: Any, pods: list[Obj]) -> list[Obj]:
    """`pods` (labelled with the pool) that are the pool's own."""
    if not pods:
        return []  # nothing to tell apart: no reads (a new pool's first sweeps)
    namespace, name = pool.metadata.namespace, pool.metadata.name
    deployment = await kube.get_or_none(
        f"{paths.collection('apps/v1', 'Deployment', namespace)}/{name}"
    )
    if deployment is None or (controller(deployment) or {}).get("uid") != pool.metadata.uid:
        return []
    found = await kube.list(
        paths.collection("apps/v1", "ReplicaSet", namespace),
        labelSelector=f"{builders.POOL_LABEL}={name}",
    )
    by_name = {rs["metadata"]["name"]: rs for rs in found}
    uid = deployment["metadata"].get("uid", "")
    return [p for p in pods if owned(p, by_name, uid)]


def _labels(obj: Obj) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def images(spec: Obj) -> dict[str, str]:
    return {
        str(c.get("name")): str(c.get("image"))
        for key in ("initContainers", "containers")
        for c in spec.get(key) or []
        if isinstance(c, dict)
    }
