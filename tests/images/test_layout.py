"""The image store: a valid OCI layout (umoci reads it) with one entry per reference."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from teeroute_images import image, layout
from teeroute_images.definitions import IMAGES, SOURCE_DATE_EPOCH
from teeroute_images.tarlayer import Layer, write_layer

SPEC = IMAGES["agent"]


def tiny_layer(tmp_path: Path, content: str) -> Layer:
    tree = tmp_path / f"tree-{content}"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "hello").write_text(content)
    return write_layer(tree, tmp_path / f"{content}.tar.gz", SOURCE_DATE_EPOCH)


def store_image(store: Path, ref: str, layer: Layer) -> dict[str, object]:
    config = layout.canonical(image.config(SPEC, [("test layer", layer)]))
    manifest = image.manifest(layout.descriptor(config, layout.CONFIG), [layer], SPEC)
    return layout.add_image(store, ref, manifest, config, [(layer.path, layer.digest)])


def test_index_names_each_image_by_its_full_reference_twice(tmp_path: Path) -> None:
    store = tmp_path / "oci"
    descriptor = store_image(store, SPEC.ref, tiny_layer(tmp_path, "one"))
    index = json.loads((store / "index.json").read_text())
    assert json.loads((store / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    assert index["manifests"] == [descriptor]
    assert descriptor["annotations"] == {
        "org.opencontainers.image.ref.name": "teeroute.dev/agent:0.1.0",
        "io.containerd.image.name": "teeroute.dev/agent:0.1.0",
    }


def test_rebuilding_a_reference_replaces_it_and_drops_unreachable_blobs(tmp_path: Path) -> None:
    store = tmp_path / "oci"
    old = tiny_layer(tmp_path, "old")
    store_image(store, SPEC.ref, old)
    store_image(store, "teeroute.dev/other:0.1.0", tiny_layer(tmp_path, "kept"))
    store_image(store, SPEC.ref, tiny_layer(tmp_path, "new"))
    assert sorted(layout.images(store)) == ["teeroute.dev/agent:0.1.0", "teeroute.dev/other:0.1.0"]
    assert not layout.blob_path(store, old.digest).exists()
    blobs = {p.name for p in (store / "blobs/sha256").iterdir()}
    assert blobs == {
        d.removeprefix("sha256:") for d in layout._reachable(store, layout.read_index(store))
    }


def test_config_is_non_root_with_fixed_times(tmp_path: Path) -> None:
    store = tmp_path / "oci"
    manifest = layout.read_blob(
        store, store_image(store, SPEC.ref, tiny_layer(tmp_path, "c"))["digest"]
    )
    config = layout.read_blob(store, manifest["config"]["digest"])
    assert config["config"]["User"] == "65532:65532"
    assert config["config"]["Entrypoint"] == ["/usr/bin/python3.11", "-m", "teeroute_enclave"]
    assert config["config"]["WorkingDir"] == "/"
    assert "PYTHONDONTWRITEBYTECODE=1" in config["config"]["Env"]
    assert config["created"] == "2026-01-01T00:00:00Z"
    assert {h["created"] for h in config["history"]} == {"2026-01-01T00:00:00Z"}


@pytest.mark.skipif(
    shutil.which("umoci") is None, reason="umoci is not installed (apt-get install umoci)"
)
def test_umoci_unpacks_the_layout(tmp_path: Path) -> None:
    store = tmp_path / "oci"
    store_image(store, SPEC.ref, tiny_layer(tmp_path, "umoci"))
    bundle = tmp_path / "bundle"
    done = subprocess.run(
        ["umoci", "unpack", "--image", f"{store}:{SPEC.ref}", str(bundle)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (bundle / "rootfs/etc/hello").read_text() == "umoci"
    process = json.loads((bundle / "config.json").read_text())["process"]
    assert process["user"]["uid"] == 65532
    assert process["args"] == list(SPEC.entrypoint)
