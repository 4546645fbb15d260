"""A gateway key for tests: what agents started by tests pin, and how a test speaks to an agent
as the gateway does (`teeroute-gateway-auth`, docs/sealed-mode.md section 8).

The key is fixed (derived from a constant), so agents and gateways started by different
fixtures agree on it; it authorizes nothing outside tests.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from collections.abc import Generator
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from teeroute.sealing import gateway_auth

PRIVATE = ed25519.Ed25519PrivateKey.from_private_bytes(
    hashlib.sha256(b"teeroute tests: the gateway key").digest()
)
PUBLIC = PRIVATE.public_key().public_bytes_raw()
PUBLIC_B64 = base64.b64encode(PUBLIC).decode()
PINNED = {"TEEROUTE_AGENT_GATEWAY_KEYS": PUBLIC_B64}
"""An agent's environment pinning this key."""


def write_pem(path: Path, key: ed25519.Ed25519PrivateKey = PRIVATE) -> Path:
    """The key as a gateway's `gatewayKeyFile` (PKCS#8 PEM)."""
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def hpke_key_id(agent: str) -> str:
    """The agent's HPKE key id, from its evidence (what the gateway takes from a lease)."""
    nonce = base64.b64encode(os.urandom(32)).decode()
    document = httpx.post(f"{agent}/v1/attestation", json={"nonce": nonce}, timeout=10).json()
    return hashlib.sha256(base64.b64decode(document["enclave_keys"]["hpke"])).hexdigest()


def header(
    method: str,
    path: str,
    body: bytes,
    key_id: str,
    key: ed25519.Ed25519PrivateKey = PRIVATE,
    now_ms: int | None = None,
) -> dict[str, str]:
    """The gateway's authorization of this request to the enclave with `key_id`."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = gateway_auth.sign(key, method, path, body, key_id, now_ms)
    return {gateway_auth.HEADER: value}


class Signed(httpx.Auth):
    """httpx auth signing each request as the gateway would, for one enclave."""

    requires_request_body = True

    def __init__(self, key_id: str, key: ed25519.Ed25519PrivateKey = PRIVATE) -> None:
        self.key_id, self.key = key_id, key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        path = request.url.raw_path.decode()
        request.headers.update(header(request.method, path, request.content, self.key_id, self.key))
        yield request


def signed_for(agent: str) -> Signed:
    return Signed(hpke_key_id(agent))
