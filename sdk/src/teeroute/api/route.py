"""Route: a public model name and the MinerPools that may serve it.

The gateway routes a request for `spec.model` to an endpoint of an eligible pool; the operator
publishes which pools are eligible (they exist, their TEE is allowed, they have ready miners)
in the status.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from teeroute.api.common import (
    DNS_LABEL,
    ApiModel,
    Condition,
    Duration,
    ObjectMeta,
    Price,
    TeeType,
    cel,
)


class PoolRef(ApiModel):
    pool: Annotated[str, Field(pattern=DNS_LABEL, max_length=253)]
    """Name of a MinerPool in the Route's namespace."""
    weight: Annotated[int, Field(ge=0, le=1000)] = 1
    """Relative share of traffic among equally preferred pools (0: fallback only)."""


class LabelSelector(ApiModel):
    match_labels: Annotated[dict[str, str], Field(min_length=1)]
    """Pools whose labels include all of these."""


class MaxPrice(ApiModel):
    input_per_million: Price | None = None
    """Highest acceptable price of one million input tokens."""
    output_per_million: Price | None = None
    """Highest acceptable price of one million output tokens."""


class Routing(ApiModel):
    sort: Literal["price", "latency", "throughput"] = "price"
    """What to prefer among eligible endpoints by default (a request's provider.sort wins)."""
    allow_fallbacks: bool = True
    """Whether a request may go to another pool when the preferred ones fail."""
    fallback_order: list[Annotated[str, Field(pattern=DNS_LABEL)]] = Field(default_factory=list)
    """Pools to try, in order, before the sort decides."""
    max_price: MaxPrice = Field(default_factory=MaxPrice)
    """Pools priced above these are not routed to."""


def _hardware_tees() -> list[TeeType]:
    return ["sev-snp", "tdx"]


class Constraints(ApiModel):
    allowed_tee: Annotated[list[TeeType], Field(min_length=1)] = Field(
        default_factory=_hardware_tees
    )
    """TEE types a request may be served by; add `simulated` only on test clusters."""
    max_attestation_age: Duration = "10m"
    """An endpoint whose last verified evidence is older is not routed to."""


class RateLimits(ApiModel):
    requests_per_minute: Annotated[int, Field(ge=1)] | None = None
    """Per API key; unset means unlimited."""
    tokens_per_minute: Annotated[int, Field(ge=1)] | None = None
    """Per API key, input plus output; unset means unlimited."""


class RouteSpec(ApiModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "has(self.backends) != has(self.selector)",
                    "set either backends (pool references) or selector, not both and not neither",
                ),
                cel(
                    "!has(self.backends) || "
                    "self.backends.all(b, self.backends.exists_one(o, o.pool == b.pool))",
                    "each pool may be listed once",
                    field_path=".backends",
                ),
            ]
        }
    )

    model: Annotated[str, Field(min_length=1, max_length=256, pattern=r"^\S+$")]
    """The public model name clients ask for (the `model` of a chat completion)."""
    backends: Annotated[list[PoolRef], Field(min_length=1, max_length=64)] | None = None
    """Pools that serve it, by name."""
    selector: LabelSelector | None = None
    """Pools that serve it, by label."""
    routing: Routing = Field(default_factory=Routing)
    """Default routing preferences."""
    constraints: Constraints = Field(default_factory=Constraints)
    """Requirements every endpoint must meet."""
    rate_limits: RateLimits = Field(default_factory=RateLimits)
    """Limits per API key."""
    sealing: Literal["gateway", "required", "off"] = "gateway"
    """Who seals prompts to the enclave's attested key. `gateway`: clients may seal their
    own requests, and the gateway seals plain ones on the hop to the miner, so the miner's
    host sees only ciphertext either way. `required`: only client-sealed requests are
    accepted (the gateway never sees a prompt). `off`: plain requests go to the miner
    unsealed (engines without an enclave agent); client-sealed ones are still routed."""

    @model_validator(mode="after")
    def _cross_field(self) -> RouteSpec:
        if (self.backends is None) == (self.selector is None):
            raise ValueError(
                "set either backends (pool references) or selector, not both and not neither"
            )
        names = [b.pool for b in self.backends or []]
        if len(names) != len(set(names)):
            raise ValueError("each pool may be listed once")
        return self


class BackendStatus(ApiModel):
    pool: str
    """The MinerPool."""
    eligible: bool
    """Whether the gateway may route to it."""
    reason: str = ""
    """Why not, when not (CamelCase)."""
    tee: str = ""
    """The pool's TEE type."""
    ready_replicas: int = 0
    """Its ready miners."""
    attested_replicas: int = 0
    """Its attested miners."""


class RouteStatus(ApiModel):
    observed_generation: int = 0
    """The .metadata.generation this status describes."""
    eligible_backends: int = 0
    """How many backends the gateway may route to."""
    backends: list[BackendStatus] = Field(default_factory=list)
    """Every backend considered, with its verdict."""
    conditions: list[Condition] = Field(default_factory=list)
    """Ready: at least one backend is eligible."""


class Route(ApiModel):
    model_config = ConfigDict(extra="ignore")

    api_version: Literal["teeroute.dev/v1alpha1"] = "teeroute.dev/v1alpha1"
    kind: Literal["Route"] = "Route"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: RouteSpec
    status: RouteStatus = Field(default_factory=RouteStatus)
