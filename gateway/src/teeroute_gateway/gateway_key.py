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

import base64
import os
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from teeroute.errors import TeerouteError

SETTING = "gatewayKeyFile"
MAX_FILE_BYTES = 64 * 1024


class GatewayKeyError(TeerouteError):
    exit_code = 2


def load(path: Path) -> ed25519.Ed25519PrivateKey:
    """The Ed25519 private key in `path` (PKCS#8 PEM, unencrypted)."""
    where = f"{SETTING} {path}"
    try:
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise GatewayKeyError(f"{where}: no such file") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise GatewayKeyError(f"{where}: cannot read it ({reason})") from None
    if len(data) > MAX_FILE_BYTES:
        raise GatewayKeyError(f"{where}: larger than {MAX_FILE_BYTES} bytes, not a key file")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:  # encrypted: it would need a password
        raise GatewayKeyError(
            f"{where}: the key is encrypted; an unencrypted one is needed"
        ) from None
    except (ValueError, UnsupportedAlgorithm):  # the library's message is not repeated
        raise GatewayKeyError(
            f"{where}: not a PEM private key (expected an Ed25519 key in PKCS#8 PEM, as "
            "`teeroute gateway gateway-key --out FILE` writes)"
        ) from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise GatewayKeyError(f"{where}: not an Ed25519 private key")
    return key


def create(path: Path) -> bytes:
    """Write a new gateway key to `path` (mode 0600; refuses to overwrite anything)."""
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise GatewayKeyError(f"{path} exists: not overwriting it") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise GatewayKeyError(f"{path}: cannot create it ({reason})") from None
    with os.fdopen(fd, "wb") as file:
        file.write(pem)
    return key.public_key().public_bytes_raw()


def public_b64(public: bytes) -> str:
    return base64.b64encode(public).decode()
