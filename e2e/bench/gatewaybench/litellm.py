"""LiteLLM's proxy, the comparison: installed from PyPI into its own cached virtualenv
(`~/.cache/teeroute/bench/litellm-<version>/`, never the workspace) and configured for the
same upstream as our gateway.

How it is made comparable: one uvicorn worker (`--num_workers 1`, uvloop), auth on (a master
key, checked on every request), no database. `litellm[proxy]` leaves uvicorn on its pure-Python
HTTP parser (h11); httptools is added, the parser our gateway runs on, so the server layer is
the same and the difference is the gateways' own work. Without Postgres LiteLLM has no virtual keys,
no spend tracking and no budgets or rate limits per key, so it does less per request than our
gateway (auth + metering into a ledger + limits). That is its default mode and the one
measured here; the report says so.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import yaml

from gatewaybench.procs import BenchError

# The newest release whose `litellm[proxy]` resolved from PyPI when this was written:
# 1.108.8 to 1.110.x pin litellm-enterprise / litellm-proxy-extras / litellm-proxy builds
# that were not published. Bump it deliberately; the version lands in the results.
VERSION = "1.108.7"
CACHE = Path.home() / ".cache" / "teeroute" / "bench"
MASTER_KEY = "sk-bench-master-key"  # LiteLLM wants master keys to start with sk-
READY_PATH = "/health/readiness"  # no auth; 200 once the proxy serves
START_TIMEOUT_S = 180  # imports alone take ~10 s


def venv_dir(version: str = VERSION) -> Path:
    return CACHE / f"litellm-{version}"


def _uv() -> list[str]:
    found = os.environ.get("UV") or shutil.which("uv")  # `uv run` sets UV to itself
    return [found] if found else ["python3", "-m", "uv"]


def requirements(version: str = VERSION) -> list[str]:
    return [f"litellm[proxy]=={version}", f"httptools=={metadata.version('httptools')}"]


def install(version: str = VERSION) -> Path:
    """Create the virtualenv once; a marker file lists what it holds."""
    venv = venv_dir(version)
    marker = venv / ".teeroute-complete"
    wanted = "\n".join(requirements(version)) + "\n"
    if marker.exists() and marker.read_text() == wanted:
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    base = getattr(sys, "_base_executable", sys.executable)
    python = str(venv / "bin" / "python")
    steps = [
        [*_uv(), "venv", "--quiet", "--python", base, str(venv)],
        [*_uv(), "pip", "install", "--quiet", "--python", python, *requirements(version)],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BenchError(f"installing LiteLLM failed: {' '.join(step)}\n{done.stderr[-3000:]}")
    marker.write_text(wanted)
    return venv


def installed_version(venv: Path, distribution: str) -> str | None:
    """A distribution's version in the virtualenv, read from its dist-info folder name."""
    pattern = re.compile(rf"^{re.escape(distribution)}-([^-]+)\.dist-info$", re.IGNORECASE)
    for info in venv.glob("lib/python*/site-packages/*.dist-info"):
        if match := pattern.match(info.name):
            return match.group(1)
    return None


def config(upstream: str) -> str:
    """The proxy's config.yaml: one model, the simulator as an OpenAI-compatible upstream."""
    document = {
        "model_list": [
            {
                "model_name": "sim-model",
                "litellm_params": {
                    "model": "openai/sim-model",
                    "api_base": f"{upstream}/v1",
                    "api_key": "sk-dummy-upstream",
                },
            }
        ],
        "general_settings": {"master_key": MASTER_KEY},
        "litellm_settings": {"set_verbose": False, "request_timeout": 600},
    }
    return yaml.safe_dump(document, sort_keys=False)


def argv(venv: Path, config_file: Path, port: int) -> list[str]:
    return [
        str(venv / "bin" / "litellm"),
        "--config",
        str(config_file),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]


def environment() -> dict[str, str]:
    """No database (DATABASE_URL removed), quiet logs, the bundled model price map (no
    fetch from GitHub at start)."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "VIRTUAL_ENV"}}
    env.update(LITELLM_LOG="ERROR", LITELLM_LOCAL_MODEL_COST_MAP="True")
    return env
