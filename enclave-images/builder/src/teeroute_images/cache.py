"""Layers cached by the hash of their inputs: a layer whose inputs did not change is reused.

A key is the sha256 of a canonical JSON of everything a layer is made from (locks, source
trees' digests, the builder's own code, settings). Entries are directories
`<root>/<key>/{layer.tar.gz,layer.json}`, written in a temporary folder and renamed, so an
interrupted build never leaves a half entry behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict
from pathlib import Path

from teeroute_images.errors import ImageBuildError
from teeroute_images.tarlayer import Layer

SKIPPED = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}


def key(inputs: Mapping[str, object]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def tree_digest(roots: Iterable[Path]) -> str:
    """The content of source trees (paths, executable bits, bytes), caches left out."""
    digest = hashlib.sha256()
    for root in roots:
        for path in sorted(_files(root)):
            digest.update(f"{path.relative_to(root.parent)}\0{os.access(path, os.X_OK)}\0".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _files(root: Path) -> Iterable[Path]:
    if root.is_file():
        yield root
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIPPED]
        yield from (Path(dirpath) / f for f in filenames if not f.endswith(".pyc"))


class LayerCache:
    def __init__(self, root: Path) -> None:
        self.root = root

    def get(self, key: str) -> Layer | None:
        meta = self.root / key / "layer.json"
        if not meta.exists():
            return None
        fields = json.loads(meta.read_text())
        layer = Layer(**{**fields, "path": self.root / key / "layer.tar.gz"})
        return layer if layer.path.exists() and layer.path.stat().st_size == layer.size else None

    def build(self, key: str, make: Callable[[Path], Layer]) -> tuple[Layer, bool]:
        """The cached layer, or `make(workdir)`'s, stored; the flag says it was cached."""
        found = self.get(key)
        if found is not None:
            return found, True
        self.root.mkdir(parents=True, exist_ok=True)
        # A folder of our own: two builds sharing the cache never write into each other's.
        work = Path(tempfile.mkdtemp(prefix=f"{key}.", suffix=".partial", dir=self.root))
        try:
            _keep_only(work, make(work))
            if self.get(key) is None:  # else another build stored the same layer meanwhile
                shutil.rmtree(self.root / key, ignore_errors=True)
                work.rename(self.root / key)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        stored = self.get(key)
        if stored is None:
            raise ImageBuildError(f"the layer cache lost {key} while storing it")
        return stored, False


def _keep_only(work: Path, made: Layer) -> None:
    """Leave the layer and its digests in `work`, nothing of what made it."""
    made.path.replace(work / "layer.tar.gz")
    fields = {k: v for k, v in asdict(made).items() if k != "path"}
    (work / "layer.json").write_text(json.dumps(fields, sort_keys=True))
    for leftover in work.iterdir():
        if leftover.name not in {"layer.tar.gz", "layer.json"}:
            _remove(leftover)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
