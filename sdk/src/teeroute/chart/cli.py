"""`teeroute chart generate|check` — registered into the `teeroute` CLI."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from teeroute.chart import generate
from teeroute.errors import TeerouteError


class StaleChart(TeerouteError):
    exit_code = 1


def register(commands: Any) -> None:
    parser = commands.add_parser("chart", help="the Helm chart's generated files")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, handler, text in (
        ("generate", _generate, "write values.yaml, values.schema.json, README.md, CRDs"),
        ("check", _check, "fail when the chart's generated files are stale"),
    ):
        sub = actions.add_parser(name, help=text)
        sub.add_argument(
            "--dir",
            type=Path,
            default=Path("charts/teeroute"),
            help="the chart's directory (default: %(default)s)",
        )
        sub.set_defaults(handler=handler)


def _generate(args: argparse.Namespace) -> int:
    for name, content in generate.files().items():
        path = args.dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        print(path)
    return 0


def _check(args: argparse.Namespace) -> int:
    stale = [
        name
        for name, content in generate.files().items()
        if not (args.dir / name).is_file() or (args.dir / name).read_text() != content
    ]
    if stale:
        raise StaleChart(
            f"{', '.join(stale)} in {args.dir} are stale: run `teeroute chart generate`"
        )
    return 0
