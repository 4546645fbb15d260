"""The base layer: a distroless-style Debian root fs with CPython 3.11 and no shell.

`mmdebstrap --variant=extract` unpacks the packages and their dependencies without running
any maintainer script (`--mode=chrootless`: no root or namespaces needed, so the same step
runs in a Dockerfile). `finish` then removes what only the build needed (apt state, device
nodes, the build host's name and resolver), writes the package metadata scanners read, the
users (root, nonroot 65532) and precompiles the standard library.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from teeroute_images import dpkg, pyc
from teeroute_images.definitions import (
    BASE_PACKAGES,
    DEBIAN_MIRROR,
    DEBIAN_SUITE,
    SOURCE_DATE_EPOCH,
)
from teeroute_images.errors import ImageBuildError

ARCHIVES = "var/cache/apt/archives"
BUILD_ONLY = (
    "dev",
    "etc/apt",
    "etc/hostname",
    "etc/resolv.conf",
    "etc/fstab",
    "var/cache/apt",
    "var/lib/apt",
    "var/lib/dpkg",
    "var/log",
    "usr/share/man",
    "usr/share/info",
)
PASSWD = (
    "root:x:0:0:root:/root:/sbin/nologin\n"  # noqa: S105 - no password here (x)
    "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
)
GROUP = "root:x:0:\nnonroot:x:65532:\n"
OWNERS = {"home/nonroot": (65532, 65532)}
"""Paths the layer gives to the non-root user (everything else is root's)."""


def mmdebstrap_argv(target: Path) -> list[str]:
    return [
        "mmdebstrap",
        "--quiet",
        "--mode=chrootless",
        "--variant=extract",
        "--skip=cleanup/apt/cache",
        f"--include={','.join(BASE_PACKAGES)}",
        DEBIAN_SUITE,
        str(target),
        DEBIAN_MIRROR,
    ]


def extract(target: Path) -> None:
    if shutil.which("mmdebstrap") is None:
        raise ImageBuildError("mmdebstrap is not installed (apt-get install mmdebstrap)")
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(SOURCE_DATE_EPOCH)}
    done = subprocess.run(
        mmdebstrap_argv(target), env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise ImageBuildError(f"mmdebstrap failed: {done.stderr.strip()[-2000:]}")


def controls(rootfs: Path) -> dict[str, str]:
    """Each downloaded package's control paragraph, by package name."""
    found = {}
    for deb in sorted((rootfs / ARCHIVES).glob("*.deb")):
        done = subprocess.run(
            ["dpkg-deb", "--field", str(deb)], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise ImageBuildError(f"dpkg-deb cannot read {deb.name}: {done.stderr.strip()}")
        found[dpkg.package(done.stdout).name] = done.stdout
    if not found:
        raise ImageBuildError("mmdebstrap left no packages to describe")
    return found


def finish(rootfs: Path, control: dict[str, str]) -> None:
    for relative in BUILD_ONLY:
        path = rootfs / relative
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    status = rootfs / "var/lib/dpkg/status.d"
    status.mkdir(parents=True)
    for name, paragraph in control.items():
        (status / name).write_text(dpkg.status_entry(paragraph))
    (rootfs / "dev").mkdir()
    (rootfs / "etc/passwd").write_text(PASSWD)
    (rootfs / "etc/group").write_text(GROUP)
    (rootfs / "home/nonroot").mkdir(parents=True)
    (rootfs / "root").mkdir(mode=0o700, exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)
    python3 = rootfs / "usr/bin/python3"
    if not python3.exists():
        python3.symlink_to("python3.11")
    pyc.compile_tree(rootfs / "usr/lib/python3.11", "/usr/lib/python3.11")


def build_rootfs(rootfs: Path) -> list[dpkg.Package]:
    """Build the base root fs at `rootfs`; return the packages it holds."""
    extract(rootfs)
    control = controls(rootfs)
    finish(rootfs, control)
    return sorted(dpkg.package(paragraph) for paragraph in control.values())
