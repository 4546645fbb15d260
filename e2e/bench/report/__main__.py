"""`python -m report [--check] [--root DIR]` (with e2e/bench on the import path; `make results`
does that): regenerate RESULTS.md, its plots and the README's results block, or check them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from report import generate, readme, sources

ROOT = Path(__file__).resolve().parents[3]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m report", description=(__doc__ or "")[:80])
    parser.add_argument(
        "--root", type=Path, default=ROOT, help="repository root (default: this one)"
    )
    parser.add_argument("--check", action="store_true", help="fail if a generated file is stale")
    args = parser.parse_args(argv)
    try:
        outputs = generate.build(args.root)
    except (sources.ResultFileError, readme.ReadmeBlockError, OSError) as exc:
        print(f"results: {exc}", file=sys.stderr)
        return 2
    if args.check:
        stale = generate.stale(args.root, outputs)
        for path in stale:
            print(f"results: {path} is stale: run `make results`", file=sys.stderr)
        return 1 if stale else 0
    for path in generate.write(args.root, outputs):
        print(f"{'wrote' if path in outputs else 'removed'} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
