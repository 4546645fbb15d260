"""Publishing a pool's attested EndpointSlice: from the pods' records, as of now. Called
after every sweep and on every reconcile of the pool (so a pod that stops being ready or is
deleted leaves the slice at once, not at the next sweep)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from teeroute import admission
from teeroute.api.minerpool import MinerPool
from teeroute.kube import Kube
from teeroute_operator import admit, builders

Obj = dict[str, Any]


async def publish(kube: Kube, pool: MinerPool, pods: list[Obj], now: dt.datetime) -> int:
    """Apply the slice; return how many endpoints it lists."""
    endpoints = admit.slice_endpoints(pods, builders.AGENT_PORT, now)
    await kube.apply(
        admission.build_slice(
            namespace=pool.metadata.namespace,
            pool=pool.metadata.name,
            port=builders.AGENT_PORT,
            endpoints=endpoints,
            owner=builders.owner_reference(pool),
        )
    )
    return len(endpoints)
