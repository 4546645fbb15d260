"""Which pods to challenge, under which policy, and who may re-admit a changed chip (pure)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from teeroute import admission
from teeroute.api.common import parse_duration
from teeroute.api.minerpool import MinerPool
from teeroute.attestation.policy import HARDWARE_TEES, Policy

Obj = dict[str, Any]


def pool_policy(pool: MinerPool, allow_simulated: bool) -> Policy:
    """The pool's attestation policy as the verifier applies it. The pool's own TEE type is
    the only one accepted; `simulated` only where the operator was told to allow it."""
    tee = pool.spec.tee.type
    allowed = {tee} if tee in HARDWARE_TEES or (tee == "simulated" and allow_simulated) else set()
    spec = pool.spec.attestation
    tdx = Policy.from_mapping(
        {
            "tdx": spec.tdx.model_dump(by_alias=True),
            "allowUncheckedCollateral": spec.allow_unchecked_collateral,
        }
    )
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
        register_pins=tdx.register_pins,
        accepted_tcb_statuses=tdx.accepted_tcb_statuses,
        allow_unchecked_collateral=tdx.allow_unchecked_collateral,
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


def readmit_map(pool_annotations: dict[str, str]) -> dict[str, str]:
    """Endpoints (pods by name, external endpoints by theirs) to re-admit after a chip
    change, from the MinerPool's annotation `teeroute.dev/readmit-chip: "<name>=<chip id>,…"`.
    Only the pool's own annotation counts: a pod editor cannot make this decision."""
    raw = pool_annotations.get(admission.READMIT, "")
    pairs = (item.partition("=") for item in raw.split(",") if "=" in item)
    return {name.strip(): chip.strip() for name, _, chip in pairs}
