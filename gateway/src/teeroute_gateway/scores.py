"""From what the gateway observed to a miner's score and the weights a validator sets
(docs/scores.md). Pure; `listings.scoreboard` feeds it, `GET /v1/miners` shows it.

    score       = reliability x speed / price
    reliability = uptime x (1 - error_rate_1m)    uptime: successes / attempts since the
                                                  gateway started; the last minute's errors
                                                  bite at once
    speed       = REFERENCE_TOKENS / (ttft + (REFERENCE_TOKENS - 1) x tpot)   tokens/s of a
                  reference streamed answer, from the load-weighted p50s (speed.py); without
                  streamed timings, the tokens/s p50 of whole answers; no samples: 0
    price       = input + output price per million tokens (at least MIN_PRICE)

Moving the first token earlier while the rest comes no sooner lowers ttft by what it raises
(n - 1) x tpot: the reference speed does not move, so gaming TTFT alone buys no weight.

Weights, in the shape a Bittensor validator sets them: `normalized` (sum 1, what
`?format=weights` shows) and `u16_weights`, as bittensor's
`weight_utils.convert_weights_and_uids_for_emit`: divided by the largest, scaled to
u16::MAX (65535) and rounded, zeros dropped with their uids.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal

from teeroute_gateway.speed import Speed

REFERENCE_TOKENS = 256
"""The answer length the speed is quoted for (about gatewaybench's long streams)."""
MIN_PRICE = Decimal("0.000001")
U16_MAX = 65535


def reference_speed(speed: Speed) -> float | None:
    """Tokens/s of a REFERENCE_TOKENS answer at this TTFT and TPOT (else tokens/s p50)."""
    ttft, tpot = speed.ttft_ms_p50, speed.tpot_ms_p50
    if ttft is not None and tpot is not None:
        total_ms = ttft + (REFERENCE_TOKENS - 1) * tpot
        return REFERENCE_TOKENS * 1000 / total_ms if total_ms > 0 else None
    return speed.tokens_per_s_p50


def reliability(uptime: float | None, error_rate: float | None) -> float | None:
    if uptime is None:
        return None
    return uptime * (1.0 - (error_rate or 0.0))


def score(reliable: float | None, speed: float | None, price: Decimal) -> float:
    """0 without observations: an unmeasured miner earns nothing until it has served."""
    if reliable is None or not speed:
        return 0.0
    return reliable * speed / float(max(price, MIN_PRICE))


def normalized(scores: Mapping[str, float]) -> dict[str, float]:
    """Scores divided by their sum (all 0 when none is positive), rounded to 6 places."""
    total = sum(max(0.0, v) for v in scores.values())
    return {k: round(max(0.0, v) / total, 6) if total > 0 else 0.0 for k, v in scores.items()}


def u16_weights(uids: Sequence[int], weights: Sequence[float]) -> tuple[list[int], list[int]]:
    """(uids, u16 weights) as `convert_weights_and_uids_for_emit` makes them: the largest
    weight becomes 65535, the rest in proportion (Python's round), zeros left out.
    ValueError for negative weights or uids, or lists of different lengths."""
    if len(uids) != len(weights):
        raise ValueError(f"{len(uids)} uids for {len(weights)} weights")
    if any(w < 0 for w in weights) or any(u < 0 for u in uids):
        raise ValueError("weights and uids must not be negative")
    top = max(weights, default=0.0)
    if top <= 0:
        return [], []
    pairs = [(uid, round(w / top * U16_MAX)) for uid, w in zip(uids, weights, strict=True)]
    kept = [(uid, value) for uid, value in pairs if value != 0]
    return [uid for uid, _ in kept], [value for _, value in kept]


def by_uid(scores: Mapping[str, float], uids: Mapping[str, int]) -> dict[int, float]:
    """Pool scores summed per miner uid (a miner may run several pools); pools without a
    uid are left out."""
    found: dict[int, float] = {}
    for pool, value in scores.items():
        uid = uids.get(pool)
        if uid is not None:
            found[uid] = found.get(uid, 0.0) + value
    return found
