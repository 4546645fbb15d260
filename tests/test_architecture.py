"""The workspace's shape: one import direction, no package shadowing the standard library."""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = [
    "teeroute",
    "teeroute_operator",
    "teeroute_gateway",
    "teeroute_enclave",
    "teeroute_engine_sim",
    "teeroute_sandbox",
    "teeroute_images",
    "teeroute_miner",
]


def lint_imports(config_dir: Path) -> subprocess.CompletedProcess[str]:
    executable = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    return subprocess.run(
        [executable, "--no-cache"], cwd=config_dir, capture_output=True, text=True, timeout=120
    )


def test_import_contracts_hold() -> None:
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 2 kept, 0 broken" in done.stdout


def test_import_contracts_catch_a_component_importing_another(tmp_path: Path) -> None:
    """The real contracts, run over stand-in packages where the operator imports the
    gateway, must fail and name the import."""
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "teeroute_operator" / "bad.py").write_text("import teeroute_gateway\n")
    config = (ROOT / "pyproject.toml").read_text()
    section = re.search(r"^\[tool\.importlinter\]$.*", config, re.MULTILINE | re.DOTALL)
    assert section is not None
    (tmp_path / "pyproject.toml").write_text(section.group(0))
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.path.insert(0, '.');"
            "from importlinter.cli import lint_imports_command;"
            "lint_imports_command()",
            "--no-cache",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0, done.stdout
    assert "teeroute_operator.bad -> teeroute_gateway" in done.stdout


@pytest.mark.parametrize("package", PACKAGES)
def test_packages_import_and_shadow_nothing_in_the_standard_library(package: str) -> None:
    assert package not in sys.stdlib_module_names
    module = importlib.import_module(package)
    assert module.__doc__, f"{package} needs a docstring saying what it is for"


def test_operator_folder_does_not_shadow_the_stdlib_operator_module() -> None:
    import operator

    assert Path(operator.__file__).parent == Path(importlib.import_module("os").__file__).parent
    assert not (ROOT / "operator" / "__init__.py").exists()
