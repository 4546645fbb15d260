"""Pure arithmetic of the sealed-mode benchmark: runs of one mode and scenario merged into one
row, sealed against plain (added latency, throughput ratio, the gateway's own CPU per
request), which core limited each saturating run, and the goals with their verdicts. No I/O."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sealedbench.kinds import KINDS, Kind, measured

TARGET_RATIO = 0.9  # the issue: sealed throughput at least 0.9x plain through the same gateway
SATURATED_PROCESS = 0.9  # a single-threaded event loop at 90 % of a core is the limit
SATURATED_CORE = 0.95
PROCESSES = ("gateway", "agent", "engine")


def _per(amount: float, count: float, scale: float = 1.0) -> float | None:
    return round(amount * scale / count, 4) if count else None


def merge(runs: Sequence[dict[str, Any]], cores: tuple[int | None, int | None]) -> dict[str, Any]:
    """The runs (rounds) of one mode and scenario as one row: counts and CPU summed (so CPU per
    request is over all rounds), req/s and latency percentiles the median over the rounds (one
    round disturbed by another tenant of the machine does not move it; each round's own are
    kept)."""
    if not runs:
        raise ValueError("nothing to merge")
    requests = sum(r["requests"] for r in runs)
    seconds = sum(r["seconds"] for r in runs)
    wall = sum(r["wall_s"] for r in runs)
    cpu = {p: round(sum(r["cpu_s"].get(p, 0.0) for r in runs), 3) for p in PROCESSES}
    busy = {c: sum(r["core_busy_s"].get(c, 0.0) for r in runs) for c in runs[0]["core_busy_s"]}
    merged: dict[str, Any] = {
        "rounds": len(runs),
        "requests": requests,
        "seconds": round(seconds, 3),
        "rps": round(statistics.median(r["rps"] for r in runs), 1),
        "connections": runs[0]["connections"],
        "think_ms": runs[0]["think_ms"],
        **{
            f"{q}_ms": round(statistics.median(r[f"{q}_ms"] for r in runs), 3)
            for q in ("p50", "p90", "p99", "mean")
        },
        "max_ms": max(r["max_ms"] for r in runs),
        **{k: sum(r[k] for r in runs) for k in ("non200", "bad_body", "socket_errors", "errors")},
        "first_bad": next((r["first_bad"] for r in runs if r["first_bad"]), ""),
        "listen_overflows": (
            None
            if any(r.get("listen_overflows") is None for r in runs)
            else sum(r["listen_overflows"] for r in runs)
        ),
        "cpu_s": cpu,
        "cpu_util": {p: _per(cpu[p], wall) for p in PROCESSES},
        "cpu_ms_per_request": {p: _per(cpu[p], requests, 1000) for p in PROCESSES},
        "core_busy": {c: _per(b, wall) for c, b in busy.items()},
        "requests_per_gateway_cpu_s": (
            round(requests / cpu["gateway"], 1) if cpu["gateway"] > 0 else None
        ),
        "by_round": [{"rps": r["rps"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"]} for r in runs],
    }
    _, load_core = cores
    if load_core is not None and str(load_core) in busy:
        rest = busy[str(load_core)] - cpu["agent"] - cpu["engine"]
        merged["load_core_rest_ms_per_request"] = _per(max(rest, 0.0), requests, 1000)
    merged["bottleneck"] = bottleneck(merged, cores)
    return merged


def bottleneck(row: dict[str, Any], cores: tuple[int | None, int | None]) -> str:
    """Which core limited a run: the gateway's (full of the gateway, or of the gateway and
    other tenants of a shared machine), the load core (agent + engine + wrk), both, or
    neither (latency-bound: too few connections to fill either)."""
    target_core, load_core = cores
    gateway = (row.get("cpu_util") or {}).get("gateway")
    busy = row.get("core_busy") or {}
    target = busy.get(str(target_core)) if target_core is not None else None
    load = busy.get(str(load_core)) if load_core is not None else None
    parts = []
    if gateway is not None and gateway >= SATURATED_PROCESS:
        parts.append(f"gateway (core {target_core})")
    elif target is not None and target >= SATURATED_CORE:
        parts.append(f"core {target_core} (gateway + other processes)")
    if load is not None and load >= SATURATED_CORE:
        parts.append(f"core {load_core} (agent + engine + wrk)")
    return " and ".join(parts) or "neither core saturated"


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    return round(ours / theirs, 3) if ours and theirs else None


def _diff(ours: float | None, theirs: float | None) -> float | None:
    return round(ours - theirs, 3) if ours is not None and theirs is not None else None


def compare(
    results: dict[str, dict[str, Any]], sealed: Sequence[str], kinds: Sequence[Kind] = KINDS
) -> dict[str, Any]:
    """Each sealed mode against `plain`, per request kind: latency added at moderate load,
    max req/s ratio, and the ratio of requests per gateway CPU-second (the gateway's own
    capacity, whatever else limited the run)."""
    plain = results.get("plain", {})
    found: dict[str, Any] = {}
    for mode in sealed:
        ours = results.get(mode, {})
        rows = {}
        for kind in kinds:
            a, b = ours.get(kind.moderate, {}), plain.get(kind.moderate, {})
            x, y = ours.get(kind.maximum, {}), plain.get(kind.maximum, {})
            rows[kind.name] = {
                "added_p50_ms": _diff(a.get("p50_ms"), b.get("p50_ms")),
                "added_p99_ms": _diff(a.get("p99_ms"), b.get("p99_ms")),
                "throughput_ratio": _ratio(x.get("rps"), y.get("rps")),
                "gateway_capacity_ratio": _ratio(
                    x.get("requests_per_gateway_cpu_s"), y.get("requests_per_gateway_cpu_s")
                ),
                "added_gateway_cpu_ms_per_request": _diff(
                    (x.get("cpu_ms_per_request") or {}).get("gateway"),
                    (y.get("cpu_ms_per_request") or {}).get("gateway"),
                ),
                "added_agent_cpu_ms_per_request": _diff(
                    (x.get("cpu_ms_per_request") or {}).get("agent"),
                    (y.get("cpu_ms_per_request") or {}).get("agent"),
                ),
                "bottleneck": x.get("bottleneck"),
                "plain_bottleneck": y.get("bottleneck"),
            }
        found[mode] = rows
    return found


def errors(result: dict[str, Any]) -> int:
    return sum(part.get("errors", 0) for part in result.values() if isinstance(part, dict))


@dataclass(frozen=True)
class Goal:
    text: str
    unit: str
    value: Callable[[str, dict[str, Any]], float | None]  # (mode, doc) -> measured
    ok: Callable[[float], bool]
    modes: tuple[str, ...]
    kind: str | None = None  # a goal of one kind is left out of a run without that kind


def _get(doc: dict[str, Any], *path: str) -> Any:
    node: Any = doc
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node


SEALED = ("gateway", "client")
ALL = ("plain", *SEALED)


def _at_least_target(value: float) -> bool:
    return value >= TARGET_RATIO


def _ratio_goal(text: str, kind: Kind, metric: str) -> Goal:
    def value(mode: str, doc: dict[str, Any]) -> float | None:
        found = _get(doc, "comparison", mode, kind.name, metric)
        return found if isinstance(found, int | float) else None

    return Goal(text, "x", value, _at_least_target, SEALED, kind.name)


def ratio_goals(kinds: Sequence[Kind]) -> tuple[Goal, ...]:
    """Per kind: the end-to-end throughput ratio, then (after every kind's) the gateway's own
    capacity ratio."""
    throughput = (
        _ratio_goal(
            f"sealed / plain max req/s ≥ {TARGET_RATIO}x, {k.label} (end to end)",
            k,
            "throughput_ratio",
        )
        for k in kinds
    )
    capacity = (
        _ratio_goal(
            f"gateway's own capacity (req per gateway CPU-s) sealed / plain ≥ {TARGET_RATIO}x, "
            f"{k.label}",
            k,
            "gateway_capacity_ratio",
        )
        for k in kinds
    )
    return (*throughput, *capacity)


GOALS = (
    *ratio_goals(KINDS),
    Goal("every request answered 200 and checked", "errors",
         lambda m, d: errors(d["results"][m]) if m in d.get("results", {}) else None,
         lambda v: v == 0, ALL),
    Goal("every answered sealed request has a ledger record with receipt `valid`",
         "records not valid or missing",
         lambda m, d: _get(d, "ledger", m, "problems"), lambda v: v == 0, SEALED),
)  # fmt: skip


def verdicts(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per goal and mode: the measured value and pass (True/False; None: not run).
    The goals of a kind the document did not measure (`--kinds`) are left out."""
    names = {kind.name for kind in measured(doc)}
    rows = []
    for goal in GOALS:
        if goal.kind is not None and goal.kind not in names:
            continue
        for mode in goal.modes:
            value = goal.value(mode, doc)
            rows.append(
                {
                    "goal": goal.text,
                    "mode": mode,
                    "value": value,
                    "unit": goal.unit,
                    "pass": goal.ok(value) if value is not None else None,
                }
            )
    return rows
