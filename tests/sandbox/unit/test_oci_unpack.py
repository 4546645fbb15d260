"""Reading the OCI store and unpacking layers: names matched exactly, digests checked before
use, whiteouts honoured, and nothing written outside the root."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from teeroute_sandbox.runner.inroot import UnsafePath, resolve
from teeroute_sandbox.runner.oci import ImageError, ImageStore, Layer
from teeroute_sandbox.runner.rootfs_cache import ensure_rootfs
from teeroute_sandbox.runner.unpack import Action, UnsafeLayer, apply_layer, classify

Entry = tuple[str, str, str]  # (name, type, content or link target)


def tar_bytes(entries: list[Entry], compress: bool = True) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, kind, data in entries:
            info = tarfile.TarInfo(name)
            info.uid, info.gid, info.mtime = os.getuid(), os.getgid(), 1_700_000_000
            info.type = {
                "file": tarfile.REGTYPE,
                "dir": tarfile.DIRTYPE,
                "sym": tarfile.SYMTYPE,
                "link": tarfile.LNKTYPE,
                "chr": tarfile.CHRTYPE,
            }[kind]
            info.mode = 0o755 if kind == "dir" else 0o644
            payload = data.encode() if kind == "file" else b""
            if kind in ("sym", "link"):
                info.linkname = data
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload) if payload else None)
    return gzip.compress(raw.getvalue(), mtime=0) if compress else raw.getvalue()


def put_blob(store: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    blobs = store / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    (blobs / digest).write_bytes(data)
    return f"sha256:{digest}"


def layer_of(store: Path, entries: list[Entry]) -> Layer:
    data = tar_bytes(entries)
    return Layer(put_blob(store, data), len(data), "gzip")


def unpack(tmp_path: Path, *layers: list[Entry]) -> Path:
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    for entries in layers:
        layer = layer_of(tmp_path / "store", entries)
        apply_layer(tmp_path / "store" / "blobs" / "sha256" / layer.digest[7:], layer, root)
    return root


@pytest.mark.parametrize(
    ("name", "action"),
    [
        ("./etc/passwd", Action("write", "etc/passwd")),
        ("/etc/passwd", Action("write", "etc/passwd")),
        ("./", Action("skip", "")),
        ("etc/.wh.passwd", Action("whiteout", "etc/passwd")),
        ("etc/.wh..wh..opq", Action("opaque", "etc")),
        (".wh..wh..opq", Action("opaque", "")),
        ("etc/.wh..wh.plnk", Action("skip", "")),
    ],
)
def test_members_are_classified_as_oci_layers_mean_them(name: str, action: Action) -> None:
    assert classify(name) == action


@pytest.mark.parametrize("name", ["../evil", "a/../../evil", "./../etc/x", "a/b/../../../x"])
def test_members_that_climb_out_of_the_root_are_refused(name: str) -> None:
    with pytest.raises(UnsafeLayer, match="leaves the root"):
        classify(name)


def test_later_layers_whiteout_and_replace_earlier_ones(tmp_path: Path) -> None:
    root = unpack(
        tmp_path,
        [("etc", "dir", ""), ("etc/a", "file", "1"), ("etc/b", "file", "2"), ("bin", "dir", "")],
        [("etc/.wh.a", "file", ""), ("etc/b", "file", "new"), ("bin/.wh..wh..opq", "file", "")],
    )
    assert not (root / "etc" / "a").exists()
    assert (root / "etc" / "b").read_text() == "new"
    assert not (root / "etc" / ".wh.a").exists()


def test_an_opaque_directory_hides_lower_entries_but_keeps_its_own_layer(tmp_path: Path) -> None:
    root = unpack(
        tmp_path,
        [("opt", "dir", ""), ("opt/old", "file", "lower"), ("opt/sub", "dir", "")],
        [("opt/kept", "file", "same layer"), ("opt/.wh..wh..opq", "file", "")],
    )
    assert sorted(p.name for p in (root / "opt").iterdir()) == ["kept"]


def test_symlinks_in_the_image_never_lead_writes_out_of_the_root(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = unpack(
        tmp_path,
        [("abs", "sym", str(outside)), ("up", "sym", "../../../../.."), ("etc", "dir", "")],
        [("abs/planted", "file", "x"), ("up/escaped", "file", "y")],
    )
    assert list(outside.iterdir()) == []
    assert (root / str(outside).lstrip("/") / "planted").read_text() == "x"
    assert (root / "escaped").read_text() == "y"
    assert (root / "abs").is_symlink()  # the link itself is kept, as the image has it


def test_hard_links_stay_inside_the_root(tmp_path: Path) -> None:
    root = unpack(tmp_path, [("a", "file", "data"), ("b", "link", "a")])
    assert (root / "b").read_text() == "data"
    assert (root / "a").stat().st_ino == (root / "b").stat().st_ino
    with pytest.raises(UnsafeLayer, match="out of the root"):
        unpack(tmp_path, [("c", "link", "../../etc/passwd")])


def test_device_nodes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UnsafeLayer, match="device node"):
        unpack(tmp_path, [("dev", "dir", ""), ("dev/sda", "chr", "")])


def test_a_layer_that_does_not_match_its_digest_is_refused_before_unpacking(
    tmp_path: Path,
) -> None:
    good = tar_bytes([("file", "file", "original")])
    digest = put_blob(tmp_path, good)
    tampered = tar_bytes([("file", "file", "tampered")])
    (tmp_path / "blobs" / "sha256" / digest[7:]).write_bytes(tampered)
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(UnsafeLayer, match="does not match"):
        apply_layer(
            tmp_path / "blobs" / "sha256" / digest[7:], Layer(digest, len(good), "gzip"), root
        )
    assert list(root.iterdir()) == []


def test_resolve_keeps_dotdot_and_absolute_links_inside_the_root(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "resolv.conf").symlink_to("../run/resolve/stub.conf")
    (tmp_path / "loop").symlink_to("/loop")
    assert resolve(tmp_path, "/etc/resolv.conf") == tmp_path / "run" / "resolve" / "stub.conf"
    assert resolve(tmp_path, "/../../etc") == tmp_path / "etc"
    assert resolve(tmp_path, "/etc/resolv.conf", follow_last=False) == (
        tmp_path / "etc" / "resolv.conf"
    )
    with pytest.raises(UnsafePath, match="too many symlinks"):
        resolve(tmp_path, "/loop/x")


# -- the store ----------------------------------------------------------------------------


def make_store(tmp_path: Path, ref: str, layers: list[list[Entry]]) -> ImageStore:
    store = tmp_path / "store"
    descriptors = []
    for entries in layers:
        layer = layer_of(store, entries)
        descriptors.append(
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": layer.digest,
                "size": layer.size,
            }
        )
    config = json.dumps({"config": {"User": "65532:65532", "Entrypoint": ["/app"]}}).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "config": {"digest": put_blob(store, config), "size": len(config)},
            "layers": descriptors,
        }
    ).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": put_blob(store, manifest),
                "size": len(manifest),
                "annotations": {"org.opencontainers.image.ref.name": ref},
            }
        ],
    }
    (store / "index.json").write_text(json.dumps(index))
    return ImageStore(store)


def test_store_finds_images_by_their_full_reference_only(tmp_path: Path) -> None:
    store = make_store(tmp_path, "teeroute.dev/agent:0.1.0", [[("app", "file", "#!")]])
    image = store.find("teeroute.dev/agent:0.1.0")
    assert image is not None and image.config["config"]["User"] == "65532:65532"
    for other in ("teeroute.dev/agent", "agent:0.1.0", "0.1.0", "teeroute.dev/agent:0.1"):
        assert store.find(other) is None


def test_a_tampered_config_blob_is_refused(tmp_path: Path) -> None:
    store = make_store(tmp_path, "x/y:1", [[("app", "file", "#!")]])
    image = store.find("x/y:1")
    assert image is not None
    manifest = json.loads(store.blob_path(image.manifest_digest).read_bytes())
    config = store.blob_path(manifest["config"]["digest"])
    config.write_bytes(config.read_bytes().replace(b"65532", b"00000"))
    with pytest.raises(ImageError, match="does not match its descriptor"):
        store.find("x/y:1")


def test_rootfs_is_unpacked_once_and_a_failed_unpack_leaves_nothing(tmp_path: Path) -> None:
    store = make_store(tmp_path, "x/y:1", [[("app", "file", "v1")], [("more", "file", "v2")]])
    image = store.find("x/y:1")
    assert image is not None
    cache = tmp_path / "cache"
    root = ensure_rootfs(store, image, cache)
    assert (root / "app").read_text() == "v1" and (root / "more").read_text() == "v2"
    (root / "app").write_text("marker")  # a second call must not unpack again
    assert ensure_rootfs(store, image, cache) == root
    assert (root / "app").read_text() == "marker"

    broken = make_store(tmp_path / "b", "x/z:1", [[("dev/null", "chr", "")]])
    bad = broken.find("x/z:1")
    assert bad is not None
    with pytest.raises(ImageError, match="device node"):
        ensure_rootfs(broken, bad, cache)
    assert sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock")) == [root.name]
