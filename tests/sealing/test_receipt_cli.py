"""`teeroute verify receipt --proof FILE`, as a third party meets it: a proof bundle the
gateway stored, checked offline; every forgery refused with the failed check named."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from teeroute import cli

from .test_receipt_mac import Enclave, batch, tracker_for


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(["verify", "receipt", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def stored(tmp_path: Path) -> tuple[Enclave, dict[str, Any], Path]:
    """A proof bundle as the ledger stores it (the third of a signed batch of four)."""
    enclave = Enclave(batch_size=4)
    tracker = tracker_for(enclave)
    proofs = dict(tracker.on_root(batch(enclave, tracker, 0, 4), enclave.signing_sha))
    path = tmp_path / "proof.json"
    path.write_text(proofs["req-2"])
    return enclave, json.loads(proofs["req-2"]), path


def test_a_stored_proof_verifies_against_the_attested_key(
    capsys: pytest.CaptureFixture[str], stored: tuple[Enclave, dict[str, Any], Path]
) -> None:
    enclave, _, path = stored
    code, out, err = run(capsys, "--proof", str(path), "--signing-key-sha256", enclave.signing_sha)
    assert (code, err) == (0, "")
    assert out.count("\n") == 1 and out.startswith("receipt: verified: request req-2")
    assert "200 in / 12 out tokens" in out and f"the attested key {enclave.signing_sha}" in out
    assert f"#2 of session {enclave.session_id.hex()}" in out and "#0..#3" in out


def test_without_the_attested_key_it_says_the_key_was_not_compared(
    capsys: pytest.CaptureFixture[str], stored: tuple[Enclave, dict[str, Any], Path]
) -> None:
    enclave, _, path = stored
    code, out, _ = run(capsys, "--proof", str(path))
    assert code == 0
    assert f"key {enclave.signing_sha} (NOT compared with an attestation)" in out


def _forged(bundle: dict[str, Any], name: str) -> dict[str, Any]:
    if name == "receipt":
        receipt = bundle["receipt"].replace('"output_tokens":12', '"output_tokens":120')
        return {**bundle, "receipt": receipt}
    if name == "root":
        root = json.loads(bundle["root"])
        root["count"] = 5
        return {**bundle, "root": json.dumps(root, sort_keys=True, separators=(",", ":"))}
    if name == "index":
        return {**bundle, "index": 1}
    return {**bundle, "path": list(reversed(bundle["path"]))}


@pytest.mark.parametrize(
    ("forgery", "check"),
    [("receipt", "proof.path"), ("root", "root.signature"), ("index", "proof.batch"),
     ("path", "proof.path")],
)  # fmt: skip
def test_a_forged_bundle_is_rejected_naming_the_check(
    capsys: pytest.CaptureFixture[str],
    stored: tuple[Enclave, dict[str, Any], Path],
    forgery: str,
    check: str,
) -> None:
    enclave, bundle, path = stored
    path.write_text(json.dumps(_forged(bundle, forgery)))
    code, out, err = run(capsys, "--proof", str(path), "--signing-key-sha256", enclave.signing_sha)
    assert (code, out) == (1, "")
    assert err.startswith(f"receipt: REJECTED ({check}:")


def test_a_root_signed_by_another_key_than_the_attested_one_is_rejected(
    capsys: pytest.CaptureFixture[str], stored: tuple[Enclave, dict[str, Any], Path]
) -> None:
    _, _, path = stored
    code, _, err = run(capsys, "--proof", str(path), "--signing-key-sha256", Enclave().signing_sha)
    assert code == 1 and "(root.key:" in err


def test_unreadable_or_malformed_input_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(capsys, "--proof", str(tmp_path / "missing.json"))
    assert code == 2 and "cannot read" in err
    (tmp_path / "big.json").write_bytes(b"{" * 100_000)
    code, _, err = run(capsys, "--proof", str(tmp_path / "big.json"))
    assert code == 1 and "(proof.format:" in err
    with pytest.raises(SystemExit) as exited:
        run(capsys, "--proof", str(tmp_path / "big.json"), "--signing-key-sha256", "xyz")
    assert exited.value.code == 2


def test_the_installed_command_verifies_a_bundle(
    stored: tuple[Enclave, dict[str, Any], Path],
) -> None:
    enclave, _, path = stored
    command = shutil.which("teeroute")
    assert command is not None
    done = subprocess.run(
        [command, "verify", "receipt", "--proof", str(path), "--signing-key-sha256",
         enclave.signing_sha],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("receipt: verified: request req-2")
