"""Which events of a pool's pods and children can change what the operator decides (pure,
plus a map of what it saw).

Most events of a miner pod are the operator's own doing: every lease refresh rewrites the
pod's attestation annotations, and each write comes back as a MODIFIED event. Such an event
changes neither the pool's status nor whether the pod can be challenged, so it must not
trigger a reconcile or a sweep: at 2,000 pods those reconciles were most of the operator's
steady-state CPU. An event counts when the pod is new or gone, or when something the
operator reads from it changed (`signature`).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from teeroute_operator import admit, builders, ownership
from teeroute_operator.status import pod_ready

Obj = dict[str, Any]
K = TypeVar("K", bound=Hashable)


def signature(pod: Obj) -> tuple[Any, ...]:
    """Everything of a pod that the status (status.Observed, with what makes a pool
    Degraded: an Unschedulable pod, a container waiting on a crash or an image), ownership
    (ownership.owned) or challengeability (admit.challengeable, last) depend on; annotations
    are not among them."""
    meta, spec, status = (pod.get(k) or {} for k in ("metadata", "spec", "status"))
    labels = meta.get("labels") or {}
    owners = tuple(
        (r.get("kind"), r.get("name"), r.get("uid"), r.get("controller"))
        for r in meta.get("ownerReferences") or []
        if isinstance(r, dict)
    )
    return (
        meta.get("uid"),
        bool(meta.get("deletionTimestamp")),
        labels.get(builders.POOL_LABEL),
        labels.get(ownership.TEMPLATE_HASH),
        owners,
        tuple(sorted(ownership.images(spec).items())),
        spec.get("nodeName"),
        status.get("phase"),
        status.get("podIP"),
        pod_ready(pod),
        _scheduling(status),
        _waiting(status),
        admit.challengeable(pod),
    )


def _scheduling(status: Obj) -> tuple[Any, ...]:
    for cond in status.get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == "PodScheduled":
            return (cond.get("status"), cond.get("reason"), cond.get("message"))
    return ()


def _waiting(status: Obj) -> tuple[Any, ...]:
    return tuple(
        (cs.get("name"), waiting.get("reason"), waiting.get("message"))
        for cs in status.get("containerStatuses") or []
        if isinstance(cs, dict)
        for waiting in [((cs.get("state") or {}).get("waiting")) or {}]
        if isinstance(waiting, dict) and waiting
    )


class _LastSeen(Generic[K]):
    """The signature last seen of each object, by key."""

    def __init__(self) -> None:
        self._seen: dict[K, tuple[Any, ...]] = {}

    def changed(
        self, key: K, event_type: str | None, signature_now: Callable[[], tuple[Any, ...]]
    ) -> bool:
        """Whether the event (ADDED, MODIFIED, DELETED, or None when listed) is a deletion or
        changed the signature; remembers it."""
        if event_type == "DELETED":
            self._seen.pop(key, None)
            return True
        now = signature_now()
        if self._seen.get(key) == now:
            return False
        self._seen[key] = now
        return True

    def get(self, key: K) -> tuple[Any, ...] | None:
        return self._seen.get(key)

    def __len__(self) -> int:
        return len(self._seen)


@dataclass(frozen=True, slots=True)
class PodChange:
    """What one pod event can change: the pool's status and slices (`status`), and whether
    its sweeper could admit or must withdraw something (`sweep`: the pod can be challenged
    now, or could before). A pod that could not be challenged before or after (scheduled,
    pulling, starting) does not wake the sweeper: while 2,000 pods came up, most of their
    events woke a sweep that found nothing new to challenge."""

    status: bool
    sweep: bool


class PodChanges:
    """The signature last seen of each pod, by namespace and name (a DELETED event made up
    after a re-list carries no more than those: Kube.watch)."""

    def __init__(self) -> None:
        self._seen: _LastSeen[tuple[str, str]] = _LastSeen()

    def relevant(self, event_type: str | None, pod: Obj) -> bool:
        """Whether this event (ADDED, MODIFIED, DELETED, or None when listed) can change a
        decision; remembers the pod's signature."""
        return self.seen(event_type, pod).status

    def seen(self, event_type: str | None, pod: Obj) -> PodChange:
        """What this event can change; remembers the pod's signature."""
        meta = pod.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        before = self._seen.get(key)
        if not self._seen.changed(key, event_type, lambda: signature(pod)):
            return PodChange(status=False, sweep=False)
        after = self._seen.get(key)
        could = bool(before and before[-1]) or bool(after and after[-1])
        return PodChange(status=True, sweep=could)

    def pool_of(self, namespace: str, name: str) -> str | None:
        """The pool label the pod had when last seen (a made-up DELETED carries none)."""
        seen = self._seen.get((namespace, name))
        return None if seen is None else seen[2]

    def __len__(self) -> int:
        return len(self._seen)


class Need(enum.Enum):
    """What a child's event asks of its pool."""

    NOTHING = "nothing"
    STATUS = "status"
    """The pool's status reads it (a Deployment's status: rolling out, conditions)."""
    CHILDREN = "children"
    """It is gone, or its spec or metadata changed: repair drift, then the status."""


def child_signature(obj: Obj) -> tuple[Any, ...]:
    """What drift repair compares (publishing.covers): spec and metadata. `generation`
    moves with the spec where the kind has one; a Service has none, so its spec is kept."""
    meta = obj.get("metadata") or {}
    generation = meta.get("generation")
    spec = json.dumps(obj.get("spec"), sort_keys=True) if generation is None else ""
    return (
        generation,
        spec,
        json.dumps(meta.get("labels") or {}, sort_keys=True),
        json.dumps(meta.get("annotations") or {}, sort_keys=True),
        json.dumps(meta.get("ownerReferences") or [], sort_keys=True),
    )


class ChildChanges:
    """Events of the pools' Deployments, Services, PodDisruptionBudgets and NetworkPolicies.
    Their status moves with every pod (a PodDisruptionBudget's counts, a Deployment's
    replicas): reconciling the children on each of those was half the operator's requests
    while 500 pools came up, and repaired nothing."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[tuple[Any, ...], str]] = {}

    def need(self, event_type: str | None, kind: str, obj: Obj) -> Need:
        uid = str((obj.get("metadata") or {}).get("uid") or "")
        if event_type == "DELETED":
            self._seen.pop(uid, None)
            return Need.CHILDREN
        shape = child_signature(obj)
        status = json.dumps(obj.get("status"), sort_keys=True) if kind == "Deployment" else ""
        before = self._seen.get(uid)
        self._seen[uid] = (shape, status)
        if before is None:
            # New to the operator: one its reconcile just applied (so as the spec wants),
            # or one kopf listed at start-up, when every pool is reconciled in full (resume).
            # Repairing each new child again was 5 reads per child while 500 pools came up.
            return Need.STATUS if kind == "Deployment" else Need.NOTHING
        if before[0] != shape:
            return Need.CHILDREN
        return Need.STATUS if before[1] != status else Need.NOTHING

    def __len__(self) -> int:
        return len(self._seen)


def route_signature(pool: Obj) -> tuple[Any, ...]:
    """What a Route's status reads of a MinerPool (routes.py): its spec (by generation), its
    labels (selectors), whether it is going, and its ready and attested counts."""
    meta, status = pool.get("metadata") or {}, pool.get("status") or {}
    return (
        meta.get("generation"),
        bool(meta.get("deletionTimestamp")),
        json.dumps(meta.get("labels") or {}, sort_keys=True),
        status.get("readyReplicas"),
        status.get("attestedReplicas"),
    )


class PoolChanges:
    """Events of the MinerPools, as the Routes see them. Most pool events change nothing a
    Route reads (the operator's own bookkeeping annotations, a condition's message, the
    last attestation failure); each one used to re-read every pool and Route of the
    namespace, which with 50 pools and 20 Routes a namespace kept the operator busy while
    500 pools came up."""

    def __init__(self) -> None:
        self._seen: _LastSeen[str] = _LastSeen()

    def relevant(self, event_type: str | None, pool: Obj) -> bool:
        uid = str((pool.get("metadata") or {}).get("uid") or "")
        return self._seen.changed(uid, event_type, lambda: route_signature(pool))

    def __len__(self) -> int:
        return len(self._seen)
