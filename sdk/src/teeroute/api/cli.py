"""`teeroute crds generate|check` — registered into the `teeroute` CLI."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from teeroute.api import crdgen
from teeroute.errors import TeerouteError


class StaleCrds(TeerouteError):
    exit_code = 1


def register(commands: Any) -> None:
    parser = commands.add_parser("crds", help="the CustomResourceDefinitions of the teeroute API")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, handler, text in (
        ("generate", _generate, "write the CRDs generated from the API models"),
        ("check", _check, "fail when the CRD files differ from what the models generate"),
    ):
        sub = actions.add_parser(name, help=text)
        sub.add_argument(
            "--dir",
            type=Path,
            default=Path("crds"),
            help="where the CRD files live (default: %(default)s)",
        )
        sub.set_defaults(handler=handler)


def _generate(args: argparse.Namespace) -> int:
    args.dir.mkdir(parents=True, exist_ok=True)
    for name, content in crdgen.rendered().items():
        (args.dir / name).write_text(content)
        print(args.dir / name)
    return 0


def _check(args: argparse.Namespace) -> int:
    stale = [
        name
        for name, content in crdgen.rendered().items()
        if not (args.dir / name).exists() or (args.dir / name).read_text() != content
    ]
    if stale:
        raise StaleCrds(f"{', '.join(stale)} in {args.dir} are stale: run `teeroute crds generate`")
    return 0
