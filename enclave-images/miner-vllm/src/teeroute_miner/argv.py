"""teeroute's engine arguments and settings -> the `vllm serve` command line (pure).

    python -m teeroute_miner --model NAME [--host H] [--port P] [vLLM flags ...]

`--model` becomes vLLM's positional model and its `--served-model-name` (clients ask for the
name the pool lists). Flags we do not know go to vLLM unchanged, after the ones we set, so a
pool can tune vLLM. From the environment: TEEROUTE_ENGINE_ARGS (more vLLM flags, shell-style
quoting), and a Hugging Face token released by the operator into the secrets folder
(`hf-token`) becomes HF_TOKEN for vLLM only. Caches go to writable mounts: the root fs is
read-only.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

SECRETS_DIR = Path("/run/teeroute/secrets")
HF_TOKEN_FILE = "hf-token"  # noqa: S105 - a file name, not a secret
EXTRA_ARGS_ENV = "TEEROUTE_ENGINE_ARGS"
WRITABLE_CACHES = {
    # Every place vLLM, torch and triton write to by default lies under $HOME/.cache or /tmp.
    "XDG_CACHE_HOME": "/tmp/.cache",  # noqa: S108 - a path in the pod
    "VLLM_CACHE_ROOT": "/tmp/.cache/vllm",  # noqa: S108
    "TRITON_CACHE_DIR": "/tmp/.cache/triton",  # noqa: S108
    "TORCHINDUCTOR_CACHE_DIR": "/tmp/.cache/inductor",  # noqa: S108
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}


class ArgumentError(ValueError):
    """The engine arguments cannot become a vLLM command (a message fit for the pod's log)."""


@dataclass(frozen=True)
class Command:
    argv: list[str]
    env: dict[str, str]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ArgumentError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="teeroute_miner", add_help=False, allow_abbrev=False)
    parser.add_argument("--model", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    return parser


def vllm_command(
    args: Sequence[str], env: Mapping[str, str], python: str, secrets: Path = SECRETS_DIR
) -> Command:
    known, rest = _parser().parse_known_args(list(args))
    if not 0 < known.port < 65536:
        raise ArgumentError(f"--port {known.port}: not a TCP port")
    try:
        extra = shlex.split(env.get(EXTRA_ARGS_ENV, ""))
    except ValueError as exc:
        raise ArgumentError(f"{EXTRA_ARGS_ENV}: {exc}") from exc
    argv = [
        python,
        "-m",
        "vllm.entrypoints.cli.main",
        "serve",
        known.model,
        "--served-model-name",
        known.model,
        "--host",
        known.host,
        "--port",
        str(known.port),
        *rest,
        *extra,
    ]
    return Command(argv, _environment(env, secrets))


def _environment(env: Mapping[str, str], secrets: Path) -> dict[str, str]:
    merged = {**WRITABLE_CACHES, **env}
    token = secrets / HF_TOKEN_FILE
    if "HF_TOKEN" not in merged and token.is_file():
        merged["HF_TOKEN"] = token.read_text().strip()
    return merged
