"""`teeroute crds|chart generate` writes what `check` then accepts; a stale or missing file
makes `check` fail naming it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def teeroute(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "teeroute.cli", *args], capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize(
    ("command", "a_file"), [("crds", "teeroute.dev_routes.yaml"), ("chart", "values.schema.json")]
)
def test_check_fails_on_a_stale_file_until_generate(
    tmp_path: Path, command: str, a_file: str
) -> None:
    missing = teeroute(command, "check", "--dir", str(tmp_path))
    assert missing.returncode == 1 and a_file in missing.stderr

    assert teeroute(command, "generate", "--dir", str(tmp_path)).returncode == 0
    assert teeroute(command, "check", "--dir", str(tmp_path)).returncode == 0

    (tmp_path / a_file).write_text((tmp_path / a_file).read_text() + "\n# edited by hand\n")
    stale = teeroute(command, "check", "--dir", str(tmp_path))
    assert stale.returncode == 1
    assert f"run `teeroute {command} generate`" in stale.stderr
