"""Command lines of the engine simulator.

    teeroute engine-sim --port P [--ttft-ms N] [--tokens-per-s N] [--fail-rate F]
                        [--role-first] [--pad-empty-ms N] [--load-ttft-ms N]
                        [--api-key-env NAME] …
    python -m teeroute_engine_sim --model NAME --host 127.0.0.1 --port 8000 …

Both take the same flags; scripts rely on their names. The second is the engine container's
argv, vLLM-style (what the operator passes to vLLM), so it also takes vLLM's
`--served-model-name` and ignores, with a warning, vLLM flags it does not simulate.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from teeroute_engine_sim.auth import api_key
from teeroute_engine_sim.errors import SettingsInvalid
from teeroute_engine_sim.settings import EngineSettings

HELP = "a deterministic OpenAI-compatible engine (in place of vLLM) for tests and benchmarks"

# flag -> (settings field, type, help); default None: not given, the environment decides.
_FLAGS: dict[str, tuple[str, type, str]] = {
    "--host": ("host", str, "address to listen on (default 127.0.0.1)"),
    "--port": ("port", int, "port to listen on (default 8000)"),
    "--ttft-ms": ("ttft_ms", float, "time to first token, ms (env TEEROUTE_ENGINE_TTFT_MS)"),
    "--tokens-per-s": (
        "tokens_per_s",
        float,
        "pace after the first token; <= 0: unpaced (env TEEROUTE_ENGINE_TOKENS_PER_S)",
    ),
    "--pad-empty-ms": (
        "pad_empty_ms",
        float,
        "until the first token, an empty delta every N ms (env TEEROUTE_ENGINE_PAD_EMPTY_MS)",
    ),
    "--load-ttft-ms": (
        "load_ttft_ms",
        float,
        "extra ms of TTFT per other request in flight (env TEEROUTE_ENGINE_LOAD_TTFT_MS)",
    ),
    "--fail-rate": (
        "fail_rate",
        float,
        "fraction of completion requests answered 500 (env TEEROUTE_ENGINE_FAIL_RATE)",
    ),
    "--seed": ("seed", int, "mixed into every answer and failure decision (default 0)"),
    "--workers": ("workers", int, "server processes (default 1)"),
    "--api-key-env": (
        "api_key_env",
        str,
        "require `Authorization: Bearer <value of this variable>` on /v1/ (a closed API)",
    ),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        dest="models",
        action="append",
        metavar="NAME",
        help="a model name to serve; repeatable (default sim-model)",
    )
    parser.add_argument(
        "--served-model-name",
        dest="served",
        nargs="+",
        metavar="NAME",
        help="as vLLM: the names the API shows instead of --model",
    )
    for flag, (field, kind, text) in _FLAGS.items():
        parser.add_argument(flag, dest=field, type=kind, help=text)
    parser.add_argument(
        "--role-first",
        dest="role_first",
        action="store_const",
        const=True,
        help="send a chat stream's role delta at once, before the TTFT, as vLLM does",
    )


def settings_from(args: argparse.Namespace) -> EngineSettings:
    fields = [field for field, _, _ in _FLAGS.values()] + ["role_first"]
    given: dict[str, Any] = {
        field: getattr(args, field) for field in fields if getattr(args, field) is not None
    }
    models = args.served or args.models
    if models:
        given["models"] = tuple(models)
    try:
        settings = EngineSettings(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        raise SettingsInvalid(f"invalid engine-sim settings: {problems}") from None
    api_key(settings)  # a named key variable must hold a key before anything is served
    return settings


def register(commands: Any) -> None:
    parser = commands.add_parser("engine-sim", help=HELP, description=HELP)
    add_arguments(parser)
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from teeroute_engine_sim.server import serve  # uvicorn loads only for this command

    serve(settings_from(args))
    return 0


def engine_parser() -> argparse.ArgumentParser:
    """The engine container's parser: no abbreviations, so a vLLM flag is never mistaken
    for a prefix of one of ours."""
    parser = argparse.ArgumentParser(
        prog="python -m teeroute_engine_sim", description=HELP, allow_abbrev=False
    )
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args, ignored = engine_parser().parse_known_args(argv)
    if ignored:
        unknown = " ".join(ignored)
        print(f"engine-sim: ignoring flags it does not simulate: {unknown}", file=sys.stderr)
    try:
        return _run(args)
    except SettingsInvalid as exc:
        print(f"engine-sim: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
