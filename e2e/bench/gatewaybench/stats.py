"""Pure arithmetic of the gateway benchmark: the RSS trend of a soak, latency added over the
direct path, and the goals from the issue with their verdicts. No I/O: unit-tested alone."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

FLAT_MB_PER_MIN = 1.0  # "flat": at most 10 MB over the 10-minute soak after warm-up
SCENARIOS = ("moderate", "throughput", "streamed", "soak")


def slope_per_minute(samples: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, MB) samples, in MB per minute; None below 3 samples."""
    if len(samples) < 3:
        return None
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_y = sum(y for _, y in samples) / n
    var_t = sum((t - mean_t) ** 2 for t, _ in samples)
    if var_t == 0:
        return None
    cov = sum((t - mean_t) * (y - mean_y) for t, y in samples)
    return cov / var_t * 60


def soak_warmup_s(seconds: float) -> float:
    """Samples before this are left out of the trend: allocator and caches filling up."""
    return min(60.0, seconds * 0.1)


def rss_summary(samples: Sequence[tuple[float, float]], warmup_s: float) -> dict[str, Any]:
    steady = [(t, y) for t, y in samples if t >= warmup_s]
    slope = slope_per_minute(steady)
    values = [y for _, y in samples]
    return {
        "start_mb": values[0] if values else None,
        "end_mb": values[-1] if values else None,
        "max_mb": max(values) if values else None,
        "after_warmup_mb": steady[0][1] if steady else None,
        "warmup_s": warmup_s,
        "slope_mb_per_min": round(slope, 3) + 0.0 if slope is not None else None,  # no -0.0
        "flat_limit_mb_per_min": FLAT_MB_PER_MIN,
        "flat": slope <= FLAT_MB_PER_MIN if slope is not None else None,
    }


def added(direct: dict[str, Any] | None, target: dict[str, Any] | None) -> dict[str, float] | None:
    """Latency the target adds to the direct path at moderate load (ms)."""
    if not direct or not target:
        return None
    return {
        "p50_ms": round(target["p50_ms"] - direct["p50_ms"], 3),
        "p99_ms": round(target["p99_ms"] - direct["p99_ms"], 3),
    }


def errors(result: dict[str, Any]) -> int:
    return sum(result[s]["errors"] for s in SCENARIOS if result.get(s))


@dataclass(frozen=True)
class Goal:
    text: str
    unit: str
    value: Callable[[str, dict[str, Any]], float | None]  # (target, results) -> measured
    ok: Callable[[float], bool]
    only: str | None = None  # a goal about one target (e.g. the ratio to LiteLLM)


def _get(results: dict[str, Any], *path: str) -> Any:
    node: Any = results
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def _ratio(target: str, results: dict[str, Any]) -> float | None:
    ours = _get(results, target, "throughput", "rps")
    theirs = _get(results, "litellm", "throughput", "rps")
    return round(ours / theirs, 1) if ours and theirs else None


def _flat(target: str, results: dict[str, Any]) -> float | None:
    return _get(results, target, "soak", "rss", "slope_mb_per_min")  # type: ignore[no-any-return]


GOALS = (
    Goal("added p50 ≤ 1 ms (moderate load)", "ms",
         lambda t, r: _get(r, t, "added", "p50_ms"), lambda v: v <= 1.0),
    Goal("added p99 ≤ 5 ms (moderate load)", "ms",
         lambda t, r: _get(r, t, "added", "p99_ms"), lambda v: v <= 5.0),
    Goal("≥ 1,500 req/s on one core", "req/s",
         lambda t, r: _get(r, t, "throughput", "rps"), lambda v: v >= 1500),
    Goal("≥ 10x LiteLLM's req/s per core", "x", _ratio, lambda v: v >= 10, only="gateway"),
    Goal("streamed ≥ 50k tokens/s on one core", "tokens/s",
         lambda t, r: _get(r, t, "streamed", "tokens_per_s"), lambda v: v >= 50_000),
    Goal(f"memory flat in the soak (slope ≤ {FLAT_MB_PER_MIN:g} MB/min)", "MB/min",
         _flat, lambda v: v <= FLAT_MB_PER_MIN),
    Goal("every request answered 200", "errors",
         lambda t, r: errors(r[t]) if r.get(t, {}).get("available") else None, lambda v: v == 0),
)  # fmt: skip


def verdicts(results: dict[str, Any], targets: Sequence[str]) -> list[dict[str, Any]]:
    """One row per goal and target: the measured value and pass (True/False; None: not run)."""
    rows = []
    for goal in GOALS:
        for target in targets:
            if goal.only not in (None, target):
                continue
            value = goal.value(target, results)
            rows.append(
                {
                    "goal": goal.text,
                    "target": target,
                    "value": value,
                    "unit": goal.unit,
                    "pass": goal.ok(value) if value is not None else None,
                }
            )
    return rows
