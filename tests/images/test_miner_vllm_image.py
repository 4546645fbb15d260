"""The GPU miner image (vLLM from its locked wheels) builds from an empty layer cache, and
what can run without a GPU does: torch and vLLM import as the non-root user on a read-only
root fs, and the entrypoint maps the operator's engine arguments to `vllm serve`. Serving a
model needs an NVIDIA GPU: not tested here (docs/images.md).

It is the slowest test (a 4.4 GB image, about 6 minutes on 2 cores with warm downloads), and
it removes its 20 GB of store, cache and unpacked root before it ends.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from teeroute_images.build import Built, Options, build
from teeroute_images.definitions import IMAGES, repository_root
from teeroute_images.progress import Progress
from teeroute_images.selection import chosen
from teeroute_sandbox import netns
from tests.images import inimage

pytestmark = pytest.mark.images


@pytest.fixture(scope="module")
def miner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Built, Path]]:
    root = tmp_path_factory.mktemp("miner-vllm")
    try:
        options = Options(repository_root(), root / "oci", root / "cache")
        with netns.outside():  # the sandbox's namespace (if the session entered it) has no PyPI
            (built,) = build(chosen(["miner-vllm"]), options, Progress())
        shutil.rmtree(root / "cache")  # the layers are in the store now
        bundle = root / "bundle"
        done = subprocess.run(
            ["umoci", "unpack", "--image", f"{options.store}:{built.ref}", str(bundle)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        shutil.rmtree(options.store)
        yield built, bundle
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_the_miner_image_builds_from_an_empty_cache(miner: tuple[Built, Path]) -> None:
    built, bundle = miner
    assert built.ref == IMAGES["miner-vllm"].ref
    assert inimage.image_config(bundle)["process"]["user"] == {"uid": 65532, "gid": 65532}


def test_torch_and_vllm_import_as_the_non_root_user(
    miner: tuple[Built, Path], tmp_path: Path
) -> None:
    _, bundle = miner
    done = inimage.run(
        bundle,
        inimage.writable_tmp(tmp_path),
        [
            "/usr/bin/python3.11",
            "-c",
            "import os, torch, vllm; print(os.getuid(), torch.__version__.split('+')[0], "
            "vllm.__version__)",
        ],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    uid, torch_version, vllm_version = done.stdout.split()
    assert uid == "65532"
    assert torch_version and vllm_version


def test_the_entrypoint_maps_engine_arguments_to_vllm_serve(
    miner: tuple[Built, Path], tmp_path: Path
) -> None:
    _, bundle = miner
    entrypoint = inimage.image_config(bundle)["process"]["args"]
    done = inimage.run(
        bundle,
        inimage.writable_tmp(tmp_path),
        [
            *entrypoint[:3],
            "--dry-run",
            "--model",
            "meta-llama/Llama-3.1-8B-Instruct",
            "--host",
            "0.0.0.0",  # noqa: S104 - the pod's own address space
            "--port",
            "8000",
        ],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert " serve meta-llama/Llama-3.1-8B-Instruct " in done.stdout
    assert "--port 8000" in done.stdout
