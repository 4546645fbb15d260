"""Which pools a Route may send traffic to, and why not (pure).

A backend is eligible when its pool exists, its TEE type is allowed by the Route, its prices
are within the Route's maxPrice, and it has ready miners. Attestation is judged per endpoint
(EndpointSlices and the gateway); the status shows each pool's attested count beside it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from teeroute.api.common import parse_price
from teeroute.api.minerpool import MinerPool
from teeroute.api.route import BackendStatus, Route
from teeroute_operator.conditions import set_condition

Obj = dict[str, Any]


def selected_pools(route: Route, pools: dict[str, MinerPool]) -> list[str]:
    if route.spec.backends is not None:
        return [b.pool for b in route.spec.backends]
    if route.spec.selector is None:  # the CRD requires backends or a selector
        return []
    wanted = route.spec.selector.match_labels.items()
    return sorted(name for name, p in pools.items() if wanted <= p.metadata.labels.items())


def backend_status(route: Route, name: str, pool: MinerPool | None) -> BackendStatus:
    if pool is None:
        return BackendStatus(pool=name, eligible=False, reason="PoolNotFound")
    reason = _ineligible(route, pool)
    return BackendStatus(
        pool=name,
        eligible=reason is None,
        reason=reason or "",
        tee=pool.spec.tee.type,
        ready_replicas=pool.status.ready_replicas,
        attested_replicas=pool.status.attested_replicas,
    )


def _ineligible(route: Route, pool: MinerPool) -> str | None:
    if pool.spec.tee.type not in route.spec.constraints.allowed_tee:
        return "TeeNotAllowed"
    limit = route.spec.routing.max_price
    pricing = pool.spec.pricing
    for cap, price in (
        (limit.input_per_million, pricing.input_per_million),
        (limit.output_per_million, pricing.output_per_million),
    ):
        if cap is not None and parse_price(price) > parse_price(cap):
            return "PriceAboveMax"
    if pool.status.ready_replicas < 1:
        return "NoReadyMiners"
    return None


def route_status(route: Route, pools: dict[str, MinerPool], previous: Obj, now: dt.datetime) -> Obj:
    backends = [backend_status(route, n, pools.get(n)) for n in selected_pools(route, pools)]
    eligible = [b for b in backends if b.eligible]
    if eligible:
        reason, message = "EligibleBackends", ", ".join(b.pool for b in eligible)
    elif backends:
        reason = (
            backends[0].reason if len({b.reason for b in backends}) == 1 else "NoEligibleBackends"
        )
        message = "; ".join(f"{b.pool}: {b.reason}" for b in backends)
    else:
        reason, message = "NoBackends", "the selector matches no MinerPool"
    conditions = set_condition(
        list(previous.get("conditions") or []),
        "Ready",
        bool(eligible),
        reason,
        message,
        now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        route.metadata.generation,
    )
    return {
        "observedGeneration": route.metadata.generation,
        "eligibleBackends": len(eligible),
        "backends": [b.model_dump(by_alias=True) for b in backends],
        "conditions": conditions,
    }
