"""Operator settings, from environment variables prefixed TEEROUTE_OPERATOR_ (e.g.
TEEROUTE_OPERATOR_NAMESPACES=miners,staging)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from teeroute.sealing import gateway_auth

Scheme = Literal["https", "http"]


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TEEROUTE_OPERATOR_", use_attribute_docstrings=True, frozen=True
    )

    namespaces: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Namespaces to watch, comma-separated; empty watches the whole cluster (needs a
    ClusterRole instead of per-namespace Roles)."""

    peering: str = ""
    """Name of the kopf peering object for high availability: replicas with the same name
    elect one active operator. Empty runs standalone (one replica only)."""

    resync_seconds: float = Field(default=300.0, gt=0)
    """How often every pool and route is reconciled even without a change, in seconds; a
    safety net under the watches, which repair drift within about a second. At 30 s the
    resync was the largest share of the operator's CPU (~13 requests per pool each time:
    0.24-0.28 cores per 1,000 endpoints; 0.12 at 300 s, docs/operator-scale.md)."""

    field_manager: str = "teeroute-operator"
    """Server-side apply field manager: the fields the operator owns on its children."""

    kubeconfig: Path | None = None
    """Kubeconfig to use; unset: $KUBECONFIG, else the pod's service account."""

    liveness_port: int = Field(default=8080, ge=0, le=65535)
    """Port of the /healthz liveness endpoint; 0 disables it."""

    metrics_port: int = Field(default=9090, ge=0, le=65535)
    """Port of the Prometheus /metrics endpoint; 0 disables it."""

    trust_dir: Path | None = None
    """Directory with extra trust (simulated-root.pem, tdx/ collateral), mounted from the
    chart's ConfigMap; unset: only the built-in vendor roots."""

    allow_simulated_tee: bool = False
    """Admit simulated-TEE evidence (signed by trust_dir/simulated-root.pem). Off by default:
    a simulated TEE protects nothing, so only test and development clusters turn it on."""

    attestation_concurrency: int = Field(default=32, ge=1, le=1024)
    """At most this many challenges in flight across all pools."""

    attestation_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    """How long a challenge may take before the endpoint counts as unreachable."""

    attestation_jitter: float = Field(default=0.1, ge=0, le=0.5)
    """Each pool's sweep interval varies by up to this fraction, so sweeps spread out."""

    release_key_file: Path | None = None
    """The operator's release key: an Ed25519 private key, PKCS#8 PEM, unencrypted (`teeroute
    operator release-key --out FILE` writes one), e.g. mounted from a Secret. Every secret
    release is signed with it, and the agents of the pods the operator runs pin its public half
    (TEEROUTE_AGENT_RELEASE_KEY) and accept releases signed by it alone. Unset: no pool's
    `secrets` are released (each release fails, naming this setting)."""

    gateway_keys: str = ""
    """The gateway's public key(s), standard base64 of raw Ed25519 keys, comma-separated
    (several during a rotation; `teeroute gateway gateway-key` prints them). The agents of the
    pods the operator runs pin them (TEEROUTE_AGENT_GATEWAY_KEYS) and answer inference only
    to requests they signed (docs/sealed-mode.md section 8). Every enclave the operator admits,
    its pods' and external endpoints' alike, must pin exactly these keys: its evidence binds
    the keys it pins, and any other set is rejected (check `gateway.keys`). Unset: only
    enclaves pinning none are admitted, and they answer no inference at all (fail closed)."""

    external_schemes: Annotated[list[Scheme], NoDecode] = Field(
        default_factory=lambda: list[Scheme](["https"]), min_length=1
    )
    """URL schemes an external endpoint (MinerPool `endpoints[].url`) may use, comma-separated:
    `https` by default; add `http` only where miners sit on a network the operator trusts
    (a test cluster). An endpoint with another scheme is rejected (check `egress.url`)."""

    external_hosts: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["*"])
    """Hosts an external endpoint may name, comma-separated patterns: `*` (any public DNS
    name or public IP address), `*.miners.example` (names under it), `miner.example` (that
    name), `203.0.113.0/24` (addresses). Private, shared and reserved addresses match only a
    pattern that names them; link-local and cloud metadata addresses never match. Narrow it
    to your miners' domains so pool authors cannot use the operator to probe other hosts."""

    external_allow_loopback: bool = False
    """Let external endpoints name loopback addresses (127.0.0.0/8, ::1, localhost): only
    for single-machine test clusters, where the operator and the miners share a host."""

    metrics_token_file: Path | None = None
    """A file holding the token /metrics requires (`Authorization: Bearer <token>`, compared
    in constant time; 401 without it), e.g. mounted from a Secret. Unset: /metrics is open to
    whoever reaches its port."""

    @field_validator("namespaces", "external_schemes", "external_hosts", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [n.strip() for n in value.split(",") if n.strip()]
        return value

    @field_validator("gateway_keys")
    @classmethod
    def _gateway_keys(cls, value: str) -> str:
        gateway_auth.parse_keys(value)  # ValueError says what is wrong
        return value

    def gateway_key_set(self) -> frozenset[bytes]:
        """The gateway keys, raw: the set every admitted enclave must pin."""
        return frozenset(gateway_auth.parse_keys(self.gateway_keys))

    @field_validator("release_key_file", "metrics_token_file", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("metrics_token_file")
    @classmethod
    def _token_readable(cls, value: Path | None) -> Path | None:
        if value is not None and not _read_token(value):
            raise ValueError(f"{value}: not a readable file holding a token")
        return value

    def metrics_token(self) -> str | None:
        """The token /metrics requires (None: none)."""
        return _read_token(self.metrics_token_file) if self.metrics_token_file else None


def _read_token(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except (OSError, UnicodeDecodeError):
        return None
