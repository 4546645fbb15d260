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

from pathlib import Path

from teeroute import keyfile
from teeroute.keyfile import KeyFileError, public_b64
from teeroute.sealing.secrets import Signer

SETTING = "TEEROUTE_OPERATOR_RELEASE_KEY_FILE"
ReleaseKeyError = KeyFileError
__all__ = ["SETTING", "ReleaseKeyError", "create", "load", "public_b64"]


def load(path: Path) -> Signer:
    """The signer for the Ed25519 private key in `path` (PKCS#8 PEM, unencrypted)."""
    made_by = "teeroute operator release-key --out FILE"
    return Signer.from_private(keyfile.load(path, f"{SETTING}={path}", made_by))


def create(path: Path) -> bytes:
    """Write a new release key to `path` (mode 0600; refuses to overwrite anything)."""
    return keyfile.create(path)
