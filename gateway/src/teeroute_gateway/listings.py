"""The read-only listings: GET /v1/models, /v1/attestations and /v1/miners. Pure functions of
the catalog, the HealthBook and the clock.

/v1/models follows OpenAI's list shape (`object: list`, `data: [{id, object: model, ...}]`)
and adds what a router's user needs: the price per million input/output tokens (lowest among
the pools serving it), the TEE types with an attested endpoint now, the context length.

/v1/attestations?model= shows the current verdict of each endpoint serving a model — TEE,
measurement, chip, key fingerprints, when it was attested and until when it is admitted —
for clients that check for themselves (and, in sealed mode, what they seal to).

/v1/miners is the scoreboard miners compete on: per pool and per endpoint, what the gateway
observed (TTFT p50/p95, TPOT, tokens/s, error rate, uptime; speed.py) and its price, the score
and the weight (scores.py, docs/scores.md); `weights_view` is the weights export.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from teeroute.admission import rfc3339
from teeroute_gateway import scores
from teeroute_gateway.catalog import Catalog, Endpoint, Pool, PublicModel
from teeroute_gateway.health import EndpointHealth, HealthBook
from teeroute_gateway.speed import Sample, matched_floor, summary


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
    """Per pool (and per endpoint within it) what the gateway observed, its score and its
    weight (scores.py); speeds compared at the loads all pools saw (speed.matched_floor)."""
    pools = sorted(catalog.pools.values(), key=lambda p: p.key)
    samples = {p.key: _samples(p, health, monotonic) for p in pools}
    floor = matched_floor(samples.values())
    rows = [_pool_score(p, health, monotonic, samples[p.key], floor) for p in pools]
    weights = scores.normalized({row["pool"]: row["score"] for row in rows})
    for row in rows:
        row["weight"] = weights[row["pool"]]
    return {"object": "list", "load_floor": floor, "data": rows}


def weights_view(board: dict[str, Any], catalog: Catalog, shape: str) -> dict[str, Any]:
    """`?format=weights`: normalized weights per pool; `?format=bittensor`: per miner uid
    (the pool label UID_LABEL), u16-scaled as a validator sets them (scores.u16_weights)."""
    rows = board["data"]
    if shape != "bittensor":
        return {"weights": {row["pool"]: row["weight"] for row in rows}}
    uids = {p.key: uid for p in catalog.pools.values() if (uid := _uid(p)) is not None}
    per_uid = scores.by_uid({row["pool"]: row["score"] for row in rows}, uids)
    ordered = sorted(per_uid)
    emitted, values = scores.u16_weights(ordered, [per_uid[u] for u in ordered])
    return {
        "uids": emitted,
        "weights": values,
        "normalized": scores.normalized({str(u): per_uid[u] for u in ordered}),
        "unmapped": sorted(row["pool"] for row in rows if row["pool"] not in uids),
    }


UID_LABEL = "teeroute.dev/uid"
"""The MinerPool label naming the miner's uid on the subnet (a non-negative integer)."""


def _uid(pool: Pool) -> int | None:
    text = pool.labels.get(UID_LABEL, "")
    return int(text) if text.isdigit() else None


def _samples(pool: Pool, health: HealthBook, now: float) -> list[Sample]:
    return [s for h in _entries(pool, health) for s in h.speed.recent(now)]


def _entries(pool: Pool, health: HealthBook) -> list[EndpointHealth]:
    return [h for e in pool.endpoints if (h := health.get(e.key)) is not None]


def _pool_score(
    pool: Pool, health: HealthBook, now: float, samples: list[Sample], floor: int
) -> dict[str, Any]:
    entries = _entries(pool, health)
    row = _observed(entries, now, samples, floor)
    price = pool.input_per_million + pool.output_per_million
    reliable = scores.reliability(row["uptime"], row["error_rate_1m"])
    return {
        "pool": pool.key,
        "tee": pool.tee,
        "input_per_million": str(pool.input_per_million),
        "output_per_million": str(pool.output_per_million),
        "currency": pool.currency,
        "endpoints": len(pool.endpoints),
        **row,
        "score": scores.score(reliable, row["speed_tokens_per_s"], price),
        "by_endpoint": [
            {"endpoint": h.key, **_observed([h], now, h.speed.recent(now), floor)}
            for h in sorted(entries, key=lambda h: h.key)
        ],
    }


def _observed(
    entries: list[EndpointHealth], now: float, samples: list[Sample], floor: int
) -> dict[str, Any]:
    """The observed numbers of one endpoint or a pool's endpoints together."""
    speed = summary(samples, now, floor)
    ok, failed = _window(entries, now)
    total_ok = sum(h.total_ok for h in entries)
    total = total_ok + sum(h.total_failed for h in entries)
    uptime = total_ok / total if total else None
    reference = scores.reference_speed(speed)
    return {
        "ttft_ms_p50": speed.ttft_ms_p50,
        "ttft_ms_p95": speed.ttft_ms_p95,
        "tpot_ms_p50": speed.tpot_ms_p50,
        "tokens_per_s_p50": speed.tokens_per_s_p50,
        "speed_tokens_per_s": None if reference is None else round(reference, 3),
        "samples": speed.samples,
        "load_floor": speed.load_floor,
        "inflight": sum(h.inflight for h in entries),
        "error_rate_1m": failed / (ok + failed) if ok + failed else None,
        "uptime": uptime,
        "status": _status(uptime),
        "requests": total,
    }


def _window(entries: list[EndpointHealth], now: float) -> tuple[int, int]:
    ok = failed = 0
    for h in entries:
        a, b = h.window(now)
        ok, failed = ok + a, failed + b
    return ok, failed


def _status(uptime: float | None) -> str:
    """OpenRouter's bands: ≥95 % normal, 80-94 % degraded, below down."""
    if uptime is None:
        return "unknown"
    return "normal" if uptime >= 0.95 else "degraded" if uptime >= 0.80 else "down"
