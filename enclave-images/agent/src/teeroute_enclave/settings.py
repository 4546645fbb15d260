"""Agent settings from the environment (the operator's Deployment sets them)."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from teeroute.attestation.evidence import POOL_PATTERN
from teeroute.sealing import gateway_auth

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
    """How far a wire v2 HELLO's (or ONESHOT's) `created_at` may be from the enclave's clock,
    either way (seconds). Each HELLO is taken once: the agent remembers it that long after it
    was made, so a copy cannot open a second session with the same keys (requests within a
    session are taken once by the session's replay window)."""

    agent_secrets_dir: Path | None = None
    """Where released secrets other than `engine-api-key` are written, one file each (mode
    0600, the directory 0700), for the engine to read; a tmpfs in the enclave. Unset: they are
    only held in memory."""

    agent_release_key: bytes = b""
    """Base64 of the operator's release key (raw Ed25519 public key, 32 bytes): the only key
    whose signed secret releases this agent accepts. It is bound into the agent's evidence, so
    the operator sees which key the enclave pins. Unset: every release is refused."""

    agent_pool: Annotated[str, Field(pattern=f"{POOL_PATTERN}|^$")] = ""
    """The MinerPool this enclave serves, "<namespace>/<name>" (the operator sets it on the
    pods it runs; a remote miner sets it to the pool whose `endpoints` list it). It is bound
    into the agent's evidence, so a verifier sees which pool's enclave it challenged, and the
    agent accepts only secret releases signed for this pool: one pool's enclave cannot be
    passed off as another's, nor be given another pool's secrets. Unset: the evidence names
    no pool (the operator admits it to no pool) and every release is refused."""

    agent_gateway_keys: str = ""
    """Comma-separated standard base64 of the gateway's raw Ed25519 public keys (several
    during a rotation; the operator sets it on the pods it runs from its own
    TEEROUTE_OPERATOR_GATEWAY_KEYS). Inference is answered only to requests one of them
    signed for this enclave (`teeroute-gateway-auth`, docs/sealed-mode.md section 8). Unset:
    no inference is answered at all (fail closed), unless agent_allow_any_caller."""

    agent_gateway_auth_window_s: int = Field(default=60, ge=1, le=600)
    """How far a gateway authorization's time may be from the enclave's clock, either way
    (seconds); its nonce is remembered that long, so it is taken once."""

    agent_root_receipts: int = Field(default=64, ge=1, le=4096)
    """K: a gateway session's receipts are covered by a Merkle root signed with the attested
    key every this many receipts (the ROOT frame follows the K-th receipt; docs/sealed-mode.md,
    wire v2)."""

    agent_root_interval_s: float = Field(default=10.0, gt=0, le=3600)
    """S: ... or with the first receipt (or POST /v1/sessions/roots) after the oldest receipt
    not yet covered waited this long (seconds)."""

    agent_allow_any_caller: bool = False
    """DEVELOPMENT ONLY: answer inference to anyone who reaches the port, without a gateway
    authorization. Whoever reaches the pod is then served (bypassing the gateway's billing,
    and spending a relay's released upstream key); never set it on a miner serving a real
    gateway. The agent says so at start, and refuses to start with it while serving a pool
    (agent_pool): such an agent is admitted to no pool and given no secrets, so a namespace
    editor who adds it to an operator's Deployment gets pods that do not start."""

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

    @model_validator(mode="after")
    def _development_serves_no_pool(self) -> AgentSettings:
        if self.agent_allow_any_caller and self.agent_pool:
            raise ValueError(
                "agent_allow_any_caller is for development agents serving no pool "
                "(unset agent_pool, or pin the gateway's keys instead)"
            )
        return self

    @field_validator("agent_gateway_keys")
    @classmethod
    def _gateway_keys(cls, value: str) -> str:
        gateway_auth.parse_keys(value)  # ValueError says what is wrong
        return value

    @property
    def gateway_keys(self) -> tuple[bytes, ...]:
        """The pinned gateway keys, raw."""
        return gateway_auth.parse_keys(self.agent_gateway_keys)

    @field_validator("agent_secrets_dir", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value
