"""File-level pieces: atomic volume writes, masking untraversable paths, the Go builder's
cache keys, and the image map."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

from teeroute_sandbox import gobuild
from teeroute_sandbox.errors import BuildFailed
from teeroute_sandbox.runner.images import PROBE_IMAGE, ImageConfig, ImageMap, register
from teeroute_sandbox.runner.launcher import untraversable_ancestors
from teeroute_sandbox.runner.volumes import atomic_write


def test_atomic_write_swaps_data_and_keeps_keys_as_links(tmp_path: Path) -> None:
    target = tmp_path / "vol"
    atomic_write(target, {"a": (b"1", 0o644), "dir/b": (b"2", 0o600)}, None)
    first = (target / "..data").resolve()
    assert (target / "a").read_bytes() == b"1"
    assert (target / "dir" / "b").read_bytes() == b"2"
    assert oct((target / "dir" / "b").stat().st_mode & 0o777) == "0o600"
    assert (target / "a").is_symlink()

    atomic_write(target, {"a": (b"changed", 0o644), "dir/b": (b"2", 0o600)}, None)
    assert (target / "a").read_bytes() == b"changed"
    assert not first.exists()  # the old generation is gone
    assert [
        p.name
        for p in target.iterdir()
        if p.name.startswith("..") and p.is_dir() and not p.is_symlink()
    ] == [(target / "..data").resolve().name]


def test_untraversable_ancestors_finds_the_highest_closed_directory() -> None:
    base = Path(tempfile.mkdtemp(dir="/tmp"))  # 1777 above, so only `closed` is closed
    base.chmod(0o755)
    closed = base / "home"
    (closed / "py" / "lib").mkdir(parents=True)
    (closed / "venv").mkdir()
    (base / "open" / "x").mkdir(parents=True)
    closed.chmod(0o700)
    try:
        found = untraversable_ancestors(
            [str(closed / "py" / "lib"), str(closed / "venv"), str(base / "open" / "x")]
        )
    finally:
        closed.chmod(0o755)
        shutil.rmtree(base)
    assert found == {closed: {"py", "venv"}}


def test_required_version_reads_single_and_block_requires() -> None:
    block = "module m\n\nrequire (\n\tk8s.io/kubernetes v1.33.5\n\tfoo v1.0.0 // indirect\n)\n"
    single = "module m\n\nrequire go.etcd.io/etcd/server/v3 v3.5.21\n"
    assert gobuild.required_version(block, "k8s.io/kubernetes") == "v1.33.5"
    assert gobuild.required_version(single, "go.etcd.io/etcd/server/v3") == "v3.5.21"
    with pytest.raises(BuildFailed):
        gobuild.required_version(single, "sigs.k8s.io/kwok")


@pytest.mark.parametrize(
    ("package", "name"),
    [
        ("go.etcd.io/etcd/server/v3", "server"),
        ("k8s.io/kubernetes/cmd/kube-apiserver", "kube-apiserver"),
        ("sigs.k8s.io/kwok/cmd/kwok", "kwok"),
    ],
)
def test_go_default_binary_name(package: str, name: str) -> None:
    assert gobuild.go_default_binary_name(package) == name


def test_cache_entry_changes_with_the_go_version_and_names_the_version(tmp_path: Path) -> None:
    module = gobuild.MODULES[0]
    entry, version = gobuild.cache_entry(tmp_path, module, "go1.26.8")
    other, _ = gobuild.cache_entry(tmp_path, module, "go1.27.0")
    assert entry != other
    assert entry.name.startswith(f"kubernetes-{version}-")
    assert version == "v1.33.5"


def test_wrapper_modules_pin_what_the_sandbox_documents() -> None:
    for module in gobuild.MODULES:
        go_mod = (gobuild.gobuild_root() / module.dir_name / "go.mod").read_text()
        assert gobuild.required_version(go_mod, module.main_requirement).startswith("v")
        assert (gobuild.gobuild_root() / module.dir_name / "go.sum").stat().st_size > 0


def test_image_map_reloads_its_file_and_matches_globs(tmp_path: Path) -> None:
    extra = tmp_path / "images.json"
    images = ImageMap(extra)
    assert images.resolve(PROBE_IMAGE) is not None
    assert images.resolve("nginx") is None
    register(extra, "teeroute.dev/agent:*", ImageConfig(entrypoint=("/bin/agent",), user=7))
    resolved = images.resolve("teeroute.dev/agent:v1")
    assert resolved is not None and resolved.entrypoint == ("/bin/agent",) and resolved.user == 7
    assert json.loads(extra.read_text())["teeroute.dev/agent:*"]["user"] == 7
