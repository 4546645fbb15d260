"""Agent settings from the environment (the operator's Deployment sets them)."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

RELEASE_KEY_SIZE = 32


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TEEROUTE_", use_attribute_docstrings=True, frozen=True
    )

    tee: str = "simulated"
    """sev-snp, tdx (evidence from configfs-tsm) or simulated (from a chip key on disk)."""

    agent_port: int = Field(default=8443, ge=1, le=65535)
    """Where the agent listens, on every address of the pod."""

    engine_url: Annotated[str, Field(pattern=r"^(https?://\S+)?$")] = ""
    """The engine beside the agent (loopback); empty: health does not depend on one."""

    engine_health: bool = True
    """Whether /healthz asks the engine's `/health`. A relay's engine is an upstream API
    (without /health, and answering only once its key was released), so relays turn it off."""

    agent_require_sealed: bool = False
    """Refuse plain (unsealed) inference requests with 403 `sealing_required`; by default the
    gateway's Route decides whether a model may be served in clear."""

    agent_replay_window_s: int = Field(default=300, ge=10, le=3600)
    """How far `meta.sealed_at` of a sealed request may be from the enclave's clock, either
    way (seconds). Each request is taken once; the agent remembers it that long after it was
    sealed (docs/sealed-mode.md, section 1)."""

    agent_secrets_dir: Path | None = None
    """Where released secrets other than `engine-api-key` are written, one file each (mode
    0600, the directory 0700), for the engine to read; a tmpfs in the enclave. Unset: they are
    only held in memory."""

    agent_release_key: bytes = b""
    """Base64 of the operator's release key (raw Ed25519 public key, 32 bytes): the only key
    whose signed secret releases this agent accepts. It is bound into the agent's evidence, so
    the operator sees which key the enclave pins. Unset: every release is refused."""

    simulated_dir: Path = Path("/etc/teeroute/simulated-tee")
    """Simulated TEE only: the directory with `<node>.key` and `<node>.crt`."""

    simulated_measurement: str = ""
    """Simulated TEE only: 96 hex characters to report instead of the code measurement."""

    simulated_override_file: Path | None = Path("/tmp/teeroute-simulated-measurement")  # noqa: S108
    """Simulated TEE only: if this file holds 96 hex digits, report them as the measurement
    (fault injection for tests and demos; a real TEE's measurement cannot change at run time).
    Empty disables it."""

    node_name: str = Field(
        default="", validation_alias=AliasChoices("NODE_NAME", "TEEROUTE_NODE_NAME")
    )
    """The node the pod runs on (downward API), naming its simulated chip."""

    @field_validator("agent_release_key", mode="before")
    @classmethod
    def _release_key(cls, value: object) -> bytes:
        if value in ("", b"", None):
            return b""
        try:
            raw = base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("expected base64 of a raw Ed25519 public key") from None
        if len(raw) != RELEASE_KEY_SIZE:
            raise ValueError(f"expected {RELEASE_KEY_SIZE} bytes (a raw Ed25519 public key)")
        return raw

    @field_validator("agent_secrets_dir", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value
