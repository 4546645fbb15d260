"""Operator settings from the environment, and the release key file one of them names."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import KeySerializationEncryption
from pydantic import ValidationError

from teeroute_operator import release_key
from teeroute_operator.settings import OperatorSettings


def test_defaults_are_cluster_wide_standalone() -> None:
    settings = OperatorSettings()
    assert (settings.namespaces, settings.peering, settings.resync_seconds) == ([], "", 300.0)


def test_namespaces_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEEROUTE_OPERATOR_NAMESPACES", "miners, staging,,")
    monkeypatch.setenv("TEEROUTE_OPERATOR_PEERING", "teeroute")
    settings = OperatorSettings()
    assert settings.namespaces == ["miners", "staging"]
    assert settings.peering == "teeroute"


def test_nonsense_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEEROUTE_OPERATOR_RESYNC_SECONDS", "-1")
    with pytest.raises(ValidationError, match="resync_seconds"):
        OperatorSettings()


def test_no_release_key_by_default_and_empty_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    assert OperatorSettings().release_key_file is None
    monkeypatch.setenv("TEEROUTE_OPERATOR_RELEASE_KEY_FILE", "")
    assert OperatorSettings().release_key_file is None
    monkeypatch.setenv("TEEROUTE_OPERATOR_RELEASE_KEY_FILE", "/etc/teeroute/release/key.pem")
    assert OperatorSettings().release_key_file == Path("/etc/teeroute/release/key.pem")


def pem(key: PrivateKeyTypes, encryption: KeySerializationEncryption | None = None) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        encryption or serialization.NoEncryption(),
    )


def test_a_release_key_file_loads_as_a_signer(tmp_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    path = tmp_path / "release.pem"
    path.write_bytes(pem(key))
    signer = release_key.load(path)
    assert signer.public == key.public_key().public_bytes_raw()
    key.public_key().verify(signer.sign(b"message"), b"message")


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "no such file"),
        (b"", "not a PEM private key"),
        (b"-----BEGIN PRIVATE KEY-----\nnonsense\n-----END PRIVATE KEY-----\n", "not a PEM"),
        (pem(ec.generate_private_key(ec.SECP256R1())), "not an Ed25519 private key"),
        (pem(x25519.X25519PrivateKey.generate()), "not an Ed25519 private key"),
        (
            pem(ed25519.Ed25519PrivateKey.generate(), serialization.BestAvailableEncryption(b"pw")),
            "the key is encrypted",
        ),
        (
            ed25519.Ed25519PrivateKey.generate()
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            "not a PEM private key",
        ),
    ],
    ids=["missing", "empty", "garbled", "ec", "x25519", "encrypted", "public-key"],
)
def test_release_key_errors_name_the_setting_and_the_file_but_no_key(
    tmp_path: Path, content: bytes | None, says: str
) -> None:
    path = tmp_path / "release.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(release_key.ReleaseKeyError) as raised:
        release_key.load(path)
    message = str(raised.value)
    assert message.startswith(f"TEEROUTE_OPERATOR_RELEASE_KEY_FILE={path}: ")
    assert says in message
    for line in (content or b"").decode().splitlines():
        if not line.startswith("-----"):
            assert line not in message


def test_a_directory_is_not_a_release_key(tmp_path: Path) -> None:
    with pytest.raises(release_key.ReleaseKeyError, match="cannot read it"):
        release_key.load(tmp_path)


def test_the_operator_refuses_to_start_with_a_bad_release_key(tmp_path: Path) -> None:
    path = tmp_path / "release.pem"
    path.write_bytes(pem(ec.generate_private_key(ec.SECP256R1())))
    env = {**os.environ, "TEEROUTE_OPERATOR_RELEASE_KEY_FILE": str(path)}
    done = subprocess.run(
        [sys.executable, "-m", "teeroute_operator"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"teeroute_operator: TEEROUTE_OPERATOR_RELEASE_KEY_FILE={path}: not an Ed25519 private key"
    )
