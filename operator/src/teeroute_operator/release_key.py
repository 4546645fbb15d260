"""The operator's release key: the Ed25519 key that signs every secret release
(docs/sealed-mode.md, section 4).

Agents pin its public half (TEEROUTE_AGENT_RELEASE_KEY, set on the pods the operator runs;
remote miners set it themselves) and accept only releases it signed, so reaching an agent's port
is not enough to replace its secrets. The private half stays with the operator, in a file
(TEEROUTE_OPERATOR_RELEASE_KEY_FILE: PKCS#8 PEM, unencrypted, e.g. mounted from a Secret).

    load(path) -> Signer      the operator's signer; ReleaseKeyError says what is wrong
    create(path) -> bytes     a new key file (mode 0600, never over an existing file);
                              returns the raw public key
    public_b64(public)        the public key as agents take it (standard base64 of 32 bytes)

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
from teeroute.sealing.secrets import Signer

SETTING = "TEEROUTE_OPERATOR_RELEASE_KEY_FILE"
MAX_FILE_BYTES = 64 * 1024


class ReleaseKeyError(TeerouteError):
    exit_code = 2


def load(path: Path) -> Signer:
    """The signer for the Ed25519 private key in `path` (PKCS#8 PEM, unencrypted)."""
    where = f"{SETTING}={path}"
    try:
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ReleaseKeyError(f"{where}: no such file") from None
    except OSError as exc:
        raise ReleaseKeyError(
            f"{where}: cannot read it ({exc.strerror or type(exc).__name__})"
        ) from None
    if len(data) > MAX_FILE_BYTES:
        raise ReleaseKeyError(f"{where}: larger than {MAX_FILE_BYTES} bytes, not a key file")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:  # encrypted: it would need a password
        raise ReleaseKeyError(
            f"{where}: the key is encrypted; an unencrypted one is needed"
        ) from None
    except (ValueError, UnsupportedAlgorithm):  # the library's message is not repeated
        raise ReleaseKeyError(
            f"{where}: not a PEM private key (expected an Ed25519 key in PKCS#8 PEM, as "
            "`teeroute operator release-key --out FILE` writes)"
        ) from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ReleaseKeyError(f"{where}: not an Ed25519 private key")
    return Signer.from_private(key)


def create(path: Path) -> bytes:
    """Write a new release key to `path` (mode 0600; refuses to overwrite anything)."""
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ReleaseKeyError(f"{path} exists: not overwriting it") from None
    except OSError as exc:
        raise ReleaseKeyError(
            f"{path}: cannot create it ({exc.strerror or type(exc).__name__})"
        ) from None
    with os.fdopen(fd, "wb") as file:
        file.write(pem)
    return key.public_key().public_bytes_raw()


def public_b64(public: bytes) -> str:
    return base64.b64encode(public).decode()
