"""Layers are cached by their inputs: unchanged inputs reuse, changed inputs rebuild."""

from __future__ import annotations

from pathlib import Path

from teeroute_images.cache import LayerCache, key, tree_digest
from teeroute_images.definitions import SOURCE_DATE_EPOCH
from teeroute_images.tarlayer import Layer, write_layer


def test_a_layer_is_built_once_per_key(tmp_path: Path) -> None:
    made: list[Path] = []

    def make(work: Path) -> Layer:
        made.append(work)
        (work / "tree").mkdir()
        (work / "tree" / "f").write_text("x")
        return write_layer(work / "tree", work / "out.tar.gz", SOURCE_DATE_EPOCH)

    cache = LayerCache(tmp_path / "cache")
    first, hit = cache.build(key({"a": 1}), make)
    assert not hit and first.path.exists()
    again, hit = cache.build(key({"a": 1}), make)
    assert hit and again == first and len(made) == 1
    assert not (first.path.parent / "tree").exists()  # only the layer is kept
    _, hit = cache.build(key({"a": 2}), make)
    assert not hit and len(made) == 2


def test_source_digest_follows_content_but_not_bytecode_caches(tmp_path: Path) -> None:
    (tmp_path / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "pkg" / "m.py").write_text("x = 1\n")
    before = tree_digest([tmp_path / "pkg"])
    (tmp_path / "pkg" / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"\0")
    assert tree_digest([tmp_path / "pkg"]) == before
    (tmp_path / "pkg" / "m.py").write_text("x = 2\n")
    assert tree_digest([tmp_path / "pkg"]) != before
