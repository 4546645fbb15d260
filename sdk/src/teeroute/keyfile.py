"""Ed25519 private keys kept in files (PKCS#8 PEM, unencrypted, e.g. mounted from a Secret):
the operator's release key and the gateway's key are both read and made here.

    load(path, where, made_by) -> Ed25519PrivateKey   KeyFileError says what is wrong
    create(path) -> bytes                             a new key file (mode 0600, never over an
                                                      existing file); the raw public key
    public_b64(public)                                the public key as others pin it

`where` names the setting and the file in every error (`made_by`: the command that writes a
good one); no message carries key material.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from teeroute.errors import TeerouteError

MAX_FILE_BYTES = 64 * 1024


class KeyFileError(TeerouteError):
    exit_code = 2


def load(path: Path, where: str, made_by: str) -> ed25519.Ed25519PrivateKey:
    """The Ed25519 private key in `path` (PKCS#8 PEM, unencrypted)."""
    key = _parse(_read(path, where), where, made_by)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise KeyFileError(f"{where}: not an Ed25519 private key")
    return key


def create(path: Path) -> bytes:
    """Write a new key to `path` (mode 0600; refuses to overwrite anything)."""
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path} exists: not overwriting it") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot create it ({_why(exc)})") from None
    with os.fdopen(fd, "wb") as file:
        file.write(pem)
    return key.public_key().public_bytes_raw()


def public_b64(public: bytes) -> str:
    return base64.b64encode(public).decode()


def _read(path: Path, where: str) -> bytes:
    try:
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise KeyFileError(f"{where}: no such file") from None
    except OSError as exc:
        raise KeyFileError(f"{where}: cannot read it ({_why(exc)})") from None
    if len(data) > MAX_FILE_BYTES:
        raise KeyFileError(f"{where}: larger than {MAX_FILE_BYTES} bytes, not a key file")
    return data


def _parse(data: bytes, where: str, made_by: str) -> object:
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:  # encrypted: it would need a password
        raise KeyFileError(f"{where}: the key is encrypted; an unencrypted one is needed") from None
    except (ValueError, UnsupportedAlgorithm):  # the library's message is not repeated
        raise KeyFileError(
            f"{where}: not a PEM private key (expected an Ed25519 key in PKCS#8 PEM, as "
            f"`{made_by}` writes)"
        ) from None


def _why(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__
