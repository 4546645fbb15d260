"""The read-only listings: GET /v1/models, /v1/attestations and /v1/miners. Pure functions of
the catalog, the HealthBook and the clock.

/v1/models follows OpenAI's list shape (`object: list`, `data: [{id, object: model, ...}]`)
and adds what a router's user needs: the price per million input/output tokens (lowest among
the pools serving it), the TEE types with an attested endpoint now, the context length.

/v1/attestations?model= shows the current verdict of each endpoint serving a model — TEE,
measurement, chip, key fingerprints, when it was attested and until when it is admitted —
for clients that check for themselves (and, in sealed mode, what they seal to).

/v1/miners is the scoreboard miners compete on: per pool, what the gateway observed (TTFT
p50/p95, tokens/s, error rate, uptime) and its price; `weights` normalises a score to 1.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from teeroute.admission import rfc3339
from teeroute_gateway.catalog import Catalog, Endpoint, Pool, PublicModel
from teeroute_gateway.health import EndpointHealth, HealthBook


def models(catalog: Catalog, now: dt.datetime, allow_unattested: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            _model(m, now, allow_unattested)
            for m in sorted(catalog.models.values(), key=lambda m: m.name)
        ],
    }


def _model(model: PublicModel, now: dt.datetime, allow_unattested: bool) -> dict[str, Any]:
    pools = [b.pool for b in model.backends]
    live = [e for p in pools for e in p.endpoints if e.admitted(now, allow_unattested)]
    cheapest = min(pools, key=lambda p: p.input_per_million + p.output_per_million, default=None)
    return {
        "id": model.name,
        "object": "model",
        "created": 0,
        "owned_by": "teeroute",
        "pricing": None
        if cheapest is None
        else {
            "input_per_million": str(cheapest.input_per_million),
            "output_per_million": str(cheapest.output_per_million),
            "currency": cheapest.currency,
        },
        "tee": sorted({e.tee for e in live}),
        "context_length": model.context_length,
        "providers": [
            {
                "pool": p.name,
                "namespace": p.namespace,
                "input_per_million": str(p.input_per_million),
                "output_per_million": str(p.output_per_million),
                "currency": p.currency,
                "tee": p.tee,
                "attested_endpoints": sum(
                    1 for e in p.endpoints if e.admitted(now, allow_unattested)
                ),
            }
            for p in pools
        ],
    }


def attestations(model: PublicModel, now: dt.datetime) -> dict[str, Any]:
    return {
        "object": "list",
        "model": model.name,
        "data": [
            _evidence(b.pool, e)
            for b in model.backends
            for e in b.pool.endpoints
            if e.admitted(now)
        ],
    }


def _evidence(pool: Pool, e: Endpoint) -> dict[str, Any]:
    return {
        "pool": pool.name,
        "namespace": pool.namespace,
        "endpoint": e.key,
        "tee": e.tee,
        "measurement": e.measurement,
        "chip_id": e.chip_id,
        "hpke_key_sha256": e.hpke_key_sha256,
        "signing_key_sha256": e.signing_key_sha256,
        "attested_at": rfc3339(e.attested_at) if e.attested_at else None,
        "expires_at": rfc3339(e.expires_at) if e.expires_at else None,
        "evidence": dict(e.evidence) if e.evidence else None,
    }


def scoreboard(catalog: Catalog, health: HealthBook, monotonic: float) -> dict[str, Any]:
    rows = [
        _pool_score(p, health, monotonic)
        for p in sorted(catalog.pools.values(), key=lambda p: p.key)
    ]
    total = sum(r["score"] for r in rows)
    for row in rows:
        row["weight"] = round(row["score"] / total, 6) if total > 0 else 0.0
    return {"object": "list", "data": rows}


def _pool_score(pool: Pool, health: HealthBook, now: float) -> dict[str, Any]:
    entries = [h for e in pool.endpoints if (h := health.get(e.key)) is not None]
    ttft = sorted(v for h in entries for v in h.ttft_ms)
    tps = sorted(v for h in entries for v in h.tokens_per_s)
    ok, failed = _window(entries, now)
    total_ok = sum(h.total_ok for h in entries)
    total = total_ok + sum(h.total_failed for h in entries)
    uptime = total_ok / total if total else None
    price = pool.input_per_million + pool.output_per_million
    throughput = _pct(tps, 0.5)
    score = 0.0
    if uptime is not None and throughput:
        score = uptime * throughput / max(float(price), 1e-6)
    return {
        "pool": pool.key,
        "tee": pool.tee,
        "input_per_million": str(pool.input_per_million),
        "output_per_million": str(pool.output_per_million),
        "currency": pool.currency,
        "endpoints": len(pool.endpoints),
        "ttft_ms_p50": _pct(ttft, 0.5),
        "ttft_ms_p95": _pct(ttft, 0.95),
        "tokens_per_s_p50": throughput,
        "error_rate_1m": failed / (ok + failed) if ok + failed else None,
        "uptime": uptime,
        "status": _status(uptime),
        "requests": total,
        "score": score,
    }


def _window(entries: list[EndpointHealth], now: float) -> tuple[int, int]:
    ok = failed = 0
    for h in entries:
        a, b = h.window(now)
        ok, failed = ok + a, failed + b
    return ok, failed


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(values[min(len(values) - 1, int(q * len(values)))], 3)


def _status(uptime: float | None) -> str:
    """OpenRouter's bands: ≥95 % normal, 80-94 % degraded, below down."""
    if uptime is None:
        return "unknown"
    return "normal" if uptime >= 0.95 else "degraded" if uptime >= 0.80 else "down"
