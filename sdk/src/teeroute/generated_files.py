"""`teeroute <thing> generate|check` for files generated from typed models (the CRDs, the
chart's values, schema and README): one command writes them, the other fails when the
committed ones differ from what the models give."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from teeroute.errors import TeerouteError


class StaleFiles(TeerouteError):
    exit_code = 1


@dataclass(frozen=True)
class Generated:
    command: str
    help: str
    what: str
    """What `generate` writes, for its help."""
    default_dir: Path
    files: Callable[[], dict[str, str]]
    """Relative path -> content."""

    def register(self, commands: Any) -> None:
        parser = commands.add_parser(self.command, help=self.help)
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        for name, handler, text in (
            ("generate", self._generate, f"write {self.what}"),
            ("check", self._check, "fail when the committed files differ from the generated"),
        ):
            sub = actions.add_parser(name, help=text)
            sub.add_argument(
                "--dir",
                type=Path,
                default=self.default_dir,
                help="where the files live (default: %(default)s)",
            )
            sub.set_defaults(handler=handler)

    def _generate(self, args: argparse.Namespace) -> int:
        for name, content in self.files().items():
            path = args.dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
            print(path)
        return 0

    def _check(self, args: argparse.Namespace) -> int:
        stale = [
            name
            for name, content in self.files().items()
            if not (args.dir / name).is_file() or (args.dir / name).read_text() != content
        ]
        if stale:
            raise StaleFiles(
                f"{', '.join(stale)} in {args.dir} are stale: run `teeroute {self.command} "
                "generate`"
            )
        return 0
