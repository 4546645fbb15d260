"""The `teeroute` command line.

Subcommands come from the installed components: each registers through the
`teeroute.cli` entry-point group with a function that adds its subparser and sets
`handler` (a function of the parsed arguments returning an exit code). The shared library
thereby never imports the components that extend its CLI.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

from teeroute import __version__
from teeroute.errors import TeerouteError

ENTRY_POINT_GROUP = "teeroute.cli"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="teeroute",
        description="Confidential AI inference routing on Kubernetes.",
    )
    parser.add_argument("--version", action="version", version=f"teeroute {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for entry in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        entry.load()(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except TeerouteError as exc:
        print(f"teeroute: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
