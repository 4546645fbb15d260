"""The miner-vllm entrypoint: the operator's engine arguments become `vllm serve` (no GPU)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from teeroute_miner.argv import ArgumentError, vllm_command

PY = "/usr/bin/python3.11"
SERVE = [PY, "-m", "vllm.entrypoints.cli.main", "serve"]


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (  # exactly what teeroute_operator.builders gives the engine container
            ["--model", "org/m", "--host", "127.0.0.1", "--port", "8000"],
            {},
            ["org/m", "--served-model-name", "org/m", "--host", "127.0.0.1", "--port", "8000"],
        ),
        (  # defaults: loopback, vLLM's port
            ["--model", "m"],
            {},
            ["m", "--served-model-name", "m", "--host", "127.0.0.1", "--port", "8000"],
        ),
        (  # unknown flags go to vLLM as given, then TEEROUTE_ENGINE_ARGS
            ["--model", "m", "--max-model-len", "8192"],
            {"TEEROUTE_ENGINE_ARGS": "--gpu-memory-utilization 0.9 --dtype 'bfloat16'"},
            [
                "m",
                "--served-model-name",
                "m",
                "--host",
                "127.0.0.1",
                "--port",
                "8000",
                "--max-model-len",
                "8192",
                "--gpu-memory-utilization",
                "0.9",
                "--dtype",
                "bfloat16",
            ],
        ),
    ],
)
def test_engine_arguments_become_vllm_serve(
    args: list[str], env: dict[str, str], expected: list[str], tmp_path: Path
) -> None:
    assert vllm_command(args, env, PY, tmp_path).argv == SERVE + expected


@pytest.mark.parametrize(
    ("args", "env", "error"),
    [
        (["--host", "127.0.0.1"], {}, "--model"),
        (["--model", "m", "--port", "http"], {}, "invalid int value"),
        (["--model", "m", "--port", "70000"], {}, "not a TCP port"),
        (["--model", "m"], {"TEEROUTE_ENGINE_ARGS": "--dtype 'bf16"}, "TEEROUTE_ENGINE_ARGS"),
    ],
)
def test_bad_engine_arguments_are_a_clear_error(
    args: list[str], env: dict[str, str], error: str, tmp_path: Path
) -> None:
    with pytest.raises(ArgumentError, match=error):
        vllm_command(args, env, PY, tmp_path)


def test_caches_go_to_writable_places_unless_the_pod_says_otherwise(tmp_path: Path) -> None:
    env = vllm_command(["--model", "m"], {"TRITON_CACHE_DIR": "/cache/t"}, PY, tmp_path).env
    assert env["TRITON_CACHE_DIR"] == "/cache/t"
    assert env["VLLM_CACHE_ROOT"].startswith("/tmp/")
    assert env["VLLM_NO_USAGE_STATS"] == "1"


def test_a_released_hugging_face_token_reaches_vllm(tmp_path: Path) -> None:
    assert "HF_TOKEN" not in vllm_command(["--model", "m"], {}, PY, tmp_path).env
    (tmp_path / "hf-token").write_text("hf_abc\n")
    assert vllm_command(["--model", "m"], {}, PY, tmp_path).env["HF_TOKEN"] == "hf_abc"  # noqa: S105


def test_dry_run_prints_the_command_and_bad_arguments_exit_2() -> None:
    run = [sys.executable, "-m", "teeroute_miner", "--dry-run"]
    done = subprocess.run([*run, "--model", "m"], capture_output=True, text=True, check=False)
    assert done.returncode == 0
    assert "-m vllm.entrypoints.cli.main serve m --served-model-name m" in done.stdout
    bad = subprocess.run([*run, "--port", "1"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2
    assert "cannot start vLLM" in bad.stderr
