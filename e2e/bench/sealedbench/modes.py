"""The three ways a request crosses the same gateway to the same enclave agent and engine, one
Route (public model) each, and the gateway's file config that serves all three. Pure.

    plain     Route `sealing: off`: gateway -> agent in clear -> engine (the baseline)
    gateway   Route `sealing: gateway`: the client sends a plain request, the gateway seals it
              to the enclave's attested key, opens the sealed answer and verifies the receipt
    client    Route `sealing: required`: the client seals in its session with the enclave;
              the gateway forwards the frame unopened, relays the chunks and checks the
              receipt's gateway tag
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import yaml

from teeroute.sealing.frames import MAGIC, WIRE_VERSION, FrameType
from teeroute.sealing.receipt_body import TIMINGS_META

UPSTREAM_MODEL = "sim-model"  # what the engine simulator serves
POOL = "sim"
ENDPOINT = "m0"
PROMPT = "Tell the benchmark a long story (342)."  # gatewaybench's prompt: 255 natural tokens
CHAT = "/v1/chat/completions"
MAX_ATTESTATION_AGE = "24h"  # the lease is verified once, at the start; runs take minutes


@dataclass(frozen=True)
class Mode:
    name: str
    model: str  # the Route's public model
    sealing: str  # the Route's spec.sealing
    client_sealed: bool
    label: str


MODES = (
    Mode("plain", "sim-plain", "off", False, "plain hop (sealing off)"),
    Mode("gateway", "sim-gateway", "gateway", False, "gateway-sealed"),
    Mode("client", "sim-client", "required", True, "client-sealed (passed through)"),
)
BY_NAME = {mode.name: mode for mode in MODES}
SEALED = tuple(mode.name for mode in MODES if mode.name != "plain")


def chat_request(model: str, stream: bool, max_tokens: int) -> dict[str, Any]:
    request: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
    }
    if stream:
        request |= {"stream": True, "stream_options": {"include_usage": True}}
    return request


def body(model: str, stream: bool, max_tokens: int) -> bytes:
    return json.dumps(chat_request(model, stream, max_tokens), separators=(",", ":")).encode()


def sealed_meta(model: str, stream: bool, max_tokens: int) -> dict[str, Any]:
    """What a sealed request leaves readable (docs/sealed-mode.md section 1), and that this
    client reads the agent's timings in receipts (as the SDK's `request_meta` says)."""
    return {
        "path": CHAT,
        "model": model,
        "stream": stream,
        "max_tokens": max_tokens,
        TIMINGS_META: True,
    }


RECEIPT_HEADER = (MAGIC + bytes([WIRE_VERSION, FrameType.RECEIPT])).decode("latin-1")
"""How a wire v2 RECEIPT frame begins (its length follows)."""


def expect(mode: Mode, stream: bool) -> str:
    """A substring every 200 answer must hold: a plain stream's end, a sealed answer's
    RECEIPT frame (its [DONE] is inside the ciphertext), a whole answer's usage."""
    if mode.client_sealed:
        return RECEIPT_HEADER
    return "[DONE]" if stream else '"usage"'


def gateway_config(lease: dict[str, Any], gateway_key_file: str = "") -> str:
    """One pool (the agent, with the lease an operator would write) and one Route per mode.
    The SQLite ledger and rate limits (far above the load) are on, as in gatewaybench; the
    gateway signs each request to the agent with `gateway_key_file` (absolute) when given."""
    settings = {"ledger": "sqlite:///ledger.db", "rateLimiter": "memory"}
    if gateway_key_file:
        settings["gatewayKeyFile"] = gateway_key_file
    docs: list[dict[str, Any]] = [
        {"apiVersion": "teeroute.dev/v1alpha1", "kind": "GatewayConfig", "spec": settings},
        {
            "apiVersion": "teeroute.dev/v1alpha1",
            "kind": "MinerPool",
            "metadata": {"name": POOL, "namespace": "default"},
            "spec": {
                "models": [{"name": UPSTREAM_MODEL, "contextLength": 8192}],
                "tee": {"type": "simulated"},
                "pricing": {"inputPerMillion": "0.10", "outputPerMillion": "0.20"},
                "endpoints": [{"name": ENDPOINT, "url": lease["url"]}],
            },
            "status": {"endpoints": [{**lease, "name": ENDPOINT}]},
        },
    ]
    for mode in MODES:
        spec: dict[str, Any] = {
            "model": mode.model,
            "backends": [{"pool": POOL}],
            "constraints": {
                "allowedTee": ["simulated"],
                "maxAttestationAge": MAX_ATTESTATION_AGE,
            },
            "sealing": mode.sealing,
            "rateLimits": {"requestsPerMinute": 100000000, "tokensPerMinute": 1000000000},
        }
        docs.append(
            {
                "apiVersion": "teeroute.dev/v1alpha1",
                "kind": "Route",
                "metadata": {"name": mode.name, "namespace": "default"},
                "spec": spec,
            }
        )
    return yaml.safe_dump_all(docs, sort_keys=False)
