"""Which endpoints may serve a request, and in which order to try them. Pure: the caller
passes the clock, the randomness and what it observed (`HealthBook`).

Per public model (the requested one, then each `models` fallback):
1. filter pools: `provider.only` / `ignore`, the billing currency, `max_price` (the request's
   and the Route's; hard filters);
2. filter endpoints: attested and unexpired now, TEE type allowed by the Route and the
   request, evidence no older than the stricter `max_attestation_age`;
3. order pools: `provider.order` (then the rest only if fallbacks are allowed); else a sort
   (`provider.sort`, or the Route's latency/throughput sort) or, by default, random weighted
   by the Route's weight / price² (a $1 pool is 9x likelier than a $3 one; weight 0: fallback
   only); soft preferences (`preferred_max_latency`, `preferred_min_throughput`) move misses
   to the back; without fallbacks only the first pool remains. Latency is the TTFT p50 of
   streamed answers, throughput the tokens/s p50, both load-weighted and load-matched
   (speed.py, docs/scores.md);
4. order endpoints: healthy before ejected, fewest in flight first; then one endpoint per pool
   per round, so a retry goes to the next pool before a second endpoint of the same pool;
5. a session id pins the request to one endpoint (rendezvous hashing) unless `order` is given.

Empty results raise typed errors that say which filter removed everything.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

from teeroute_gateway.catalog import UNATTESTED, Backend, Endpoint, PublicModel
from teeroute_gateway.errors import NotFound, Unavailable
from teeroute_gateway.health import HealthBook
from teeroute_gateway.provider import ProviderPrefs
from teeroute_gateway.speed import Sample, Speed, matched_floor, summary

MIN_PRICE = Decimal("0.000001")
SPEED_TTL_S = 1.0
SPEED_CACHE_SIZE = 256


@dataclass(frozen=True, slots=True)
class Candidate:
    model: PublicModel
    backend: Backend
    endpoint: Endpoint


@dataclass(frozen=True, slots=True)
class Context:
    now: dt.datetime
    monotonic: float
    rng: random.Random
    health: HealthBook
    currency: str = "USD"
    allow_unattested: bool = False


def plan(
    models: Sequence[PublicModel], prefs: ProviderPrefs, session: str | None, ctx: Context
) -> list[Candidate]:
    found: list[Candidate] = []
    first_error: Exception | None = None
    for model in models:
        try:
            found += candidates(model, prefs, ctx)
        except (NotFound, Unavailable) as exc:
            first_error = first_error or exc
    if not found:
        raise first_error or Unavailable("no endpoint is available", code="no_attested_endpoint")
    if session and not prefs.order:
        found = _pin(found, session, ctx)
    return found


def candidates(model: PublicModel, prefs: ProviderPrefs, ctx: Context) -> list[Candidate]:
    named = _filter_pools(model, prefs, ctx)
    usable = {b.pool.key: _usable_endpoints(model, b, prefs, ctx) for b in named}
    pools = [b for b in named if usable[b.pool.key]]
    if not pools:
        raise _none_usable(model, named, prefs, ctx)
    ordered = _order_pools(model, pools, prefs, ctx)
    lists = [
        [Candidate(model, b, e) for e in _order_endpoints(usable[b.pool.key], ctx)] for b in ordered
    ]
    mixed = _interleave(lists)
    return [c for c in mixed if not _ejected(c, ctx)] + [c for c in mixed if _ejected(c, ctx)]


def _filter_pools(model: PublicModel, prefs: ProviderPrefs, ctx: Context) -> list[Backend]:
    backends = list(model.backends)
    if not backends:
        raise Unavailable(f"no pool serves model {model.name}", code="no_pool")
    named = [
        b
        for b in backends
        if (prefs.only is None or _named(b, prefs.only)) and not _named(b, prefs.ignore)
    ]
    if not named:
        raise NotFound(
            f"no provider of model {model.name} matches provider.only/ignore",
            code="no_provider_matches",
            param="provider",
        )
    priced = [
        b for b in named if b.pool.currency == ctx.currency and _within_price(b, model, prefs)
    ]
    if not priced:
        raise NotFound(
            f"no provider of model {model.name} is priced within max_price",
            code="no_provider_within_max_price",
            param="provider.max_price",
        )
    return priced


def _named(backend: Backend, names: Sequence[str]) -> bool:
    return backend.pool.name in names or backend.pool.key in names


def _within_price(backend: Backend, model: PublicModel, prefs: ProviderPrefs) -> bool:
    route_max = model.spec.routing.max_price
    limits = [
        (backend.pool.input_per_million, prefs.max_prompt_price),
        (backend.pool.output_per_million, prefs.max_completion_price),
        (backend.pool.input_per_million, _dec(route_max.input_per_million)),
        (backend.pool.output_per_million, _dec(route_max.output_per_million)),
    ]
    return all(limit is None or price <= limit for price, limit in limits)


def _dec(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def _usable_endpoints(
    model: PublicModel, backend: Backend, prefs: ProviderPrefs, ctx: Context
) -> list[Endpoint]:
    allowed: set[str] = set(model.spec.constraints.allowed_tee)
    if prefs.tee is not None:
        allowed &= set(prefs.tee)
    max_age = model.max_attestation_age
    if prefs.max_attestation_age is not None:
        max_age = min(max_age, prefs.max_attestation_age)
    return [e for e in backend.pool.endpoints if _usable(e, allowed, max_age, prefs, ctx)]


def _none_usable(
    model: PublicModel, pools: list[Backend], prefs: ProviderPrefs, ctx: Context
) -> NotFound | Unavailable:
    """No endpoint passes. Where the client's own provider.tee or max_attestation_age ruled
    out endpoints the Route admits: 404, as for provider.only (a retry cannot help); else
    none is attested now: 503."""
    widened = (
        ("provider.tee", replace(prefs, tee=None)),
        ("provider.max_attestation_age", replace(prefs, max_attestation_age=None)),
        ("provider", replace(prefs, tee=None, max_attestation_age=None)),
    )
    for param, wider in widened:
        if wider != prefs and any(_usable_endpoints(model, b, wider, ctx) for b in pools):
            return NotFound(
                f"no endpoint of model {model.name} meets {param}",
                code="no_provider_matches",
                param=param,
            )
    return Unavailable(
        f"no attested endpoint is available for model {model.name}",
        code="no_attested_endpoint",
    )


def _usable(
    e: Endpoint, allowed: set[str], max_age: dt.timedelta, prefs: ProviderPrefs, ctx: Context
) -> bool:
    if e.tee == UNATTESTED:
        return ctx.allow_unattested and (prefs.tee is None or UNATTESTED in prefs.tee)
    if not e.admitted(ctx.now) or e.tee not in allowed:
        return False
    age = e.attestation_age(ctx.now)
    return age is not None and age <= max_age


def _order_pools(
    model: PublicModel, pools: list[Backend], prefs: ProviderPrefs, ctx: Context
) -> list[Backend]:
    allow_fallbacks = prefs.allow_fallbacks and model.spec.routing.allow_fallbacks
    if prefs.order:
        first = [b for name in prefs.order for b in pools if _named(b, [name])]
        first = list(dict.fromkeys(first))
        if not allow_fallbacks:
            if not first:
                raise NotFound(
                    "no provider in provider.order serves this model and fallbacks are off",
                    code="no_provider_matches",
                    param="provider.order",
                )
            return first
        return first + _default_order([b for b in pools if b not in first], model, prefs, ctx)
    ordered = _default_order(pools, model, prefs, ctx)
    return ordered if allow_fallbacks else ordered[:1]


def _default_order(
    pools: list[Backend], model: PublicModel, prefs: ProviderPrefs, ctx: Context
) -> list[Backend]:
    preferred = model.spec.routing.fallback_order
    head = [b for name in preferred for b in pools if b.pool.name == name]
    rest = [b for b in pools if b not in head]
    sort = prefs.sort or (model.spec.routing.sort if model.spec.routing.sort != "price" else None)
    ordered = head + (_sorted(rest, sort, ctx) if sort else _weighted(rest, ctx.rng))
    return _soft_preferences(ordered, prefs, ctx)


def _sorted(pools: list[Backend], sort: str, ctx: Context) -> list[Backend]:
    if sort == "price":
        return sorted(pools, key=lambda b: (blended_price(b), b.pool.key))
    speeds = pool_speeds(pools, ctx.health, ctx.monotonic)
    if sort == "latency":
        return sorted(pools, key=lambda b: (_ttft(speeds[b.pool.key]), b.pool.key))
    return sorted(pools, key=lambda b: (-(speeds[b.pool.key].tokens_per_s_p50 or 0.0), b.pool.key))


def _ttft(speed: Speed) -> float:
    return speed.ttft_ms_p50 if speed.ttft_ms_p50 is not None else float("inf")


def pool_speeds(pools: Sequence[Backend], health: HealthBook, now: float) -> dict[str, Speed]:
    """Each pool's speed over its endpoints' samples, the pools compared at the loads they
    all saw (speed.matched_floor): what `sort` and the soft preferences read. Computed at
    most once per SPEED_TTL_S per set of pools (ten busy pools take milliseconds; samples
    weigh for minutes)."""
    key = tuple(sorted(b.pool.key for b in pools))
    cached = health.speed_cache.get(key)
    if cached is not None and 0 <= now - cached[0] < SPEED_TTL_S:
        found: dict[str, Speed] = cached[1]
        return found
    groups = {b.pool.key: _samples(b, health, now) for b in pools}
    floor = matched_floor(groups.values())
    found = {k: summary(samples, now, floor) for k, samples in groups.items()}
    if len(health.speed_cache) >= SPEED_CACHE_SIZE:
        health.speed_cache.clear()
    health.speed_cache[key] = (now, found)
    return found


def _samples(backend: Backend, health: HealthBook, now: float) -> list[Sample]:
    found: list[Sample] = []
    for e in backend.pool.endpoints:
        h = health.get(e.key)
        if h is not None:
            found += h.speed.recent(now)
    return found


def blended_price(backend: Backend) -> Decimal:
    return backend.pool.input_per_million + backend.pool.output_per_million


def _weighted(pools: list[Backend], rng: random.Random) -> list[Backend]:
    """Weighted random order without replacement (Efraimidis-Spirakis keys)."""
    keyed = []
    fallback = []
    for b in pools:
        if b.weight <= 0:
            fallback.append(b)
            continue
        price = max(blended_price(b), MIN_PRICE)
        weight = b.weight / float(price * price)
        keyed.append((rng.random() ** (1.0 / weight), b))
    keyed.sort(key=lambda kb: kb[0], reverse=True)
    return [b for _, b in keyed] + sorted(fallback, key=blended_price)


def _soft_preferences(pools: list[Backend], prefs: ProviderPrefs, ctx: Context) -> list[Backend]:
    if prefs.preferred_max_latency is None and prefs.preferred_min_throughput is None:
        return pools
    speeds = pool_speeds(pools, ctx.health, ctx.monotonic)

    def misses(b: Backend) -> bool:
        speed = speeds[b.pool.key]
        ttft, tps = speed.ttft_ms_p50, speed.tokens_per_s_p50
        slow = (
            prefs.preferred_max_latency is not None
            and ttft is not None
            and ttft / 1000 > prefs.preferred_max_latency
        )
        thin = (
            prefs.preferred_min_throughput is not None
            and tps is not None
            and tps < prefs.preferred_min_throughput
        )
        return slow or thin

    return [b for b in pools if not misses(b)] + [b for b in pools if misses(b)]


def _order_endpoints(endpoints: list[Endpoint], ctx: Context) -> list[Endpoint]:
    def key(e: Endpoint) -> tuple[bool, int, float]:
        h = ctx.health.get(e.key)
        if h is None:
            return (False, 0, ctx.rng.random())
        return (h.ejected(ctx.monotonic), h.inflight, ctx.rng.random())

    return sorted(endpoints, key=key)


def _interleave(lists: list[list[Candidate]]) -> list[Candidate]:
    out = []
    for i in range(max((len(x) for x in lists), default=0)):
        out += [x[i] for x in lists if i < len(x)]
    return out


def _pin(found: list[Candidate], session: str, ctx: Context) -> list[Candidate]:
    def score(c: Candidate) -> bytes:
        return hashlib.blake2b(f"{session}|{c.endpoint.key}".encode(), digest_size=8).digest()

    healthy = [c for c in found if not _ejected(c, ctx)]
    if not healthy:
        return found
    best = max(healthy, key=score)
    return [best] + [c for c in found if c is not best]


def _ejected(c: Candidate, ctx: Context) -> bool:
    h = ctx.health.get(c.endpoint.key)
    return h is not None and h.ejected(ctx.monotonic)
