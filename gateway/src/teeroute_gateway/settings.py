"""Gateway settings: the `spec` of a config file's GatewayConfig document, or, when serving
from the cluster, environment variables prefixed TEEROUTE_GATEWAY_ (e.g.
TEEROUTE_GATEWAY_LEDGER=postgresql://teeroute@db/teeroute). Field names are camelCase in
files and UPPER_SNAKE in the environment."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

ENV_PREFIX = "TEEROUTE_GATEWAY_"


class GatewaySettings(BaseModel):
    model_config = ConfigDict(
        use_attribute_docstrings=True,
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> GatewaySettings:
        """Settings from TEEROUTE_GATEWAY_<FIELD> variables (cluster mode)."""
        values = {
            field: environ[ENV_PREFIX + field.upper()]
            for field in cls.model_fields
            if ENV_PREFIX + field.upper() in environ
        }
        return cls.model_validate(values)

    ledger: str = "sqlite:///teeroute-ledger.db"
    """Where keys, balances and usage live: sqlite:///PATH (one machine; relative paths are
    relative to the config file) or postgresql://USER@HOST:PORT/DB (several replicas)."""

    rate_limiter: str = "memory"
    """memory (per process: with N workers each enforces the limit on its own) or
    redis://HOST:PORT/DB (shared by every replica and worker)."""

    host: str = "127.0.0.1"
    """Address to listen on (`--host` wins)."""

    port: int = Field(default=8080, ge=0, le=65535)
    """Port to listen on (`--port` wins)."""

    workers: int = Field(default=1, ge=1, le=64)
    """Server processes (`--workers` wins); each has its own catalog, health and metrics."""

    namespaces: list[str] = Field(default_factory=list)
    """Cluster mode: namespaces whose Routes and MinerPools to serve; empty: all."""

    operator_key: str = ""
    """Cluster mode: the operator's public key (standard base64 of its raw 32-byte Ed25519
    key, as `teeroute operator release-key` prints it). Only endpoints in admission records
    this key signed are routed (docs/threat-model.md); pods, labels and EndpointSlice entries
    are never trusted on their own. Required in cluster mode: the gateway refuses to start
    without it."""

    gateway_key_file: Path | None = None
    """The gateway key: an Ed25519 private key, PKCS#8 PEM, unencrypted (`teeroute gateway
    gateway-key --out FILE` writes one), e.g. mounted from a Secret; an absolute path. Every
    request to a miner carries `teeroute-gateway-auth` signed by it, for that enclave's
    attested HPKE key (docs/sealed-mode.md section 8); enclave agents pin its public half
    (TEEROUTE_AGENT_GATEWAY_KEYS, set by the operator from TEEROUTE_OPERATOR_GATEWAY_KEYS) and
    answer inference to no one else. Unset: requests go unsigned, and agents refuse them."""

    api_keys_file: Path | None = None
    """Declared API keys (GitOps, Helm): a YAML/JSON file listing keys by SHA-256 with their
    initial credit, e.g. mounted from a Secret; an absolute path. At startup each key the
    ledger lacks gets its account; existing ones are left alone (docs in
    `teeroute_gateway.declared_keys`). Keys can also be made with `teeroute keys create`."""

    allow_unattested: bool = False
    """Route to static endpoints listed without evidence (tee `none`). Only for local
    development and benchmarks against a plain engine: nothing is attested then."""

    currency: Annotated[str, Field(pattern=r"^[A-Z]{3,5}$")] = "USD"
    """The billing currency of API keys; pools priced in another currency are not used."""

    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    """Larger request bodies are refused with 413."""

    body_read_timeout_s: float = Field(default=60.0, gt=0)
    """Seconds a client has to send a request's whole body once its headers are in; then 408
    and the connection is closed (a body sent a byte at a time holds nothing for long)."""

    request_head_timeout_s: float = Field(default=10.0, gt=0)
    """Seconds from a connection's opening, or a request's first byte, to the end of its
    headers; then 408 (nothing, if the client sent nothing) and the connection is closed."""

    max_header_bytes: int = Field(default=32 * 1024, ge=1024, le=1024 * 1024)
    """Request line plus headers; larger heads get 431 and the connection is closed (counted
    per socket read, so at most one more read, about 250 KB, is ever held)."""

    max_headers: int = Field(default=100, ge=8, le=10000)
    """Header lines per request; more get 431."""

    max_connections: int = Field(default=4096, ge=1)
    """Open client connections per worker process; a connection beyond it gets 503
    `overloaded` with Retry-After and is closed at once."""

    max_in_flight: int = Field(default=256, ge=1)
    """Requests one worker process works on at once (probes excepted; docs/gateway-limits.md).
    A request takes its slot once its body is in, so slow senders hold none."""

    max_queued: int = Field(default=256, ge=0)
    """Requests that may wait for a slot when `maxInFlight` are running; beyond that a request
    gets 503 `overloaded` with Retry-After at once, instead of queueing without end."""

    max_in_flight_per_key: int | None = Field(default=None, ge=1)
    """Requests one API key's account may have in flight in one worker process at once;
    past it 429 `concurrency_limit_exceeded` with Retry-After, so that one key cannot take
    every `maxInFlight` slot. Unset: no limit beyond `maxInFlight` (docs/gateway-limits.md)."""

    queue_timeout_s: float = Field(default=2.0, ge=0)
    """Longest wait for a slot; then 503 `overloaded` with Retry-After."""

    overload_retry_after_s: int = Field(default=1, ge=1, le=3600)
    """The Retry-After (seconds) of a 503 `overloaded`."""

    default_max_tokens: int = Field(default=4096, ge=1)
    """Output bound sent upstream when a request sets none (the budget hold needs one)."""

    hold_ttl_s: float = Field(default=900.0, ge=1)
    """Seconds a request's credit hold lives unless renewed; a running request renews it
    every third of that, so only holds of a gateway that stopped expire (and are freed)."""

    max_attempts: int = Field(default=3, ge=1, le=10)
    """Endpoints tried per request before the client gets an error (retries happen only
    before the first byte reaches the client)."""

    connect_timeout_s: float = Field(default=2.0, gt=0)
    """Connecting to a miner."""

    first_byte_timeout_s: float = Field(default=120.0, gt=0)
    """From sending a request to a miner's first response byte (includes queueing and, for
    non-streamed requests, the whole generation)."""

    idle_timeout_s: float = Field(default=60.0, gt=0)
    """Longest pause between two pieces of a response."""

    receipt_root_interval_s: float = Field(default=10.0, gt=0, le=3600)
    """Sealed mode: how long a receipt may wait for the enclave's signed Merkle root before
    the gateway asks the agent for it (POST /v1/sessions/roots). Match the agents'
    TEEROUTE_AGENT_ROOT_INTERVAL_S (S, default 10)."""

    receipt_root_grace_s: float = Field(default=30.0, gt=0, le=3600)
    """Sealed mode: a receipt no signed root covers this many seconds after
    `receiptRootIntervalS` is flagged (receipt_status `unrooted`): it cannot be proven to
    a third party."""

    admin_key_sha256: list[Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]] = Field(
        default_factory=list
    )
    """SHA-256 (hex) of admin keys for /v1/miners and /v1/settlement (`teeroute keys admin`)."""

    metrics_token_sha256: Annotated[str, Field(pattern=r"^([0-9a-f]{64})?$")] = ""
    """SHA-256 (hex) of the token /metrics requires: when set, a scrape without
    `Authorization: Bearer <token>` gets 401 (compared in constant time); e.g.
    `printf %s "$TOKEN" | sha256sum`. Empty: /metrics is open to whoever reaches the port."""

    access_log: bool = False
    """One structured (JSON) log line per request: ids, model, pool, status, token counts,
    cost, timings. Never content or keys."""

    tracing: Literal["off", "console", "otlp"] = "off"
    """OpenTelemetry traces: off, console (stderr) or otlp (OTEL_EXPORTER_OTLP_ENDPOINT;
    needs opentelemetry-exporter-otlp installed). Spans never carry prompts or outputs."""

    trace_sample_ratio: float = Field(default=1.0, ge=0, le=1)
    """Fraction of requests traced."""

    tee: Literal["off", "simulated", "tsm"] = "off"
    """The gateway's own attestation (`POST /v1/gateway/attestation`, docs/sealed-mode.md
    section 6): off; tsm (the gateway runs in a SEV-SNP or TDX guest: evidence from
    configfs-tsm); simulated (a chip key from `simulatedChipDir`: kind clusters and tests,
    proves nothing about real hardware). Anything but off needs `tlsCertFile`: the evidence
    binds the TLS key clients connect to, and evidence bound to no connection could be relayed
    by any server in front of the gateway."""

    simulated_chip_dir: Path | None = None
    """tee simulated: the directory holding `<simulatedNode>.key` and `.crt` (as the enclave
    agent's TEEROUTE_SIMULATED_DIR); relative to the config file."""

    simulated_node: str = ""
    """tee simulated: the node whose chip key signs the gateway's evidence."""

    tls_cert_file: Path | None = None
    """Serve HTTPS with this certificate (PEM; the leaf first, then any chain); relative to
    the config file. Its key is what the gateway's evidence binds. Unset: plain HTTP."""

    tls_key_file: Path | None = None
    """The private key of `tlsCertFile` (PEM, unencrypted); given together with it."""

    @field_validator(
        "simulated_chip_dir",
        "tls_cert_file",
        "tls_key_file",
        "gateway_key_file",
        "api_keys_file",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("operator_key")
    @classmethod
    def _raw_ed25519(cls, value: str) -> str:
        if value and operator_public_key(value) is None:
            raise ValueError("operatorKey: expected the standard base64 of a 32-byte Ed25519 key")
        return value

    @model_validator(mode="after")
    def _attestation(self) -> GatewaySettings:
        problem = attestation_problem(self)
        if problem:
            raise ValueError(problem)
        return self

    @field_validator("namespaces", "admin_key_sha256", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [n.strip() for n in value.split(",") if n.strip()]
        return value


def attestation_problem(settings: GatewaySettings) -> str:
    """What is wrong with the TLS and self-attestation settings taken together ("" if
    nothing), naming the fields as a config file spells them."""
    tls = settings.tls_cert_file is not None, settings.tls_key_file is not None
    if tls[0] != tls[1]:
        return "tlsCertFile and tlsKeyFile are given together (the certificate and its key)"
    if settings.tee != "off" and not tls[0]:
        return (
            f"tee {settings.tee} needs tlsCertFile and tlsKeyFile: the gateway's evidence binds "
            "the TLS key clients connect to"
        )
    simulated = settings.simulated_chip_dir is not None or bool(settings.simulated_node)
    if settings.tee != "simulated":
        return "simulatedChipDir and simulatedNode are only for tee simulated" if simulated else ""
    if settings.simulated_chip_dir is None:
        return "tee simulated needs simulatedChipDir (the directory of the simulated chip keys)"
    if not settings.simulated_node:
        return "tee simulated needs simulatedNode (whose chip key in simulatedChipDir signs)"
    return ""


def operator_public_key(text: str) -> bytes | None:
    """The raw 32 bytes of `operatorKey`, or None when it is not one."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 32 else None
