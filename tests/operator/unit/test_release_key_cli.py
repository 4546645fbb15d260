"""`teeroute operator release-key`: make the operator's release key, show its public half."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from teeroute import cli
from teeroute_operator import release_key


def test_a_new_key_is_private_to_its_owner_and_its_public_half_is_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "release.pem"
    assert cli.main(["operator", "release-key", "--out", str(path)]) == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")
    out = capsys.readouterr().out.strip()
    printed = dict(line.partition("=")[::2] for line in out.splitlines())
    assert set(printed) == {"TEEROUTE_AGENT_RELEASE_KEY", "TEEROUTE_GATEWAY_OPERATOR_KEY"}
    for value in printed.values():
        assert base64.b64decode(value, validate=True) == release_key.load(path).public

    assert cli.main(["operator", "release-key", "--show", str(path)]) == 0
    assert capsys.readouterr().out.strip() == out


def test_an_existing_file_is_never_overwritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "release.pem"
    path.write_text("precious")
    assert cli.main(["operator", "release-key", "--out", str(path)]) == 2
    assert path.read_text() == "precious"
    assert f"{path} exists: not overwriting it" in capsys.readouterr().err


def test_showing_a_file_that_is_not_a_release_key_fails_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "missing.pem"
    assert cli.main(["operator", "release-key", "--show", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"TEEROUTE_OPERATOR_RELEASE_KEY_FILE={path}: no such file" in err


def test_it_needs_one_of_out_or_show() -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["operator", "release-key"])
    assert done.value.code == 2
