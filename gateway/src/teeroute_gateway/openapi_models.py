"""The typed shapes of the gateway's HTTP API, for its OpenAPI document (openapi.py).

The handlers read and write plain dicts (the proxy path cannot afford a validation layer);
these pydantic models say what those dicts are, and the document's schemas are generated from
them. Request models allow extra members: the gateway passes OpenAI fields it does not act on
through to the miner unchanged. Answers the gateway builds itself (listings, reports,
errors) are described closely; a miner's answer only in the OpenAI fields clients rely on.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

NonEmpty = Annotated[str, Field(min_length=1)]
Positive = Annotated[int, Field(ge=1)]
Amount = Annotated[str, Field(description="a decimal amount, exact (e.g. 0.25)")]
Time = Annotated[str, Field(description="an RFC 3339 time")]


class Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")


# -- errors -----------------------------------------------------------------------------------


class ErrorDetail(Closed):
    message: str = Field(description="for people; never holds prompt content or keys")
    type: str = Field(description="invalid_request_error, authentication_error, …")
    code: str | None = Field(description="a stable machine-readable reason")
    param: str | None = Field(description="the request field at fault, when one is")


class ErrorBody(Closed):
    """Every error answer, as OpenAI's API gives it."""

    error: ErrorDetail


# -- inference --------------------------------------------------------------------------------


class MaxPrice(Open):
    prompt: float | str | None = Field(None, description="USD per million input tokens")
    completion: float | str | None = Field(None, description="USD per million output tokens")


class ProviderPreferences(Open):
    """OpenRouter's provider object, plus teeroute's `tee` and `max_attestation_age`."""

    order: list[NonEmpty] | None = None
    only: list[NonEmpty] | None = None
    ignore: list[NonEmpty] | None = None
    allow_fallbacks: bool = True
    sort: Literal["price", "latency", "throughput"] | None = None
    max_price: MaxPrice | None = None
    preferred_min_throughput: float | None = Field(None, description="tokens/s")
    preferred_max_latency: float | None = Field(None, description="seconds to first token")
    tee: list[Literal["sev-snp", "tdx", "simulated", "none"]] | None = None
    max_attestation_age: str | float | None = Field(None, description='e.g. "2m" or seconds')


class Routing(Open):
    """The fields the gateway acts on; it removes the routing ones before the miner."""

    model: NonEmpty = Field(description="the model; `models` may list fallbacks after it")
    models: list[NonEmpty] | None = Field(None, max_length=8, description="fallbacks, in order")
    stream: bool = False
    max_tokens: Positive | None = None
    max_completion_tokens: Positive | None = None
    n: Positive | None = Field(None, le=128)
    provider: ProviderPreferences | None = None
    session_id: str | None = Field(None, description="sticky routing to one endpoint")


class Message(Open):
    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatCompletionRequest(Routing):
    messages: list[Message] = Field(min_length=1)


class CompletionRequest(Routing):
    prompt: str | list[Any] = Field(description="a string, or a non-empty list (a batch)")
    best_of: Positive | None = None


CHAT_EXAMPLE = {
    "model": "sim-model",
    "messages": [{"role": "user", "content": "say something"}],
    "max_tokens": 8,
}
COMPLETION_EXAMPLE = {"model": "sim-model", "prompt": "say something", "max_tokens": 8}


class Usage(Open):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: float = Field(description="what the request was billed, in the pool's currency")


class Completion(Open):
    """A chat completion or completion, as the miner answered it, with the bill added."""

    id: str
    object: str
    model: str
    choices: list[dict[str, Any]]
    usage: Usage
    provider: str = Field(description="the pool that served it")


# -- listings ---------------------------------------------------------------------------------


class Pricing(Closed):
    input_per_million: Amount
    output_per_million: Amount
    currency: str


class ModelProvider(Closed):
    pool: str
    namespace: str
    input_per_million: Amount
    output_per_million: Amount
    currency: str
    tee: str
    attested_endpoints: int


class ModelEntry(Closed):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    pricing: Pricing | None
    tee: list[str] = Field(description="the TEE types with an admitted endpoint now")
    context_length: int | None
    providers: list[ModelProvider]


class ModelList(Closed):
    object: Literal["list"]
    data: list[ModelEntry]


class EndpointEvidence(Closed):
    pool: str
    namespace: str
    endpoint: str
    tee: str
    measurement: str
    chip_id: str
    hpke_key_sha256: str
    signing_key_sha256: str
    attested_at: Time | None
    expires_at: Time | None
    evidence: dict[str, Any] | None


class AttestationList(Closed):
    object: Literal["list"]
    model: str
    data: list[EndpointEvidence]


class ChallengeRequest(Open):
    model: NonEmpty
    nonce: str = Field(description="base64 of 32 random bytes the client chose")


class ChallengeEntry(Closed):
    pool: str
    namespace: str
    endpoint_id: str
    tee: str
    hpke_key_sha256: str
    signing_key_sha256: str
    pricing: Pricing
    evidence: dict[str, Any] = Field(description="the enclave's evidence document, as it came")


class ChallengeAnswer(Closed):
    model: str
    object: Literal["list"]
    data: list[ChallengeEntry]
    unavailable: list[str] = Field(description="endpoints that gave no evidence in time")


class NonceRequest(Open):
    nonce: str = Field(description="base64 of 32 random bytes the client chose")


class GatewayEvidence(Closed):
    tee: str
    nonce: str
    evidence: str = Field(description="base64 of the TEE's report")
    certificates: list[str]
    tls_spki_sha256: str
    produced_at: Time


# -- accounts and reports ---------------------------------------------------------------------


class Generation(Closed):
    request_id: str
    public_model: str
    pool: str
    upstream_model: str
    input_tokens: int
    output_tokens: int
    input_reported: bool = Field(description="the count is the miner's (else the gateway's)")
    output_reported: bool
    cost_nano: int
    charged_nano: int
    capped: bool
    latency_ms: float
    ttft_ms: float | None = Field(
        description="streamed: ms from request sent to the first content delta; else null"
    )
    tpot_ms: float | None = Field(
        description="streamed: ms per output token after the first; null for whole answers "
        "and single-token streams",
    )
    status: int
    outcome: str
    streamed: bool
    created_at: Time
    receipt_status: str
    claimed_nano: int | None
    bill_reason: str
    receipt: Any = Field(description="the enclave's signed usage receipt (sealed mode)")
    receipt_proof: Any = Field(description="its inclusion proof, once a signed root covers it")


class GenerationAnswer(Closed):
    data: Generation


class EndpointScore(Closed):
    """What the gateway observed of one endpoint, or of a pool's endpoints (docs/scores.md)."""

    ttft_ms_p50: float | None
    ttft_ms_p95: float | None
    tpot_ms_p50: float | None
    tokens_per_s_p50: float | None
    speed_tokens_per_s: float | None
    samples: int
    load_floor: int
    inflight: int
    error_rate_1m: float | None
    uptime: float | None
    status: Literal["normal", "degraded", "down", "unknown"]
    requests: int


class EndpointRow(EndpointScore):
    endpoint: str


class PoolScore(EndpointScore):
    pool: str
    tee: str
    input_per_million: Amount
    output_per_million: Amount
    currency: str
    endpoints: int
    score: float
    weight: float
    by_endpoint: list[EndpointRow]


class Scoreboard(Closed):
    object: Literal["list"]
    load_floor: int
    data: list[PoolScore]


class Weights(Closed):
    weights: dict[str, float]


class BittensorWeights(Closed):
    """Per miner uid (pool label teeroute.dev/uid), u16-scaled as a validator sets them."""

    uids: list[int]
    weights: list[int]
    normalized: dict[str, float]
    unmapped: list[str]


class SettlementRow(Closed):
    pool: str
    from_: Time = Field(alias="from")
    to: Time
    requests: int
    input_tokens: int
    output_tokens: int
    amount: Amount
    amount_nano: int
    currency: str
    flagged: int = Field(description="requests with a missing or invalid usage receipt")
    capped: int = Field(description="requests charged less than their miner claimed")
    claimed_nano: int
    underpaid_nano: int


class Settlement(Closed):
    from_: Time = Field(alias="from")
    to: Time
    data: list[SettlementRow]


class Status(Closed):
    status: str
