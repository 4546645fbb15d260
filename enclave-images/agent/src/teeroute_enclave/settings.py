"""Agent settings from the environment (the operator's Deployment sets them)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
