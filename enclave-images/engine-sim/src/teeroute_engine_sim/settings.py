"""Engine simulator settings: flags first, then the environment (`TEEROUTE_ENGINE_…`, so a
pod's env can tune an engine whose argv the operator fixes), then these defaults."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL = "sim-model"


class EngineSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TEEROUTE_ENGINE_", use_attribute_docstrings=True, frozen=True
    )

    models: Annotated[tuple[str, ...], Field(min_length=1)] = (DEFAULT_MODEL,)
    """Model names served (`--model`, repeatable); requests without `model` get the first."""

    host: str = "127.0.0.1"
    """Address to listen on; loopback by default, as the engine beside the agent in a pod."""

    port: int = Field(default=8000, ge=0, le=65535)
    """Port to listen on (vLLM's default)."""

    ttft_ms: float = Field(default=0, ge=0)
    """Time to first token in milliseconds (TEEROUTE_ENGINE_TTFT_MS); 0: none."""

    tokens_per_s: float = 0
    """Pace of the tokens after the first (TEEROUTE_ENGINE_TOKENS_PER_S); 0 or less: unpaced."""

    role_first: bool = False
    """Send a chat stream's role-only delta at once, before the time to first token, as vLLM
    does (TEEROUTE_ENGINE_ROLE_FIRST); off: it leaves with the first token."""

    pad_empty_ms: float = Field(default=0, ge=0)
    """Until the first token, send an empty delta every this many ms (a miner padding its
    stream to look busy early; TEEROUTE_ENGINE_PAD_EMPTY_MS); 0: none."""

    load_ttft_ms: float = Field(default=0, ge=0)
    """Extra time to first token per other request in flight (an engine fast only while few
    requests run; TEEROUTE_ENGINE_LOAD_TTFT_MS); 0: none."""

    fail_rate: float = Field(default=0, ge=0, le=1)
    """Fraction of completion requests answered with HTTP 500 (TEEROUTE_ENGINE_FAIL_RATE)."""

    seed: int = 0
    """Mixed into every generated answer and into the failure decisions."""

    workers: int = Field(default=1, ge=1)
    """Server processes sharing the port; each counts its own requests for --fail-rate."""

    api_key_env: Annotated[str, Field(pattern=r"^([A-Za-z_][A-Za-z0-9_]*)?$")] = ""
    """The environment variable holding the API key every /v1/ request must bear
    (`Authorization: Bearer <key>`), as a closed-model provider requires; empty: none. The
    name travels in the settings, never the key."""
