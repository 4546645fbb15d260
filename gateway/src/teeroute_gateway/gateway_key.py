"""The gateway key: the Ed25519 key that authorizes each request the gateway sends to an enclave
agent (`teeroute-gateway-auth`, docs/sealed-mode.md section 8).

Agents pin its public half (TEEROUTE_AGENT_GATEWAY_KEYS; the operator sets it on the pods it
runs from TEEROUTE_OPERATOR_GATEWAY_KEYS) and answer inference to nobody else, so reaching an
agent's port is not enough to be served. The private half stays with the gateway, in a file
(`gatewayKeyFile`: PKCS#8 PEM, unencrypted, e.g. mounted from a Secret).

    load(path) -> Ed25519PrivateKey   GatewayKeyError says what is wrong
    create(path) -> bytes             a new key file (mode 0600, never over an existing
                                      file); returns the raw public key
    public_b64(public)                as agents and the operator take it

Errors name the setting and the file, never key material.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519

from teeroute import keyfile
from teeroute.keyfile import KeyFileError, public_b64

SETTING = "gatewayKeyFile"
GatewayKeyError = KeyFileError
__all__ = ["SETTING", "GatewayKeyError", "create", "load", "public_b64"]


def load(path: Path) -> ed25519.Ed25519PrivateKey:
    """The Ed25519 private key in `path` (PKCS#8 PEM, unencrypted)."""
    return keyfile.load(path, f"{SETTING} {path}", "teeroute gateway gateway-key --out FILE")


def create(path: Path) -> bytes:
    """Write a new gateway key to `path` (mode 0600; refuses to overwrite anything)."""
    return keyfile.create(path)
