"""Images built once per session from empty caches (the `images` tier), and unpacked."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from teeroute_images.build import Built, Options, build
from teeroute_images.definitions import IMAGES, repository_root
from teeroute_images.progress import Progress
from teeroute_images.selection import chosen
from teeroute_sandbox import netns


def build_fresh(root: Path) -> tuple[Path, list[Built]]:
    """Every default image into a new store, from a new layer cache."""
    options = Options(repository_root(), root / "oci", root / "cache")
    with netns.outside():  # a test process in the sandbox's namespace has no route to PyPI
        return options.store, build(chosen(None), options, Progress())


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Built]]:
    if shutil.which("mmdebstrap") is None or shutil.which("umoci") is None:
        pytest.fail("the images tier needs mmdebstrap and umoci (scripts/setup installs them)")
    if os.geteuid() != 0:
        pytest.fail("the images tier runs images in mount namespaces: it needs root")
    return build_fresh(tmp_path_factory.mktemp("first"))


@pytest.fixture(scope="session")
def bundles(
    built: tuple[Path, list[Built]], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Image name -> an OCI runtime bundle umoci unpacked from the store (config.json, rootfs)."""
    store, _ = built
    found = {}
    for name in chosen(None):
        bundle = tmp_path_factory.mktemp("bundles") / name.name
        done = subprocess.run(
            ["umoci", "unpack", "--image", f"{store}:{IMAGES[name.name].ref}", str(bundle)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        found[name.name] = bundle
    return found
