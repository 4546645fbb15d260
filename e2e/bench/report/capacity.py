"""The capacity model: what a network moving 1.4 M tokens/s needs, from measured unit costs.

Chutes moves 100-120 B tokens a day; 120e9 / 86,400 s ≈ 1.39 M tokens/s, rounded up to 1.4 M.
The model is arithmetic on per-request and per-endpoint costs, each measured by a benchmark
(`capacity_inputs` says which file and field). No headroom is added: a core here is a core
100 % busy. `FORMULA` states the model; `capacity` computes it.
"""

from __future__ import annotations

from dataclasses import dataclass

CHUTES_TOKENS_PER_DAY = 120e9
TARGET_TOKENS_PER_S = 1.4e6
LEDGER_WRITES_PER_REQUEST = 2  # a hold reserved before the upstream call, settled after

FORMULA = """\
requests/s        R = T / t          T tokens/s, t tokens per request
gateway cores     G = R * c_gw       c_gw gateway CPU-s per request
agent cores       A = R * c_agent    c_agent enclave-agent CPU-s per request
ledger writes/s   W = R * w          w writes per request (reserve, then settle)
ledger instances  L = R / p          p reserve+settle pairs/s one ledger gave
endpoints         E = T / e          e tokens/s one endpoint serves
operator cores    O = E * s / i      s sweep CPU-s per endpoint, i sweep interval (s)"""


class CapacityInputError(ValueError):
    """An input of the capacity model that cannot be a measured cost (zero, negative)."""


@dataclass(frozen=True)
class Demand:
    tokens_per_s: float
    tokens_per_request: float
    tokens_per_endpoint_s: float


@dataclass(frozen=True)
class UnitCosts:
    gateway_cpu_s_per_request: float
    agent_cpu_s_per_request: float
    ledger_pairs_per_s: float
    sweep_cpu_s_per_endpoint: float
    sweep_interval_s: float
    ledger_writes_per_request: int = LEDGER_WRITES_PER_REQUEST


@dataclass(frozen=True)
class Capacity:
    requests_per_s: float
    gateway_cores: float
    agent_cores: float
    ledger_writes_per_s: float
    ledger_instances: float
    endpoints: float
    operator_cores: float


def capacity(demand: Demand, costs: UnitCosts) -> Capacity:
    """The cores and writes `demand` needs at `costs`; every input must be positive."""
    _positive(demand.tokens_per_s, demand.tokens_per_request, demand.tokens_per_endpoint_s)
    _positive(costs.gateway_cpu_s_per_request, costs.ledger_pairs_per_s, costs.sweep_interval_s)
    _not_negative(costs.agent_cpu_s_per_request, costs.sweep_cpu_s_per_endpoint)
    requests = demand.tokens_per_s / demand.tokens_per_request
    endpoints = demand.tokens_per_s / demand.tokens_per_endpoint_s
    return Capacity(
        requests_per_s=requests,
        gateway_cores=requests * costs.gateway_cpu_s_per_request,
        agent_cores=requests * costs.agent_cpu_s_per_request,
        ledger_writes_per_s=requests * costs.ledger_writes_per_request,
        ledger_instances=requests / costs.ledger_pairs_per_s,
        endpoints=endpoints,
        operator_cores=endpoints * costs.sweep_cpu_s_per_endpoint / costs.sweep_interval_s,
    )


def tokens_per_s_of(tokens_per_day: float) -> float:
    return tokens_per_day / 86_400


def _positive(*values: float) -> None:
    for value in values:
        if not value > 0:  # also refuses NaN
            raise CapacityInputError(f"a capacity input must be > 0, got {value!r}")


def _not_negative(*values: float) -> None:
    for value in values:
        if not value >= 0:
            raise CapacityInputError(f"a capacity input must be ≥ 0, got {value!r}")
