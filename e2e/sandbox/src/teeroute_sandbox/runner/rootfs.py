"""The launcher's image mode: the container's root is the unpacked image under a fresh
writable overlay layer, with /proc, a minimal /dev, a read-only /sys, the kubelet's /etc
files and the pod's volumes mounted in it; then `pivot_root` makes it `/`.

Runs as root inside the launcher's private mount namespace. Every mount point is resolved
inside the new root (`inroot`), so an image's symlinks never send a mount to the host.
If overlayfs cannot be mounted here, the image is copied instead (slower, same result).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from pathlib import Path

from teeroute_sandbox.runner import inroot
from teeroute_sandbox.runner import syscalls as sc
from teeroute_sandbox.runner.plan import LaunchPlan, Mount

DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
DEV_LINKS = {
    "fd": "/proc/self/fd",
    "stdin": "/proc/self/fd/0",
    "stdout": "/proc/self/fd/1",
    "stderr": "/proc/self/fd/2",
    "ptmx": "pts/ptmx",
    "core": "/proc/kcore",
}
NO_OVERLAY = (errno.EINVAL, errno.ENODEV, errno.EPERM, errno.EOPNOTSUPP)


def enter_image_root(plan: LaunchPlan) -> None:
    root = writable_root(Path(plan.rootfs), Path(plan.container_dir))
    mount_system(root)
    for mount in [*plan.etc_mounts, *plan.mounts]:
        bind_into(root, mount)
    mount_point(root, plan.working_dir, directory=True)  # runtimes create a missing WorkingDir
    switch_root(root)
    if plan.read_only_root:
        sc.mount(None, "/", sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY)


def writable_root(image: Path, container_dir: Path) -> Path:
    """Mount the image with a writable layer of its own at `<container_dir>/root`; the
    layer starts empty each time, as a restarted container's does."""
    upper, work, root = (container_dir / n for n in ("upper", "work", "root"))
    for layer in (upper, work):
        shutil.rmtree(layer, ignore_errors=True)
        layer.mkdir(parents=True, mode=0o755)
    root.mkdir(exist_ok=True)
    options = f"lowerdir={image},upperdir={upper},workdir={work}"
    try:
        sc.mount("overlay", str(root), 0, "overlay", options)
    except OSError as exc:
        if exc.errno not in NO_OVERLAY:
            raise
        copy = container_dir / "copy"
        shutil.rmtree(copy, ignore_errors=True)
        subprocess.run(["cp", "-a", f"{image}/.", str(copy)], check=True)
        sc.mount(str(copy), str(root), sc.MS_BIND)
    return root


def mount_system(root: Path) -> None:
    proc = mount_point(root, "/proc", directory=True)
    sc.mount("proc", str(proc), sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC, "proc")
    _mount_dev(mount_point(root, "/dev", directory=True))
    sys_dir = str(mount_point(root, "/sys", directory=True))
    ro = sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC
    try:
        sc.mount("sysfs", sys_dir, ro, "sysfs")
    except OSError:  # not the owner of this network namespace: show the host's, read-only
        sc.mount("/sys", sys_dir, sc.MS_BIND | sc.MS_REC)
        sc.mount(None, sys_dir, sc.MS_BIND | sc.MS_REMOUNT | ro)


def _mount_dev(dev: Path) -> None:
    sc.mount("tmpfs", str(dev), sc.MS_NOSUID | sc.MS_NOEXEC, "tmpfs", "mode=755,size=65536k")
    for name in DEV_NODES:
        if Path("/dev", name).exists():
            (dev / name).touch()
            sc.mount(f"/dev/{name}", str(dev / name), sc.MS_BIND)
    for name, target in DEV_LINKS.items():
        (dev / name).symlink_to(target)
    flags = sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC
    (dev / "shm").mkdir()
    sc.mount("shm", str(dev / "shm"), flags, "tmpfs", "mode=1777,size=65536k")
    (dev / "pts").mkdir()
    with contextlib.suppress(OSError):  # optional: programs that want a terminal
        sc.mount("devpts", str(dev / "pts"), sc.MS_NOSUID | sc.MS_NOEXEC, "devpts", _PTS)


_PTS = "newinstance,ptmxmode=0666,mode=0620"


def bind_into(root: Path, mount: Mount) -> None:
    source = Path(mount.source)
    if not source.exists():
        raise FileNotFoundError(errno.ENOENT, f"volume source {source} is missing")
    target = str(mount_point(root, mount.target, directory=source.is_dir()))
    sc.mount(str(source), target, sc.MS_BIND | sc.MS_REC)
    if mount.read_only:
        sc.mount(None, target, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY)


def mount_point(root: Path, path: str, directory: bool) -> Path:
    """`path` inside the root (symlinks resolved there), created if missing."""
    target = inroot.resolve(root, path)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        if directory:
            target.mkdir()
        else:
            target.touch()
    return target


def switch_root(root: Path) -> None:
    """Make `root` the root and drop the host's from this namespace (runc's way: the
    old root is stacked on the new one by pivot_root(".", ".") and detached at once)."""
    os.chdir(root)
    sc.pivot_root(".", ".")
    sc.umount2(".", sc.MNT_DETACH)
    os.chdir("/")
