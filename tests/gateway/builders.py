"""Catalog objects for the gateway's unit tests, built through the real models and builders."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from teeroute.api.minerpool import MinerPool
from teeroute.api.route import Route
from teeroute_gateway.catalog import Catalog, Endpoint, Inventory, build_catalog
from teeroute_gateway.health import HealthBook
from teeroute_gateway.selection import Context

NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)


def pool(
    name: str,
    price_in: str = "1",
    price_out: str = "1",
    tee: str = "sev-snp",
    currency: str = "USD",
    labels: dict[str, str] | None = None,
    context_length: int | None = None,
) -> MinerPool:
    return MinerPool.model_validate(
        {
            "metadata": {"name": name, "namespace": "ns", "labels": labels or {}},
            "spec": {
                "models": [{"name": "m", "contextLength": context_length}],
                "tee": {"type": tee},
                "pricing": {
                    "inputPerMillion": price_in,
                    "outputPerMillion": price_out,
                    "currency": currency,
                },
                "endpoints": [{"name": "e0", "url": "http://127.0.0.1:1"}],
            },
        }
    )


def route(backends: list[Any] | None = None, **spec: Any) -> Route:
    body: dict[str, Any] = {
        "model": "m",
        "constraints": {"allowedTee": ["sev-snp", "tdx", "simulated"]},
    }
    if backends is not None:
        body["backends"] = [b if isinstance(b, dict) else {"pool": b} for b in backends]
    body.update(spec)
    return Route.model_validate({"metadata": {"name": "r", "namespace": "ns"}, "spec": body})


def endpoint(
    pool_name: str,
    name: str = "e0",
    tee: str = "sev-snp",
    age: dt.timedelta = dt.timedelta(seconds=30),
    ttl: dt.timedelta = dt.timedelta(minutes=4),
) -> Endpoint:
    attested = NOW - age
    return Endpoint(
        key=f"ns/{pool_name}/{name}",
        pool=f"ns/{pool_name}",
        url=f"http://127.0.0.1:1/{pool_name}/{name}",
        tee=tee,
        attested_at=attested,
        expires_at=attested + ttl,
    )


def catalog(
    pools: list[MinerPool], the_route: Route, endpoints: dict[str, list[Endpoint]] | None = None
) -> Catalog:
    if endpoints is None:
        endpoints = {
            f"ns/{p.metadata.name}": [endpoint(p.metadata.name, tee=p.spec.tee.type)] for p in pools
        }
    return build_catalog(Inventory(routes=[the_route], pools=pools, endpoints=endpoints))


def context(health: HealthBook | None = None, seed: int = 7, **kw: Any) -> Context:
    return Context(
        now=NOW, monotonic=1000.0, rng=random.Random(seed), health=health or HealthBook(), **kw
    )
