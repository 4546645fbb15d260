"""The layer writer: the same tree gives the same bytes, whatever the disk says."""

from __future__ import annotations

import gzip
import os
import tarfile
from pathlib import Path

import pytest

from teeroute_images.errors import ImageBuildError
from teeroute_images.tarlayer import write_layer

EPOCH = 1767225600


def make_tree(root: Path, order: list[str], mtime: int) -> Path:
    """The same content, created in `order`, stamped `mtime`."""
    files = {"usr/bin/tool": b"#!tool\n", "etc/a.conf": b"a\n", "etc/z.conf": b"z\n"}
    for name in order:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(files[name])
    (root / "usr/bin/tool").chmod(0o755)
    (root / "usr/bin/alias").symlink_to("tool")
    (root / "tmp").mkdir(mode=0o1777)
    (root / "tmp").chmod(0o1777)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.utime(Path(dirpath) / name, (mtime, mtime), follow_symlinks=False)
    return root


def test_same_tree_gives_the_same_digest_whatever_the_order_and_mtimes(tmp_path: Path) -> None:
    one = make_tree(tmp_path / "one", ["usr/bin/tool", "etc/a.conf", "etc/z.conf"], 1_000_000)
    two = make_tree(tmp_path / "two", ["etc/z.conf", "etc/a.conf", "usr/bin/tool"], 2_000_000)
    first = write_layer(one, tmp_path / "one.tar.gz", EPOCH)
    second = write_layer(two, tmp_path / "two.tar.gz", EPOCH)
    assert (first.digest, first.diff_id, first.size) == (second.digest, second.diff_id, second.size)
    assert first.path.read_bytes() == second.path.read_bytes()


def test_a_changed_file_changes_the_digest(tmp_path: Path) -> None:
    one = make_tree(tmp_path / "one", ["usr/bin/tool", "etc/a.conf", "etc/z.conf"], EPOCH)
    before = write_layer(one, tmp_path / "before.tar.gz", EPOCH)
    (one / "etc/a.conf").write_bytes(b"A\n")
    assert write_layer(one, tmp_path / "after.tar.gz", EPOCH).digest != before.digest


def test_entries_are_sorted_normalized_and_keep_modes_and_links(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t", ["etc/z.conf", "usr/bin/tool", "etc/a.conf"], 5)
    layer = write_layer(tree, tmp_path / "l.tar.gz", EPOCH, {"etc/a.conf": (65532, 65532)})
    with tarfile.open(layer.path) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names, key=os.fsencode)
    assert {m.mtime for m in members} == {EPOCH}
    assert {(m.uname, m.gname) for m in members} == {("", "")}
    owners = {m.name: (m.uid, m.gid) for m in members}
    assert owners.pop("etc/a.conf") == (65532, 65532)
    assert set(owners.values()) == {(0, 0)}
    by_name = {m.name: m for m in members}
    assert by_name["usr/bin/tool"].mode == 0o755
    assert by_name["tmp"].mode == 0o1777
    assert by_name["usr/bin/alias"].issym() and by_name["usr/bin/alias"].linkname == "tool"
    assert not any(Path(n).name.startswith(".wh.") for n in names)


def test_gzip_header_carries_no_name_or_time(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t", ["etc/a.conf", "etc/z.conf", "usr/bin/tool"], 5)
    header = write_layer(tree, tmp_path / "l.tar.gz", EPOCH).path.read_bytes()[:10]
    assert header[3] & 0x08 == 0  # FNAME flag: no file name stored
    assert header[4:8] == b"\0\0\0\0"  # MTIME


def test_diff_id_is_the_digest_of_the_uncompressed_tar(tmp_path: Path) -> None:
    import hashlib

    tree = make_tree(tmp_path / "t", ["etc/a.conf", "etc/z.conf", "usr/bin/tool"], 5)
    layer = write_layer(tree, tmp_path / "l.tar.gz", EPOCH)
    raw = gzip.decompress(layer.path.read_bytes())
    assert layer.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert layer.size == layer.path.stat().st_size


def test_special_files_are_left_to_the_runtime(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t", ["etc/a.conf", "etc/z.conf", "usr/bin/tool"], 5)
    os.mkfifo(tree / "etc/fifo")
    with tarfile.open(write_layer(tree, tmp_path / "l.tar.gz", EPOCH).path) as tar:
        assert "etc/fifo" not in tar.getnames()


def test_a_whiteout_name_is_refused(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t", ["etc/a.conf", "etc/z.conf", "usr/bin/tool"], 5)
    (tree / "etc/.wh.a.conf").write_text("")
    with pytest.raises(ImageBuildError, match="whiteout"):
        write_layer(tree, tmp_path / "l.tar.gz", EPOCH)
