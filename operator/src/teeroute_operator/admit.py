"""Which pods to challenge, under which policy, and which of them to list (pure)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from teeroute import admission
from teeroute.admission import AdmittedEndpoint
from teeroute.api.common import parse_duration
from teeroute.api.minerpool import MinerPool
from teeroute.attestation.policy import HARDWARE_TEES, Policy
from teeroute_operator.lease import Record

Obj = dict[str, Any]


def pool_policy(pool: MinerPool, allow_simulated: bool) -> Policy:
    """The pool's attestation policy as the verifier applies it. The pool's own TEE type is
    the only one accepted; `simulated` only where the operator was told to allow it."""
    tee = pool.spec.tee.type
    allowed = {tee} if tee in HARDWARE_TEES or (tee == "simulated" and allow_simulated) else set()
    spec = pool.spec.attestation
    return Policy(
        allowed_tee=frozenset(allowed),
        allowed_measurements=(
            frozenset(m.lower() for m in spec.allowed_measurements)
            if spec.allowed_measurements
            else None
        ),
        minimum_tcb=dict(spec.minimum_tcb) if spec.minimum_tcb else None,
        debug_forbidden=spec.debug_forbidden,
        max_age=max_age(pool),
    )


def max_age(pool: MinerPool) -> dt.timedelta:
    return parse_duration(pool.spec.attestation.max_evidence_age)


def interval(pool: MinerPool) -> dt.timedelta:
    return parse_duration(pool.spec.attestation.reattestation_interval)


def challengeable(pod: Obj) -> bool:
    """Ready, running, not terminating, with an IP: an endpoint that could take traffic."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    if meta.get("deletionTimestamp") or not status.get("podIP"):
        return False
    if status.get("phase") != "Running":
        return False
    conditions = status.get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def record_of(pod: Obj) -> Record:
    return Record.from_annotations((pod.get("metadata") or {}).get("annotations") or {})


def slice_endpoints(pods: list[Obj], port: int, now: dt.datetime) -> list[AdmittedEndpoint]:
    """Endpoints for the pool's EndpointSlice: challengeable pods with an unexpired lease."""
    found = []
    for pod in pods:
        record = record_of(pod)
        if not challengeable(pod) or not record.admitted(now) or record.expires_at is None:
            continue
        found.append(
            AdmittedEndpoint(
                address=pod["status"]["podIP"],
                port=port,
                expires_at=record.expires_at,
                pod=pod["metadata"]["name"],
                node=(pod.get("spec") or {}).get("nodeName") or "",
            )
        )
    return found


def readmit_map(pool_annotations: dict[str, str]) -> dict[str, str]:
    """External endpoints to re-admit after a chip change, from the pool's annotation
    `teeroute.dev/readmit-chip: "<endpoint>=<chip id>,…"`."""
    raw = pool_annotations.get(admission.READMIT, "")
    pairs = (item.partition("=") for item in raw.split(",") if "=" in item)
    return {name.strip(): chip.strip() for name, _, chip in pairs}
