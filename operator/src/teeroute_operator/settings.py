"""Operator settings, from environment variables prefixed TEEROUTE_OPERATOR_ (e.g.
TEEROUTE_OPERATOR_NAMESPACES=miners,staging)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


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

    resync_seconds: float = Field(default=30.0, gt=0)
    """How often every pool and route is reconciled even without a change, in seconds; a
    safety net under the watches, which repair drift within about a second."""

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

    @field_validator("namespaces", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [n.strip() for n in value.split(",") if n.strip()]
        return value

    @field_validator("release_key_file", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value
