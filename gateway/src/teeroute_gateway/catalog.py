"""What the gateway may route to: public models, their pools and the pools' endpoints.

A source (the cluster watcher in `sources/kube.py` or a config file in `sources/file.py`)
collects an `Inventory`; `build_catalog` turns it into an immutable `Catalog` that request
handlers read without locks (a new inventory builds a new catalog, swapped in whole).

Time is not frozen into the catalog: each endpoint carries its attestation expiry and the
router drops expired ones per request (`Endpoint.admitted`), so routing fails closed even
when the source stops updating.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from teeroute.api.common import parse_duration, parse_price
from teeroute.api.minerpool import MinerPool
from teeroute.api.route import Route, RouteSpec

log = logging.getLogger(__name__)

UNATTESTED = "none"
"""The TEE type of a static endpoint listed without evidence (file mode, only when the
config explicitly allows unattested endpoints)."""


@dataclass(frozen=True, slots=True, eq=False)  # identity: they hold mappings
class Endpoint:
    key: str
    """Unique and stable: `<namespace>/<pool>/<name>` (name: pod, external name or index)."""
    pool: str
    """The pool's key, `<namespace>/<pool>`."""
    url: str
    """Base URL without a trailing slash; requests go to `{url}/v1/chat/completions`."""
    tee: str
    """sev-snp, tdx, simulated (from verified evidence) or `none` (unattested)."""
    attested_at: dt.datetime | None = None
    """When its evidence last verified; None for unattested endpoints."""
    expires_at: dt.datetime | None = None
    """Until when it may receive traffic; None means unattested (never admitted unless the
    gateway was told to allow unattested endpoints)."""
    measurement: str = ""
    chip_id: str = ""
    hpke_key_sha256: str = ""
    signing_key_sha256: str = ""
    evidence: Mapping[str, Any] | None = None
    """A pre-verified evidence document (file mode) shown by /v1/attestations."""
    hpke_public: bytes | None = None
    """The attested HPKE public key (raw 32 bytes) requests are sealed to; None: unknown,
    so no plain prompt may be sent here unless the Route turns sealing off."""

    def admitted(self, now: dt.datetime, allow_unattested: bool = False) -> bool:
        if self.expires_at is None:
            return allow_unattested and self.tee == UNATTESTED
        return self.expires_at > now

    def attestation_age(self, now: dt.datetime) -> dt.timedelta | None:
        return None if self.attested_at is None else now - self.attested_at


@dataclass(frozen=True, slots=True, eq=False)  # identity: they hold mappings
class Pool:
    key: str
    namespace: str
    name: str
    labels: Mapping[str, str]
    served: Mapping[str, int | None]
    """Served model name -> context length (None: unknown)."""
    tee: str
    input_per_million: Decimal
    output_per_million: Decimal
    currency: str
    payment_methods: tuple[str, ...]
    endpoints: tuple[Endpoint, ...] = ()

    def upstream_model(self, public: str) -> str:
        """The name to send upstream for a public model: the same name when the pool serves
        it, otherwise the pool's first model (a pool serving one model under its own name)."""
        return public if public in self.served else next(iter(self.served))


@dataclass(frozen=True, slots=True, eq=False)  # identity: they hold mappings
class Backend:
    pool: Pool
    weight: int
    upstream_model: str


@dataclass(frozen=True, slots=True, eq=False)  # identity: they hold mappings
class PublicModel:
    name: str
    route_key: str
    """`<namespace>/<route>`: the Route that defines it (rate limits are per key and route)."""
    spec: RouteSpec
    backends: tuple[Backend, ...]
    max_attestation_age: dt.timedelta

    @property
    def context_length(self) -> int | None:
        lengths = [
            b.pool.served.get(b.upstream_model)
            for b in self.backends
            if b.pool.served.get(b.upstream_model)
        ]
        return min(lengths) if lengths else None  # type: ignore[type-var]


@dataclass(frozen=True)
class Inventory:
    """What a source saw: Routes, MinerPools and, per pool key, its admitted endpoints."""

    routes: Sequence[Route] = ()
    pools: Sequence[MinerPool] = ()
    endpoints: Mapping[str, Sequence[Endpoint]] = field(default_factory=dict)


@dataclass(frozen=True)
class Catalog:
    models: Mapping[str, PublicModel] = field(default_factory=dict)
    pools: Mapping[str, Pool] = field(default_factory=dict)
    conflicts: tuple[str, ...] = ()
    """Routes ignored because an earlier Route (by namespace/name) claims the same model."""

    def endpoint_count(self) -> int:
        return sum(len(p.endpoints) for p in self.pools.values())


def pool_key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def build_pool(pool: MinerPool, endpoints: Sequence[Endpoint]) -> Pool:
    spec = pool.spec
    return Pool(
        key=pool_key(pool.metadata.namespace, pool.metadata.name),
        namespace=pool.metadata.namespace,
        name=pool.metadata.name,
        labels=dict(pool.metadata.labels),
        served={m.name: m.context_length for m in spec.models},
        tee=spec.tee.type,
        input_per_million=parse_price(spec.pricing.input_per_million),
        output_per_million=parse_price(spec.pricing.output_per_million),
        currency=spec.pricing.currency,
        payment_methods=tuple(spec.payment_methods),
        endpoints=tuple(sorted(endpoints, key=lambda e: e.key)),
    )


def build_catalog(inventory: Inventory) -> Catalog:
    pools = {
        p.key: p
        for p in (
            build_pool(
                mp, inventory.endpoints.get(pool_key(mp.metadata.namespace, mp.metadata.name), ())
            )
            for mp in inventory.pools
        )
    }
    models: dict[str, PublicModel] = {}
    conflicts = []
    for route in sorted(inventory.routes, key=lambda r: (r.metadata.namespace, r.metadata.name)):
        key = pool_key(route.metadata.namespace, route.metadata.name)
        if route.spec.model in models:
            conflicts.append(key)
            log.warning("route %s ignored: model %s is already routed", key, route.spec.model)
            continue
        models[route.spec.model] = public_model(route, pools)
    return Catalog(models=models, pools=pools, conflicts=tuple(conflicts))


def public_model(route: Route, pools: Mapping[str, Pool]) -> PublicModel:
    namespace = route.metadata.namespace
    spec = route.spec
    return PublicModel(
        name=spec.model,
        route_key=pool_key(namespace, route.metadata.name),
        spec=spec,
        backends=tuple(_backends(spec, namespace, pools)),
        max_attestation_age=parse_duration(spec.constraints.max_attestation_age),
    )


def _backends(spec: RouteSpec, namespace: str, pools: Mapping[str, Pool]) -> list[Backend]:
    if spec.backends is not None:
        chosen = [
            (pools[pool_key(namespace, ref.pool)], ref.weight)
            for ref in spec.backends
            if pool_key(namespace, ref.pool) in pools
        ]
    else:
        wanted = spec.selector.match_labels if spec.selector else {}
        chosen = [
            (p, 1)
            for p in sorted(pools.values(), key=lambda p: p.key)
            if p.namespace == namespace and all(p.labels.get(k) == v for k, v in wanted.items())
        ]
    return [
        Backend(pool=p, weight=w, upstream_model=p.upstream_model(spec.model)) for p, w in chosen
    ]
