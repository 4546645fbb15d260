"""What a MinerPool's status should say, from what its children report (pure).

Counts come from the Deployment and its pods; a pod counts as attested while the operator's
own lease on it (leases.LeaseBook, never the pod's annotations) is unexpired. Conditions:
Ready (every desired miner ready), Progressing (a rollout is under way), Degraded (something
keeps miners from running, with the reason).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from teeroute import admission
from teeroute.api.minerpool import MinerPool
from teeroute_operator.conditions import set_condition
from teeroute_operator.lease import Record

Obj = dict[str, Any]
FAILURE_ANNOTATION = admission.FAILURE


@dataclass(frozen=True)
class Observed:
    """What the operator read from the cluster for one pool."""

    deployment: Obj | None
    pods: list[Obj]
    now: dt.datetime
    attested: frozenset[str] = frozenset()
    """Uids of the pods the operator holds an unexpired lease on."""

    def is_attested(self, pod: Obj) -> bool:
        return (pod.get("metadata") or {}).get("uid") in self.attested


def pool_status(pool: MinerPool, seen: Observed, previous: Obj) -> Obj:
    generation = pool.metadata.generation
    desired = pool.spec.desired_replicas
    if pool.spec.endpoints is not None:
        return _external_status(pool, seen, previous)
    live = [p for p in seen.pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    ready = sum(1 for p in live if pod_ready(p))
    attested_count = sum(1 for p in live if pod_ready(p) and seen.is_attested(p))
    conditions = _set_all(previous, _conditions(pool, seen, live, ready, desired), seen, pool)
    return {
        "observedGeneration": generation,
        "desiredReplicas": desired,
        "replicas": len(live),
        "readyReplicas": ready,
        "attestedReplicas": attested_count,
        "lastAttestationFailure": _last_failure(live, previous),
        "conditions": conditions,
    }


def _set_all(
    previous: Obj, wanted: list[tuple[str, bool | None, str, str]], seen: Observed, pool: MinerPool
) -> list[Obj]:
    now = seen.now.strftime("%Y-%m-%dT%H:%M:%SZ")
    conditions: list[Obj] = list(previous.get("conditions") or [])
    for type_, value, reason, message in wanted:
        conditions = set_condition(
            conditions, type_, value, reason, message, now, pool.metadata.generation
        )
    return conditions


def _external_status(pool: MinerPool, seen: Observed, previous: Obj) -> Obj:
    """External endpoints: counts from the leases the sweeper keeps in status.endpoints
    (only those still listed in the spec)."""
    names = {e.name: e.url for e in pool.spec.endpoints or []}
    entries = [
        e for e in previous.get("endpoints") or [] if names.get(e.get("name")) == e.get("url")
    ]
    attested_count = sum(1 for e in entries if Record.from_status(e).admitted(seen.now))
    desired = len(names)
    failures = [e["failure"] for e in entries if e.get("failure")]
    ok = attested_count >= desired
    wanted: list[tuple[str, bool | None, str, str]] = [
        (
            "Ready",
            ok,
            "EndpointsAttested" if ok else "AwaitingAttestation",
            f"{attested_count}/{desired} external endpoints attested",
        ),
        ("Progressing", False, "External", "the operator runs no pods for this pool"),
        ("Degraded", False, "External", ""),
    ]
    return {
        "observedGeneration": pool.metadata.generation,
        "desiredReplicas": desired,
        "replicas": desired,
        "readyReplicas": attested_count,
        "attestedReplicas": attested_count,
        "lastAttestationFailure": _short(failures[0])
        if failures
        else str(previous.get("lastAttestationFailure", "")),
        # status.endpoints is the sweeper's alone: not rewritten here (a merge patch keeps it).
        "conditions": _set_all(previous, wanted, seen, pool),
    }


def _conditions(
    pool: MinerPool, seen: Observed, live: list[Obj], ready: int, desired: int
) -> list[tuple[str, bool | None, str, str]]:
    degraded = _degraded(seen, live)
    rolling = _rolling_out(seen.deployment, desired, ready)
    return [
        (
            "Ready",
            ready >= desired,
            "MinersReady" if ready >= desired else "MinersNotReady",
            f"{ready}/{desired} miners ready",
        ),
        (
            "Progressing",
            rolling,
            "RollingOut" if rolling else "Complete",
            f"{ready}/{desired} miners ready" if rolling else "rollout complete",
        ),
        (
            "Degraded",
            degraded is not None,
            degraded[0] if degraded else "AsExpected",
            degraded[1] if degraded else "",
        ),
    ]


def _rolling_out(deployment: Obj | None, desired: int, ready: int) -> bool:
    if deployment is None:
        return desired > 0
    status = deployment.get("status") or {}
    stale = status.get("observedGeneration", 0) < deployment["metadata"].get("generation", 0)
    return stale or status.get("updatedReplicas", 0) < desired or ready < desired


def _degraded(seen: Observed, live: list[Obj]) -> tuple[str, str] | None:
    for pod in live:
        for cond in (pod.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("reason") == "Unschedulable":
                return "Unschedulable", _short(cond.get("message", ""))
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in (
                "CrashLoopBackOff",
                "CreateContainerConfigError",
                "ImagePullBackOff",
                "ErrImagePull",
            ):
                return waiting["reason"], f"container {cs['name']}: " + _short(
                    waiting.get("message", "")
                )
    for cond in ((seen.deployment or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
            return "ReplicaFailure", _short(cond.get("message", ""))
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return "ProgressDeadlineExceeded", _short(cond.get("message", ""))
    return None


def pod_ready(pod: Obj) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _last_failure(live: list[Obj], previous: Obj) -> str:
    for pod in live:
        failure = ((pod.get("metadata") or {}).get("annotations") or {}).get(FAILURE_ANNOTATION)
        if failure:
            return _short(failure)
    return str(previous.get("lastAttestationFailure", ""))


def _short(text: str, limit: int = 512) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
