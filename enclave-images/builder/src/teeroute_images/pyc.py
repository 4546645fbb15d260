"""Precompiled bytecode, so a read-only root fs never makes Python recompile at each start.

`--invalidation-mode unchecked-hash`: the pyc carries the source's hash, not its mtime (which
the layer normalizes), and is used without checking; `-s/-p` record the path the file has in
the image, not the build directory's. Two compilations of the same tree were checked to be
bit-identical (tests/images/test_reproducible.py builds twice and compares digests).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from teeroute_images.errors import ImageBuildError

PYTHON_3_11_MAGIC = (3495).to_bytes(2, "little") + b"\r\n"


def compile_tree(tree: Path, path_in_image: str) -> None:
    """Compile every .py under `tree` (which the image has at `path_in_image`)."""
    if importlib.util.MAGIC_NUMBER != PYTHON_3_11_MAGIC:
        raise ImageBuildError(
            f"precompiling for the image's CPython 3.11 needs the builder to run on 3.11 "
            f"(this is {sys.version.split()[0]})"
        )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "compileall",
            "-q",
            "-q",
            "-j",
            "0",
            "--invalidation-mode",
            "unchecked-hash",
            "-s",
            str(tree),
            "-p",
            path_in_image,
            str(tree),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    # compileall exits 1 when some file does not compile (vendored Python 2 samples, test
    # data); those files simply stay source-only, as pip's own compile step leaves them.
    if done.returncode not in (0, 1):
        raise ImageBuildError(f"compileall failed: {done.stderr.strip()[-2000:]}")
