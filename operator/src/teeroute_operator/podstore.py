"""The pools' pods, kept in memory from the operator's pod watch (podwatch.py).

Every sweep and every status refresh used to list its pool's pods: at 500 pools the JSON of
those lists (each pod with its managedFields) was the largest single cost of the operator's
CPU while converging (docs/operator-scale.md). The watch already brings every pod event, so
the store keeps each pod as the operator reads it (`slim`: what status.py, ownership.py,
admit.py and endpointslice.py look at, nothing else) and answers those reads from memory.

It is the same apiserver data a list returns, a few milliseconds later at most, and it is
updated before the event wakes anything (handlers._register_pods), so a sweep woken by a pod
sees that pod. Reads wait until the watch has listed every namespace it follows once: an
empty store at start-up must not read as "the pool has no pods" (that would withdraw every
endpoint). If the watch has not listed within `wait_s`, the read goes to the apiserver.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from teeroute.kube import Kube, paths
from teeroute.kube.client import DELETED
from teeroute_operator import builders

Obj = dict[str, Any]


class PodSource(Protocol):
    async def __call__(self, namespace: str, pool: str) -> list[Obj]:
        """The pods labelled with the pool, as the apiserver has them."""
        ...


def listed(kube: Kube) -> PodSource:
    """Pods read from the apiserver at each call."""

    async def pods(namespace: str, pool: str) -> list[Obj]:
        return await kube.list(
            paths.collection("v1", "Pod", namespace),
            labelSelector=f"{builders.POOL_LABEL}={pool}",
        )

    return pods


def _named(items: Any, keys: tuple[str, ...]) -> list[Obj]:
    return [
        {k: item[k] for k in keys if k in item} for item in items or [] if isinstance(item, dict)
    ]


def slim(pod: Obj) -> Obj:
    """The parts of a pod the operator reads; the rest (managedFields, volumes, env ...)
    is left out of memory."""
    meta, spec, status = (pod.get(k) or {} for k in ("metadata", "spec", "status"))
    kept_meta = (
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "labels",
        "annotations",
        "ownerReferences",
        "deletionTimestamp",
    )
    return {
        "apiVersion": pod.get("apiVersion", "v1"),
        "kind": pod.get("kind", "Pod"),
        "metadata": {k: meta[k] for k in kept_meta if k in meta},
        "spec": {
            "nodeName": spec.get("nodeName"),
            "containers": _named(spec.get("containers"), ("name", "image")),
            "initContainers": _named(spec.get("initContainers"), ("name", "image")),
        },
        "status": {
            "phase": status.get("phase"),
            "podIP": status.get("podIP"),
            "conditions": _named(status.get("conditions"), ("type", "status", "reason", "message")),
            "containerStatuses": _named(status.get("containerStatuses"), ("name", "state")),
        },
    }


class PodStore:
    """Pods by namespace and pool label, from watch events (`apply`)."""

    def __init__(self, scopes: int = 1, wait_s: float = 30.0) -> None:
        """`scopes`: how many watches feed it (one per followed namespace, or one for the
        cluster); reads wait until each has listed once."""
        self._pools: dict[tuple[str, str], dict[str, Obj]] = {}
        self._pool_of: dict[tuple[str, str], str] = {}
        self._unsynced = scopes
        self._synced = asyncio.Event()
        if scopes <= 0:
            self._synced.set()
        self._wait_s = wait_s

    def apply(self, event_type: str, pod: Obj) -> None:
        """One watch event (ADDED, MODIFIED, DELETED)."""
        meta = pod.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        before = self._pool_of.pop(key, None)
        if before is not None:
            members = self._pools.get((key[0], before), {})
            members.pop(key[1], None)
            if not members:
                self._pools.pop((key[0], before), None)
        pool = (meta.get("labels") or {}).get(builders.POOL_LABEL)
        if event_type == DELETED or not pool:
            return
        self._pools.setdefault((key[0], pool), {})[key[1]] = slim(pod)
        self._pool_of[key] = pool

    def synced(self) -> None:
        """One watch has listed its scope."""
        self._unsynced -= 1
        if self._unsynced <= 0:
            self._synced.set()

    def source(self, fallback: PodSource) -> PodSource:
        """Reads from memory once synced; from `fallback` if the watch has not listed in
        time (the apiserver was unreachable at start-up, say)."""

        async def pods(namespace: str, pool: str) -> list[Obj]:
            if not self._synced.is_set():
                try:
                    await asyncio.wait_for(self._synced.wait(), self._wait_s)
                except TimeoutError:
                    return await fallback(namespace, pool)
            return list(self._pools.get((namespace, pool), {}).values())

        return pods

    def __len__(self) -> int:
        return len(self._pool_of)
