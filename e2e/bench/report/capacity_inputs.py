"""The capacity model's inputs, read from the result files, each with the file and field it
came from; and the scenarios RESULTS.md computes (three answer shapes x three modes).

- 255-token streams, paced engine (`sealed-paced.json`, 128 streams x 32 tokens/s, each token
  its own event: the realistic case for the per-token path);
- 255-token streams, fast engine (`sealed-fast.json`: the engine outruns the machine, reads
  coalesce, so this is the per-token cost's lower bound);
- 16-token whole answers, instant engine (`sealed.json`, max load: the per-request worst case).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from statistics import fmean
from typing import Any

from report.capacity import TARGET_TOKENS_PER_S, Capacity, Demand, UnitCosts, capacity
from report.sources import Source

MODES = (("plain", "plain"), ("gateway", "gateway-sealed"), ("client", "client-sealed"))
STREAMS = "128"
SWEEP_INTERVAL_S = 60.0  # issue 17's interval (a MinerPool's default reattestationInterval)


@dataclass(frozen=True)
class Input:
    name: str
    value: str
    source: str


@dataclass(frozen=True)
class Shared:
    """Costs every scenario shares: the ledger, the sweep, an endpoint's tokens/s."""

    ledger_pairs_per_s: float
    sweep_cpu_s_per_endpoint: float
    tokens_per_endpoint_s: float
    inputs: tuple[Input, ...]


@dataclass(frozen=True)
class Scenario:
    shape: str
    mode: str
    tokens_per_request: float
    result: Capacity


def shared(sources: Mapping[str, Source]) -> Shared | None:
    ledger, paced = _data(sources, "ledger"), _data(sources, "sealed-paced")
    operator = _operator_cost(_data(sources, "operator-scale"), _data(sources, "sweep"))
    if ledger is None or paced is None or operator is None:
        return None
    sweep_s, operator_input = operator
    backend, load, pairs = _best_postgres(ledger)
    endpoint = float(paced["results"]["plain"][STREAMS]["tok_s"])
    inputs = (
        Input("T: tokens/s to serve", "1,400,000", "issue 17: Chutes, 100-120 B tokens/day"),
        Input("p: reserve + settle pairs/s, one ledger", f"{pairs:,.0f}",
              f"ledger.json: {backend}, {load} (best closed load; shared by every gateway)"),
        operator_input,
        Input("i: sweep interval", f"{SWEEP_INTERVAL_S:.0f} s",
              "issue 17 (reattestationInterval 1m)"),
        Input("e: tokens/s one endpoint serves", f"{endpoint:,.0f}",
              f"sealed-paced.json: plain, {STREAMS} streams x 32 tokens/s, measured tok_s"),
        Input("w: ledger writes per request", "2", "the gateway: reserve a hold, then settle it"),
    )  # fmt: skip
    return Shared(pairs, sweep_s, endpoint, inputs)


def _operator_cost(
    scale: Mapping[str, Any] | None, sweep: Mapping[str, Any] | None
) -> tuple[float, Input] | None:
    """The operator's CPU-s per endpoint per interval: its whole steady state on the sandbox
    (`operator-scale.json`: sweeps, apiserver writes, reconciles) when measured, else one
    sweep's verification and slice (`sweep.json`)."""
    steady = (scale or {}).get("steady") or {}
    per_1000 = steady.get("operator_cpu_cores_per_1000_endpoints")
    if isinstance(per_1000, int | float) and per_1000 > 0:
        cpu_s = per_1000 / 1000 * SWEEP_INTERVAL_S
        where = "operator-scale.json: steady.operator_cpu_cores_per_1000_endpoints x i / 1000"
        return cpu_s, Input(OPERATOR_INPUT, f"{cpu_s * 1000:.2f} ms", where)
    if sweep is None:
        return None
    sweep_ms = fmean(float(r["operator_cpu_ms_per_endpoint"]) for r in sweep["rounds"])
    where = "sweep.json: mean of rounds, operator_cpu_ms_per_endpoint (verification and slice)"
    return sweep_ms / 1000, Input(OPERATOR_INPUT, f"{sweep_ms:.2f} ms", where)


OPERATOR_INPUT = "s: operator CPU per endpoint per interval"


def _data(sources: Mapping[str, Source], name: str) -> Mapping[str, Any] | None:
    source = sources.get(name)
    return None if source is None else source.data


def _best_postgres(ledger: Mapping[str, Any]) -> tuple[str, str, float]:
    """PostgreSQL, because several gateway processes share one ledger (SQLite is one
    process's); its best closed-loop rate, the most one server gave."""
    runs = [r for r in ledger["results"] if str(r["load"]).startswith("closed:")]
    postgres = [r for r in runs if r["backend"] == "postgres"] or runs
    best = max(postgres, key=lambda r: float(r["pairs_per_s"]))
    return str(best["backend"]), str(best["load"]), float(best["pairs_per_s"])


def scenarios(sources: Mapping[str, Source], common: Shared) -> list[Scenario]:
    found: list[Scenario] = []
    for shape, name, per_request in _SHAPES:
        data = _data(sources, name)
        if data is None:
            continue
        for mode, label in MODES:
            tokens, gateway_s, agent_s = per_request(data, mode)
            costs = UnitCosts(gateway_s, agent_s, common.ledger_pairs_per_s,
                              common.sweep_cpu_s_per_endpoint, SWEEP_INTERVAL_S)  # fmt: skip
            demand = Demand(TARGET_TOKENS_PER_S, tokens, common.tokens_per_endpoint_s)
            found.append(Scenario(shape, label, tokens, capacity(demand, costs)))
    return found


def _per_token(data: Mapping[str, Any], mode: str) -> tuple[float, float, float]:
    """Tokens per request and CPU-s per request from CPU µs per streamed token; the per-token
    figure is total CPU over tokens, so each request's own overhead is already in it."""
    run = data["results"][mode][STREAMS]["cpu_us_per_token"]
    tokens = float(data["settings"]["completion_tokens"])
    return tokens, run["gateway"] * tokens / 1e6, run["agent"] * tokens / 1e6


def _per_request(data: Mapping[str, Any], mode: str) -> tuple[float, float, float]:
    run = data["results"][mode]["max"]["cpu_ms_per_request"]
    tokens = float(data["kinds"]["non_streamed"]["max_tokens"])
    return tokens, run["gateway"] / 1e3, run["agent"] / 1e3


_SHAPES = (
    ("255-token streams, paced engine", "sealed-paced", _per_token),
    ("255-token streams, fast engine", "sealed-fast", _per_token),
    ("16-token whole answers, instant engine", "sealed", _per_request),
)

SOURCES_OF_COSTS = (
    ("255-token streams, paced engine",
     f"sealed-paced.json: results.<mode>.{STREAMS}.cpu_us_per_token x settings.completion_tokens"),
    ("255-token streams, fast engine",
     f"sealed-fast.json: results.<mode>.{STREAMS}.cpu_us_per_token x settings.completion_tokens"),
    ("16-token whole answers, instant engine",
     "sealed.json: results.<mode>.max.cpu_ms_per_request (t = kinds.non_streamed.max_tokens)"),
)  # fmt: skip
